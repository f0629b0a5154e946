// The client tracker over cycles: unique pairings become attached then gone; anything ambiguous stays unknown.
import { describe, expect, it } from "vitest";
import { DockerClientTracker, PAIRING_DELAY_MS, namesExec, type ClientSighting, type ExecSighting } from "../../../../src/runtimes/docker/clients.js";

const BOOT_MS = Date.UTC(2026, 10, 30, 8, 0, 0);
const T0 = 100_000; // ticks after boot (1000 s)
const SECOND = 100; // ticks
const PAIRED_AFTER = (PAIRING_DELAY_MS / 1000) * SECOND;
const CID = "169baa59a5771cf17b6a4cc3a919e43156123a30950599d7caf1dc57d0fa07e4";

const msAt = (ticks: number): number => BOOT_MS + ticks * 10;

function execAt(execId: string, startTicks: number, over: Partial<ExecSighting> = {}): ExecSighting {
  return { execId, containerId: CID, containerName: "web", command: ["sh"], startTicks, ...over };
}

function client(pid: number, startTicks: number, over: Partial<ClientSighting> = {}): ClientSighting {
  return { pid, startTicks, target: { container: "web", command: ["sh"] }, connected: true, ...over };
}

/** Runs one cycle at `ticks` and returns each exec's state as "attached", "gone@<ticks>" or "unknown: detail". */
function cycle(tracker: DockerClientTracker, ticks: number, execs: ExecSighting[], clients: ClientSighting[], canPair = true): Record<string, string> {
  const states = tracker.update({ nowMs: msAt(ticks), nowTicks: ticks, execs, clients, canPair });
  const out: Record<string, string> = {};
  for (const [id, s] of states) {
    out[id] = s.state === "gone" ? `gone@${(s.sinceMs - BOOT_MS) / 10}` : s.state === "attached" ? "attached" : `unknown: ${s.detail}`;
  }
  return out;
}

describe("namesExec", () => {
  const exec = execAt("e", 0);
  it.each<[string, string, string[], boolean]>([
    ["name", "web", ["sh"], true],
    ["name with leading slash", "/web", ["sh"], true],
    ["full id", CID, ["sh"], true],
    ["id prefix", "169baa", ["sh"], true],
    ["another id", "169bab", ["sh"], false],
    ["another name", "web2", ["sh"], false],
    ["a name that is not hex is no prefix", "169baz", ["sh"], false],
    ["other command", "web", ["bash"], false],
    ["extra argument", "web", ["sh", "-l"], false],
  ])("%s", (_name, container, command, want) => {
    expect(namesExec({ container, command }, exec)).toBe(want);
  });
});

describe("DockerClientTracker", () => {
  it("pending until the window closes, then attached; gone from the first cycle the client is missing, and it stays so", () => {
    const t = new DockerClientTracker();
    const e = execAt("e1", T0 + 20);
    expect(cycle(t, T0 + 50, [e], [client(10, T0)])).toEqual({ e1: expect.stringMatching(/^unknown: pairing pending/) as unknown });
    expect(cycle(t, T0 + 20 + PAIRED_AFTER, [e], [client(10, T0)])).toEqual({ e1: "attached" });
    const goneAt = T0 + 20 + PAIRED_AFTER + 10 * SECOND;
    expect(cycle(t, goneAt, [e], [])).toEqual({ e1: `gone@${goneAt}` });
    expect(cycle(t, goneAt + 10 * SECOND, [e], [])).toEqual({ e1: `gone@${goneAt}` });
    // The same pid, started again, is another process: it does not bring the session back.
    expect(cycle(t, goneAt + 20 * SECOND, [e], [client(10, goneAt + 15 * SECOND)])).toEqual({ e1: `gone@${goneAt}` });
  });

  it("a client that died before the pairing is remembered: gone since the cycle that missed it", () => {
    const t = new DockerClientTracker();
    const e = execAt("e1", T0 + 20);
    cycle(t, T0 + 50, [e], [client(10, T0)]);
    cycle(t, T0 + 10 * SECOND, [e], []);
    expect(cycle(t, T0 + 20 + PAIRED_AFTER, [e], [])).toEqual({ e1: `gone@${T0 + 10 * SECOND}` });
  });

  it("two clients for the same container and command in the same second: both unknown, before and after one dies", () => {
    const t = new DockerClientTracker();
    const execs = [execAt("e1", T0 + 15), execAt("e2", T0 + 40)];
    const both = [client(10, T0), client(11, T0 + 30)];
    cycle(t, T0 + 60, execs, both);
    const states = cycle(t, T0 + 40 + PAIRED_AFTER, execs, both);
    expect(states.e1).toMatch(/^unknown: docker CLI pid 10 could have started exec e2/);
    expect(states.e2).toMatch(/^unknown: 2 docker CLI clients could have started it \(pids 10, 11\)/);
    expect(cycle(t, T0 + 40 + PAIRED_AFTER + 500, execs, [client(11, T0 + 30)])).toEqual(states);
  });

  it("sessions opened more than the window apart are each paired with their own client", () => {
    const t = new DockerClientTracker();
    const execs = [execAt("e1", T0 + 15), execAt("e2", T0 + 15 * SECOND + 15)];
    const clients = [client(10, T0), client(11, T0 + 15 * SECOND)];
    const late = T0 + 15 * SECOND + 15 + PAIRED_AFTER;
    expect(cycle(t, late, execs, clients)).toEqual({ e1: "attached", e2: "attached" });
    expect(cycle(t, late + 100, execs, [client(11, T0 + 15 * SECOND)])).toEqual({ e1: `gone@${late + 100}`, e2: "attached" });
  });

  it.each<[string, ClientSighting, RegExp]>([
    ["started more than the window before the exec", client(10, T0 - 11 * SECOND), /no local docker CLI client seen/],
    ["started after the exec", client(10, T0 + 30), /no local docker CLI client seen/],
    ["names another container", client(10, T0, { target: { container: "db", command: ["sh"] } }), /no local docker CLI client seen/],
    ["names another command", client(10, T0, { target: { container: "web", command: ["bash"] } }), /no local docker CLI client seen/],
    ["never connected to this engine (TCP, ssh, other namespace)", client(10, T0, { connected: false }), /pid 10 has no connection to this engine's socket/],
    ["connection never readable", client(10, T0, { connected: null }), /pid 10 has no connection to this engine's socket/],
    ["argv unreadable", client(10, T0, { target: null }), /pid 10: argv could not be read/],
  ])("a lone client %s → unknown", (_name, sighting, detail) => {
    const t = new DockerClientTracker();
    const e = execAt("e1", T0 + 20);
    cycle(t, T0 + 50, [e], [sighting]);
    expect(cycle(t, T0 + 20 + PAIRED_AFTER, [e], [sighting]).e1).toMatch(detail);
  });

  it("an unreadable argv in the window makes a good candidate ambiguous", () => {
    const t = new DockerClientTracker();
    const e = execAt("e1", T0 + 20);
    const clients = [client(10, T0), client(12, T0 + 5, { target: null })];
    expect(cycle(t, T0 + 20 + PAIRED_AFTER, [e], clients).e1).toMatch(/^unknown: 2 docker CLI clients/);
  });

  it("a client that could have started a second exec (say, one started by docker compose) pairs with neither", () => {
    const t = new DockerClientTracker();
    const execs = [execAt("e1", T0 + 20), execAt("e2", T0 + 5 * SECOND)];
    expect(cycle(t, T0 + 5 * SECOND + PAIRED_AFTER, execs, [client(10, T0)])).toEqual({
      e1: "unknown: docker CLI pid 10 could have started exec e2 too",
      e2: "unknown: docker CLI pid 10 could have started exec e1 too",
    });
  });

  it("a client gone before an exec started is no candidate for it", () => {
    const t = new DockerClientTracker();
    const e1 = execAt("e1", T0 + 20);
    cycle(t, T0 + 50, [e1], [client(10, T0)]);
    cycle(t, T0 + 100, [e1], []); // pid 10 seen gone at T0+100
    const e2 = execAt("e2", T0 + 200);
    expect(cycle(t, T0 + 200 + PAIRED_AFTER, [e1, e2], [])).toEqual({ e1: `gone@${T0 + 100}`, e2: "unknown: no local docker CLI client seen (remote, not the CLI, or ended before ptyreaper saw it)" });
  });

  it("a dropped Engine connection counts after two cycles in a row, gone since the first", () => {
    const t = new DockerClientTracker();
    const e = execAt("e1", T0 + 20);
    const at = T0 + 20 + PAIRED_AFTER;
    expect(cycle(t, at, [e], [client(10, T0)])).toEqual({ e1: "attached" });
    expect(cycle(t, at + 1000, [e], [client(10, T0, { connected: false })])).toEqual({ e1: "attached" });
    expect(cycle(t, at + 2000, [e], [client(10, T0, { connected: true })])).toEqual({ e1: "attached" });
    expect(cycle(t, at + 3000, [e], [client(10, T0, { connected: false })])).toEqual({ e1: "attached" });
    expect(cycle(t, at + 4000, [e], [client(10, T0, { connected: null })])).toEqual({ e1: "attached" });
    expect(cycle(t, at + 5000, [e], [client(10, T0, { connected: false })])).toEqual({ e1: `gone@${at + 3000}` });
  });

  it("pairs nothing while connections cannot be read, and pairs once they can", () => {
    const t = new DockerClientTracker();
    const e = execAt("e1", T0 + 20);
    const at = T0 + 20 + PAIRED_AFTER;
    expect(cycle(t, at, [e], [client(10, T0, { connected: null })], false).e1).toMatch(/^unknown: pairing pending/);
    expect(cycle(t, at + 1000, [e], [client(10, T0)], true)).toEqual({ e1: "attached" });
  });

  it("lists the clients it still believes alive, so the reader can re-check them", () => {
    const t = new DockerClientTracker();
    cycle(t, T0 + 50, [], [client(10, T0), client(11, T0 + 1)]);
    cycle(t, T0 + 60, [], [client(11, T0 + 1)]);
    expect(t.livePids()).toEqual([{ pid: 11, startTicks: T0 + 1 }]);
  });

  it("forgets ended execs and gone clients nobody refers to: bounded over many short sessions", () => {
    const t = new DockerClientTracker();
    let ticks = T0;
    for (let i = 0; i < 500; i++) {
      const e = execAt(`e${i}`, ticks + 20);
      cycle(t, ticks + 50, [e], [client(1000 + i, ticks)]);
      cycle(t, ticks + 20 + PAIRED_AFTER, [e], [client(1000 + i, ticks)]);
      ticks += PAIRED_AFTER + 100;
      cycle(t, ticks, [], []);
    }
    cycle(t, ticks + 10 * PAIRED_AFTER, [], []);
    expect(t.size).toEqual({ clients: 0, verdicts: 0 });
  });
});
