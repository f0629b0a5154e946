// The client state file: written atomically, read back only for the sessions it still describes; a missing,
// stale or corrupt file gives no record at all (every client unknown), a corrupt one with one warning.
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { unknownClient, type ClientEvidence, type ClientMemory, type ClientObservation } from "../../../src/domain/client.js";
import type { ClientState } from "../../../src/domain/types.js";
import type { ExecSession } from "../../../src/domain/types.js";
import { ClientStateStore, loadClientState, MAX_STATE_FILE_BYTES, STATE_FILE, writeFileAtomic } from "../../../src/runtimes/client-store.js";

const T = Date.UTC(2026, 11, 7, 4, 0, 0);

function logged(): { logger: pino.Logger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  return { logger: pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) }), lines };
}
const warnings = (lines: { level: number; msg: string }[]) => lines.filter((l) => l.level === 40);

type Session = Pick<ExecSession, "execId" | "pid" | "startTicks">;
const session = (execId: string, pid: number, startTicks: number): Session => ({ execId, pid, startTicks });

function observation(sessions: Session[], runtimeUp = true): ClientObservation {
  return {
    scan: { bootTimeSec: 0 } as ClientObservation["scan"],
    view: { runtime: "docker", available: runtimeUp, error: null, containers: [], execs: [] },
    sessions: sessions as ExecSession[],
    nowMs: T,
  };
}

/** An evidence that answers fixed states and links, and records what it was given back. */
class FixedEvidence implements ClientEvidence {
  restored: { memories: readonly ClientMemory[]; downSinceMs: number }[] = [];
  constructor(
    private readonly states: Map<string, ClientState>,
    private readonly linked: Map<string, string>,
  ) {}
  observe(): Map<string, ClientState> {
    return this.states;
  }
  reach() {
    return null;
  }
  links() {
    return this.linked;
  }
  restore(memories: readonly ClientMemory[], downSinceMs: number) {
    this.restored.push({ memories, downSinceMs });
  }
}

const attached: ClientState = { state: "attached", detail: "cli" };

/** A store in a new directory whose first run saw `e1` attached (link 10@5) and `e2` gone since T - 5 s, saved at T. */
function firstRun(): { dir: string } {
  const dir = mkdtempSync(join(tmpdir(), "ptyreaper-state-"));
  const store = new ClientStateStore({ dir, logger: pino({ enabled: false }), nowMs: T - 60_000 });
  const evidence = store.remembering(
    "docker",
    new FixedEvidence(
      new Map([
        ["e1", attached],
        ["e2", { state: "gone", sinceMs: T - 5_000, detail: "exited" }],
        ["e3", unknownClient("pending")],
      ]),
      new Map([
        ["e1", "10@5"],
        ["e2", "11@6"],
      ]),
    ),
  );
  evidence.observe(observation([session("e1", 100, 50), session("e2", 101, 51), session("e3", 102, 52)]));
  store.save(T);
  return { dir };
}

describe("writeFileAtomic", () => {
  it("replaces the file by a rename (a new inode), leaving no temporary file behind", () => {
    const dir = mkdtempSync(join(tmpdir(), "ptyreaper-state-"));
    const path = join(dir, STATE_FILE);
    writeFileAtomic(path, "one");
    const before = statSync(path).ino;
    writeFileAtomic(path, "two");
    expect(readFileSync(path, "utf8")).toBe("two");
    expect(statSync(path).ino).not.toBe(before);
    expect(readdirSync(dir)).toEqual([STATE_FILE]);
  });
});

describe("ClientStateStore", () => {
  it("writes only the sessions with a known client, keyed by runtime, exec id, pid and start time", () => {
    const { dir } = firstRun();
    const file = JSON.parse(readFileSync(join(dir, STATE_FILE), "utf8")) as { writtenAtMs: number; records: unknown[] };
    expect(file.writtenAtMs).toBe(T);
    expect(file.records).toEqual([
      { runtime: "docker", execId: "e1", pid: 100, startTicks: 50, link: "10@5", goneSinceMs: null },
      { runtime: "docker", execId: "e2", pid: 101, startTicks: 51, link: "11@6", goneSinceMs: T - 5_000 },
    ]);
    expect(statSync(join(dir, STATE_FILE)).mode & 0o777).toBe(0o600);
  });

  it("gives back, at the first look that lists sessions, only the records still describing one; dated the loaded file's write", () => {
    const { dir } = firstRun();
    const { logger, lines } = logged();
    const store = new ClientStateStore({ dir, logger, nowMs: T + 600_000 });
    const inner = new FixedEvidence(new Map(), new Map());
    const evidence = store.remembering("docker", inner);
    // The runtime not up yet: nothing is taken back, and the records are kept in the file.
    evidence.observe(observation([], false));
    store.save(T + 610_000);
    expect(loadClientState(dir, T + 620_000).records).toHaveLength(2);
    expect(inner.restored).toEqual([]);
    // e2's process is another now (pid reused: another start time): its record is ignored.
    evidence.observe(observation([session("e1", 100, 50), session("e2", 101, 99)]));
    expect(inner.restored).toEqual([{ memories: [{ execId: "e1", link: "10@5", goneSinceMs: null }], downSinceMs: T }]);
    evidence.observe(observation([session("e1", 100, 50)]));
    expect(inner.restored).toHaveLength(1);
    expect(warnings(lines)).toEqual([]);
  });

  it("another runtime's records are not given to this one", () => {
    const { dir } = firstRun();
    const inner = new FixedEvidence(new Map(), new Map());
    const store = new ClientStateStore({ dir, logger: pino({ enabled: false }), nowMs: T });
    store.remembering("containerd", inner).observe(observation([session("e1", 100, 50)]));
    store.save(T + 1_000);
    expect(inner.restored).toEqual([]);
    // Docker's, not given back yet, are kept.
    expect(loadClientState(dir, T + 2_000).records.map((r) => r.runtime)).toEqual(["docker", "docker"]);
  });

  it("a missing file: no record, no warning, and no empty file written", () => {
    const dir = mkdtempSync(join(tmpdir(), "ptyreaper-state-"));
    const { logger, lines } = logged();
    const store = new ClientStateStore({ dir, logger, nowMs: T });
    store.remembering("docker", new FixedEvidence(new Map(), new Map())).observe(observation([]));
    store.save(T, true);
    expect(readdirSync(dir)).toEqual([]);
    expect(warnings(lines)).toEqual([]);
  });

  it.each([
    ["not JSON", '{"version": 1, "writtenAtMs": 17'],
    ["another shape", JSON.stringify({ version: 1, writtenAtMs: T, records: [{ runtime: "docker", execId: "e1", pid: -1 }] })],
    ["binary", "\u0000\u0001\u0002"],
  ])("a corrupt file (%s): no record, one warning, then rewritten", (_name, text) => {
    const dir = mkdtempSync(join(tmpdir(), "ptyreaper-state-"));
    writeFileSync(join(dir, STATE_FILE), text);
    const { logger, lines } = logged();
    const store = new ClientStateStore({ dir, logger, nowMs: T });
    const inner = new FixedEvidence(new Map([["e1", attached]]), new Map([["e1", "10@5"]]));
    const evidence = store.remembering("docker", inner);
    for (let i = 0; i < 3; i++) {
      evidence.observe(observation([session("e1", 100, 50)]));
      store.save(T + i * 10_000);
    }
    expect(inner.restored).toEqual([]);
    expect(warnings(lines)).toHaveLength(1);
    expect(warnings(lines)[0]?.msg).toMatch(/client state file unreadable/);
    expect(loadClientState(dir, T + 60_000).records.map((r) => r.execId)).toEqual(["e1"]);
  });

  it("a file larger than any it writes is corrupt, unread", () => {
    const dir = mkdtempSync(join(tmpdir(), "ptyreaper-state-"));
    writeFileSync(join(dir, STATE_FILE), Buffer.alloc(MAX_STATE_FILE_BYTES + 1, 0x20));
    expect(loadClientState(dir, T).problem?.kind).toBe("corrupt");
  });

  it("a file of another format version is stale: no record, no warning", () => {
    const dir = mkdtempSync(join(tmpdir(), "ptyreaper-state-"));
    writeFileSync(join(dir, STATE_FILE), JSON.stringify({ version: 99, writtenAtMs: T, records: [] }));
    const { logger, lines } = logged();
    new ClientStateStore({ dir, logger, nowMs: T });
    expect(loadClientState(dir, T)).toMatchObject({ records: [], problem: { kind: "stale" } });
    expect(warnings(lines)).toEqual([]);
  });

  it("a write time in the future (the clock went back) dates the downtime now", () => {
    const dir = mkdtempSync(join(tmpdir(), "ptyreaper-state-"));
    writeFileSync(join(dir, STATE_FILE), JSON.stringify({ version: 1, writtenAtMs: T + 3_600_000, records: [] }));
    expect(loadClientState(dir, T).writtenAtMs).toBe(T);
  });

  it("an unwritable directory: one warning, and the daemon goes on", () => {
    const dir = join(mkdtempSync(join(tmpdir(), "ptyreaper-state-")), "file");
    writeFileSync(dir, "a file where the directory should be");
    const { logger, lines } = logged();
    const store = new ClientStateStore({ dir, logger, nowMs: T });
    const evidence = store.remembering("docker", new FixedEvidence(new Map([["e1", attached]]), new Map([["e1", "10@5"]])));
    for (let i = 0; i < 3; i++) {
      evidence.observe(observation([session("e1", 100, 50)]));
      store.save(T + i * 70_000);
    }
    expect(warnings(lines).filter((l) => l.msg.startsWith("cannot write"))).toHaveLength(1);
  });

  it("an unchanged file is rewritten only once a minute; a change at once", () => {
    const { dir } = firstRun();
    const store = new ClientStateStore({ dir, logger: pino({ enabled: false }), nowMs: T });
    const states = new Map<string, ClientState>([["e1", attached]]);
    const evidence = store.remembering("docker", new FixedEvidence(states, new Map([["e1", "10@5"]])));
    const written = () => loadClientState(dir, T + 1e9).writtenAtMs;
    const look = (atMs: number) => {
      evidence.observe(observation([session("e1", 100, 50)]));
      store.save(atMs);
    };
    look(T + 1_000);
    expect(written()).toBe(T + 1_000);
    look(T + 11_000);
    expect(written()).toBe(T + 1_000);
    states.set("e1", { state: "gone", sinceMs: T + 15_000, detail: "exited" });
    look(T + 21_000);
    expect(written()).toBe(T + 21_000);
    look(T + 81_000);
    expect(written()).toBe(T + 81_000);
  });
});
