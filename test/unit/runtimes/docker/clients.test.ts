// The client tracker over cycles: unique pairings become attached then gone; anything ambiguous stays unknown.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  CLIENT_TO_EXEC_MAX_MS,
  DockerClientTracker,
  PAIRING_DELAY_MS,
  namesExec,
  type ClientSighting,
  type ExecSighting,
} from "../../../../src/runtimes/docker/clients.js";

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
function cycle(
  tracker: DockerClientTracker,
  ticks: number,
  execs: ExecSighting[],
  clients: ClientSighting[],
  canPair = true,
): Record<string, string> {
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

  it("a pairing restored after a restart: a live client is attached at once and followed; a dead one is gone since its record", () => {
    const t = new DockerClientTracker();
    const later = T0 + 3_600 * SECOND;
    const [e1, e2] = [execAt("e1", T0 + 20), execAt("e2", T0 + 20 + 20 * SECOND)];
    t.restore([
      { execId: "e1", pid: 10, startTicks: T0, gone: null },
      {
        execId: "e2",
        pid: 11,
        startTicks: T0 + 20 * SECOND,
        gone: { sinceMs: msAt(later - 50 * SECOND), sinceTicks: later - 50 * SECOND, how: "exited while ptyreaper was not running" },
      },
    ]);
    expect(t.links()).toEqual(
      new Map([
        ["e1", "10@100000"],
        ["e2", "11@102000"],
      ]),
    );
    // No pairing delay: the verdicts are the last run's.
    expect(cycle(t, later, [e1, e2], [client(10, T0, { target: null })])).toEqual({ e1: "attached", e2: `gone@${later - 50 * SECOND}` });
    // The restored client is followed: two cycles without its connection and it is gone.
    cycle(t, later + 10 * SECOND, [e1, e2], [client(10, T0, { connected: false })]);
    expect(cycle(t, later + 20 * SECOND, [e1, e2], [client(10, T0, { connected: false })])).toEqual({
      e1: `gone@${later + 10 * SECOND}`,
      e2: `gone@${later - 50 * SECOND}`,
    });
  });

  it("a client that died before the pairing is remembered: gone since the cycle that missed it", () => {
    const t = new DockerClientTracker();
    const e = execAt("e1", T0 + 20);
    cycle(t, T0 + 50, [e], [client(10, T0)]);
    cycle(t, T0 + 10 * SECOND, [e], []);
    expect(cycle(t, T0 + 20 + PAIRED_AFTER, [e], [])).toEqual({ e1: `gone@${T0 + 10 * SECOND}` });
  });

  it("two clients for the same container and command whose execs both start after both clients: both unknown, before and after one dies", () => {
    const t = new DockerClientTracker();
    const execs = [execAt("e1", T0 + 35), execAt("e2", T0 + 40)];
    const both = [client(10, T0), client(11, T0 + 30)];
    cycle(t, T0 + 60, execs, both);
    const states = cycle(t, T0 + 40 + PAIRED_AFTER, execs, both);
    expect(states.e1).toMatch(/^unknown: 2 docker CLI clients could have started it \(pids 10, 11\)/);
    expect(states.e2).toMatch(/^unknown: 2 docker CLI clients could have started it \(pids 10, 11\)/);
    expect(cycle(t, T0 + 40 + PAIRED_AFTER + 500, execs, [client(11, T0 + 30)])).toEqual(states);
  });

  it("two clients a second apart: the first exec started before the second client, so each is paired by elimination", () => {
    const t = new DockerClientTracker();
    const execs = [execAt("e1", T0 + 15), execAt("e2", T0 + SECOND + 15)];
    const both = [client(10, T0), client(11, T0 + SECOND)];
    cycle(t, T0 + 60, execs.slice(0, 1), both.slice(0, 1));
    expect(cycle(t, T0 + SECOND + 15 + PAIRED_AFTER, execs, both)).toEqual({ e1: "attached", e2: "attached" });
    const killedAt = T0 + SECOND + 15 + PAIRED_AFTER + 200;
    expect(cycle(t, killedAt, execs, [client(11, T0 + SECOND)])).toEqual({ e1: `gone@${killedAt}`, e2: "attached" });
  });

  it("when the first client dies before the pairing, the second is still paired; the first exec stays unknown", () => {
    const t = new DockerClientTracker();
    const execs = [execAt("e1", T0 + 15), execAt("e2", T0 + SECOND + 15)];
    cycle(t, T0 + SECOND + 50, execs, [client(10, T0), client(11, T0 + SECOND)]);
    cycle(t, T0 + 5 * SECOND, execs, [client(11, T0 + SECOND)]);
    // e1 may be pid 10's, or a client's never seen while pid 10's own exec ended (and 10 with it): nothing
    // attached needs e1, so it is not taken for 10's. Pid 11, attached, needs e2.
    expect(cycle(t, T0 + SECOND + 15 + PAIRED_AFTER, execs, [client(11, T0 + SECOND)])).toEqual({
      e1: "unknown: docker CLI pid 10 could have started exec e2 too",
      e2: "attached",
    });
  });

  it("three clients: the first exec is the first client's, the two after both later clients stay unknown", () => {
    const t = new DockerClientTracker();
    const execs = [execAt("e1", T0 + 4), execAt("e2", T0 + 12), execAt("e3", T0 + 14)];
    const three = [client(10, T0), client(11, T0 + 5), client(12, T0 + 10)];
    const states = cycle(t, T0 + 14 + PAIRED_AFTER, execs, three);
    expect(states.e1).toBe("attached");
    expect(states.e2).toMatch(/^unknown: 2 docker CLI clients could have started it \(pids 11, 12\)/);
    expect(states.e3).toMatch(/^unknown: 2 docker CLI clients could have started it \(pids 11, 12\)/);
    // One of the later two killed: neither of their execs is ever taken for gone.
    for (let i = 1; i <= 5; i++) {
      const later = cycle(t, T0 + 14 + PAIRED_AFTER + i * SECOND, execs, [client(10, T0), client(12, T0 + 10)]);
      expect(later.e2).toMatch(/^unknown/);
      expect(later.e3).toMatch(/^unknown/);
    }
  });

  it("the coincidence it cannot see, as before elimination: a remote exec in the window of a CLI whose own exec ended", () => {
    const t = new DockerClientTracker();
    // Pid 10's shell ended (and pid 10 with it) before the pairing; r1, from a client never seen, names the same.
    cycle(t, T0 + 50, [execAt("e10", T0 + 5), execAt("r1", T0 + 30)], [client(10, T0)]);
    expect(cycle(t, T0 + 30 + PAIRED_AFTER, [execAt("r1", T0 + 30)], [])).toEqual({ r1: `gone@${T0 + 30 + PAIRED_AFTER}` });
  });

  it("an exec decided earlier keeps its client: a later exec is matched around it", () => {
    const t = new DockerClientTracker();
    const e1 = execAt("e1", T0 + 15);
    // e1 is decided before e2 runs; e2 could be pid 10's or 11's, but 10 is e1's.
    expect(cycle(t, T0 + 15 + PAIRED_AFTER, [e1], [client(10, T0), client(11, T0 + 50)])).toEqual({ e1: "attached" });
    const e2 = execAt("e2", T0 + 60);
    expect(cycle(t, T0 + 60 + PAIRED_AFTER, [e1, e2], [client(10, T0), client(11, T0 + 50)])).toEqual({ e1: "attached", e2: "attached" });
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
    [
      "never connected to this engine (TCP, ssh, other namespace)",
      client(10, T0, { connected: false }),
      /pid 10 has no connection to this engine's socket/,
    ],
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
    expect(cycle(t, T0 + 200 + PAIRED_AFTER, [e1, e2], [])).toEqual({
      e1: `gone@${T0 + 100}`,
      e2: "unknown: no local docker CLI client seen (remote, not the CLI, or ended before ptyreaper saw it)",
    });
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

/** A simulated host: CLIs each start one exec a little after their own start; some are killed, some end with their shell. */
interface Timeline {
  clis: { start: number; gap: number; killedAfter: number | null; endedAfter: number | null }[];
  /** Execs of the same container and command started by clients ptyreaper cannot see (remote, SDK). */
  remote: number[];
}

const WINDOW = (CLIENT_TO_EXEC_MAX_MS / 1000) * SECOND;

function timeline(opts: { ended: boolean; remote: boolean }): fc.Arbitrary<Timeline> {
  const cli = fc.record({
    start: fc.integer({ min: 0, max: 3 * SECOND }),
    // 10–300 ms from the CLI's start to its exec's (the measured range with a margin), always inside the window.
    gap: fc.integer({ min: 1, max: Math.min(30, WINDOW) }),
    killedAfter: fc.option(fc.integer({ min: 1, max: PAIRED_AFTER + 5 * SECOND }), { nil: null }),
    endedAfter: opts.ended ? fc.option(fc.integer({ min: 1, max: PAIRED_AFTER + 5 * SECOND }), { nil: null }) : fc.constant(null),
  });
  return fc.record({
    clis: fc.array(cli, { minLength: 1, maxLength: 5 }),
    remote: opts.remote ? fc.array(fc.integer({ min: 0, max: 3 * SECOND + 30 }), { maxLength: 2 }) : fc.constant([]),
  });
}

/**
 * Runs the tracker every 2 s over the timeline and checks each cycle: an exec whose real client is
 * still there is never `gone`, and a paired exec names its own CLI.
 */
function checkTimeline({ clis, remote }: Timeline): void {
  const t = new DockerClientTracker();
  const base = T0;
  const end = base + 3 * SECOND + 30 + PAIRED_AFTER + 10 * SECOND;
  const cycles = (from: number, to: number): boolean => Math.floor((to - 1 - base) / (2 * SECOND)) >= Math.ceil((from - base) / (2 * SECOND));
  // Whether each CLI was alive at some cycle (cycles run at base, base + 2 s, …).
  const everySeen = clis.every((c) => {
    const execStart = base + c.start + c.gap;
    return cycles(
      base + c.start,
      Math.min(c.killedAfter === null ? Infinity : execStart + c.killedAfter, c.endedAfter === null ? Infinity : execStart + c.endedAfter),
    );
  });
  for (let now = base; now <= end; now += 2 * SECOND) {
    const clients: ClientSighting[] = [];
    const execs: ExecSighting[] = [];
    const truth = new Map<string, { pid: number | null; alive: boolean }>();
    clis.forEach((c, i) => {
      const start = base + c.start;
      const execStart = start + c.gap;
      const killedAt = c.killedAfter === null ? Infinity : execStart + c.killedAfter;
      const endedAt = c.endedAfter === null ? Infinity : execStart + c.endedAfter;
      // A shell that ends takes its CLI with it; a killed CLI leaves its shell running.
      const cliAlive = start <= now && now < Math.min(killedAt, endedAt);
      if (cliAlive) clients.push(client(100 + i, start));
      if (execStart <= now && now < endedAt) {
        execs.push(execAt(`c${i}`, execStart));
        truth.set(`c${i}`, { pid: 100 + i, alive: cliAlive });
      }
    });
    remote.forEach((r, i) => {
      if (base + r <= now) {
        execs.push(execAt(`r${i}`, base + r));
        truth.set(`r${i}`, { pid: null, alive: true });
      }
    });
    const states = t.update({ nowMs: msAt(now), nowTicks: now, execs, clients, canPair: true });
    for (const [execId, state] of states) {
      const real = truth.get(execId);
      if (real?.alive) expect(state.state, `${execId} at +${now - base} ticks`).not.toBe("gone");
      // A CLI that lived less than a cycle was never seen: its exec may be taken for another's whose shell ended.
      if (state.state !== "unknown" && everySeen) expect(state.detail).toMatch(new RegExp(`^docker CLI pid ${real?.pid ?? "none"}\\b`));
    }
  }
}

describe("DockerClientTracker over simulated hosts", () => {
  it("CLIs opened side by side, some killed, some ended: every pairing is the real one, an attached exec is never gone", () => {
    fc.assert(fc.property(timeline({ ended: true, remote: false }), checkTimeline), { numRuns: 300 });
  });

  it("with execs from clients it cannot see (remote) among them, while every CLI's shell runs: the same", () => {
    fc.assert(fc.property(timeline({ ended: false, remote: true }), checkTimeline), { numRuns: 300 });
  });

  it("pairs the CLIs opened a second or more apart, each with its own", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 5 }), (seconds) => {
        const t = new DockerClientTracker();
        const clis = seconds.map((s, i) => client(100 + i, T0 + s * SECOND));
        const execs = seconds.map((s, i) => execAt(`c${i}`, T0 + s * SECOND + 20));
        const states = cycle(t, T0 + 5 * SECOND + 20 + PAIRED_AFTER, execs, clis);
        expect(Object.values(states).every((s) => s === "attached")).toBe(true);
      }),
    );
  });
});
