// The elimination matching: tables of small cases, and properties checked against brute force and a known truth.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MAX_GROUP_EXECS, partnersOf, type ExecPartner, type PairingGraph } from "../../../../src/runtimes/docker/matching.js";

type Case = { candidates: Record<string, string[]>; committed?: string[]; paired?: string[] };

const graphOf = ({ candidates, committed = [], paired = [] }: Case): PairingGraph => ({
  candidates: new Map(Object.entries(candidates)),
  committed: new Set(committed),
  paired: new Set(paired),
});

const solve = (c: Case): Record<string, ExecPartner> => Object.fromEntries(partnersOf(graphOf(c), Object.keys(c.candidates)));

const forced = (client: string): ExecPartner => ({ kind: "forced", client });
const open = (...clients: string[]): ExecPartner => ({ kind: "open", clients });
const rival = (client: string, other: string): ExecPartner => ({ kind: "rival", client, rival: other });

describe("partnersOf", () => {
  it.each<[string, Case, Record<string, ExecPartner>]>([
    ["one exec, one client", { candidates: { e1: ["A"] } }, { e1: forced("A") }],
    [
      "elimination: the first exec can only be A's, so the second is B's (both attached)",
      { candidates: { e1: ["A"], e2: ["A", "B"] }, committed: ["A", "B"] },
      { e1: forced("A"), e2: forced("B") },
    ],
    [
      "the same with A gone: B attached needs its exec, and only e2 can be it; e1 may be A's or a client's never seen",
      { candidates: { e1: ["A"], e2: ["A", "B"] }, committed: ["B"] },
      { e1: rival("A", "e2"), e2: forced("B") },
    ],
    [
      "both gone: e2 could be A's if e1 came from a client never seen, so it stays open",
      { candidates: { e1: ["A"], e2: ["A", "B"] } },
      { e1: rival("A", "e2"), e2: open("A", "B") },
    ],
    [
      "both execs after both clients: indistinguishable",
      { candidates: { e1: ["A", "B"], e2: ["A", "B"] }, committed: ["A", "B"] },
      { e1: open("A", "B"), e2: open("A", "B") },
    ],
    ["one exec, two clients, one of them attached", { candidates: { e1: ["A", "B"] }, committed: ["A"] }, { e1: open("A", "B") }],
    [
      "two execs need the one client: one was started elsewhere",
      { candidates: { e1: ["A"], e2: ["A"] }, committed: ["A"] },
      { e1: { kind: "impossible" }, e2: { kind: "impossible" } },
    ],
    [
      "a chain: A, then B, then C, each exec after its own client, all attached",
      { candidates: { e1: ["A"], e2: ["A", "B"], e3: ["A", "B", "C"] }, committed: ["A", "B", "C"] },
      { e1: forced("A"), e2: forced("B"), e3: forced("C") },
    ],
    [
      "three clients, the later two indistinguishable",
      { candidates: { e1: ["A"], e2: ["A", "B", "C"], e3: ["A", "B", "C"] }, committed: ["A", "B", "C"] },
      { e1: forced("A"), e2: open("B", "C"), e3: open("B", "C") },
    ],
    [
      "an attached client taken by an exec whose own client was never seen is not used to pair another",
      // X attached; eY (started by a CLI killed before it was seen) could only be X's; D's shell ended.
      { candidates: { eX: ["D", "X"], eY: ["X"] }, committed: ["X"] },
      { eX: open("D", "X"), eY: rival("X", "eX") },
    ],
    [
      "an exec already paired keeps its client under both beliefs",
      { candidates: { e1: ["A"], e2: ["A", "B"] }, paired: ["e1"] },
      { e1: rival("A", "e2"), e2: forced("B") },
    ],
    ["an exec with no candidate is no question", { candidates: { e1: [] } }, {}],
    [
      "separate groups are solved apart: a conflict in one leaves the other paired",
      { candidates: { e1: ["A"], e2: ["A"], e3: ["B"] } },
      { e1: { kind: "impossible" }, e2: { kind: "impossible" }, e3: forced("B") },
    ],
  ])("%s", (_name, c, want) => {
    expect(solve(c)).toEqual(want);
  });

  it("answers only for the execs asked about, using the others as constraints", () => {
    const out = partnersOf(graphOf({ candidates: { e1: ["A"], e2: ["A", "B"] }, committed: ["B"] }), ["e2"]);
    expect([...out]).toEqual([["e2", forced("B")]]);
  });

  it("does not solve a group larger than the cap", () => {
    const clients = Array.from({ length: MAX_GROUP_EXECS + 1 }, (_, i) => `c${i}`);
    const candidates = Object.fromEntries(clients.map((_, i) => [`e${i}`, clients]));
    expect(solve({ candidates }).e0).toEqual({ kind: "tooLarge", execs: MAX_GROUP_EXECS + 1 });
  });
});

/** Every one-to-one assignment of some execs to one of their candidates each (small graphs only); unmatched execs absent. */
function allMatchings(graph: [string, string[]][]): Map<string, string>[] {
  const out: Map<string, string>[] = [];
  const walk = (i: number, used: Set<string>, current: Map<string, string>): void => {
    if (i === graph.length) {
      out.push(new Map(current));
      return;
    }
    const [execId, clients] = graph[i] as [string, string[]];
    walk(i + 1, used, current);
    for (const client of clients) {
      if (used.has(client)) continue;
      used.add(client);
      current.set(execId, client);
      walk(i + 1, used, current);
      current.delete(execId);
      used.delete(client);
    }
  };
  walk(0, new Set(), new Map());
  return out;
}

const CLIENTS = ["A", "B", "C", "D", "E"];

const smallCase = fc
  .record({
    lists: fc.array(fc.uniqueArray(fc.constantFrom(...CLIENTS), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 5 }),
    committed: fc.subarray(CLIENTS),
    pairedMask: fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
  })
  .map(({ lists, committed, pairedMask }) => {
    const graph = lists.map((clients, i): [string, string[]] => [`e${i}`, clients]);
    // Only an exec with one candidate can have been paired.
    const paired = graph.filter(([, c], i) => c.length === 1 && pairedMask[i]).map(([id]) => id);
    return { graph, committed, paired };
  });

describe("partnersOf properties", () => {
  it("agrees with brute force over every matching of the exec's group, under both beliefs", () => {
    fc.assert(
      fc.property(smallCase, ({ graph, committed, paired }) => {
        const out = partnersOf(
          { candidates: new Map(graph), committed: new Set(committed), paired: new Set(paired) },
          graph.map(([id]) => id),
        );
        for (const [execId, clients] of graph) {
          const group = groupOf(graph, execId);
          const all = allMatchings(group);
          const groupClients = new Set(group.flatMap(([, c]) => c));
          const underE = all.filter((m) => m.size === group.length);
          const underF = all.filter(
            (m) =>
              m.has(execId) &&
              paired.every((id) => !group.some(([g]) => g === id) || m.has(id)) &&
              committed.every((c) => !groupClients.has(c) || [...m.values()].includes(c)),
          );
          const answer = out.get(execId);
          if (underE.length === 0) {
            expect(answer).toEqual({ kind: "impossible" });
            continue;
          }
          const e = new Set(underE.map((m) => m.get(execId)));
          const f = new Set(underF.map((m) => m.get(execId)));
          const only = [...e][0] as string;
          if (e.size === 1 && f.size === 1 && f.has(only)) {
            const other = group.find(([id, c]) => id !== execId && c.includes(only))?.[0];
            const inGroup = (id: string): boolean => group.some(([g]) => g === id);
            const withoutIt = all.filter(
              (m) =>
                !m.has(execId) &&
                paired.every((id) => id === execId || !inGroup(id) || m.has(id)) &&
                committed.every((c) => !groupClients.has(c) || [...m.values()].includes(c)),
            );
            expect(answer).toEqual(other === undefined || withoutIt.length === 0 ? forced(only) : rival(only, other));
          } else expect(answer).toEqual(open(...clients.filter((c) => e.has(c) || f.has(c))));
        }
      }),
    );
  });

  it("never gives two execs one client, nor a client that is not a candidate", () => {
    fc.assert(
      fc.property(smallCase, ({ graph, committed, paired }) => {
        const out = partnersOf(
          { candidates: new Map(graph), committed: new Set(committed), paired: new Set(paired) },
          graph.map(([id]) => id),
        );
        const pairs = [...out].flatMap(([execId, p]) => (p.kind === "forced" ? [[execId, p.client] as const] : []));
        expect(new Set(pairs.map(([, c]) => c)).size).toBe(pairs.length);
        for (const [execId, client] of pairs) expect(new Map(graph).get(execId)).toContain(client);
      }),
    );
  });

  /**
   * A host: clients c0…c(n-1); client i's exec ei runs or has ended; attached clients (committed) have
   * theirs running. Remote execs (r…) have candidates too but no client among them. Extra candidates
   * are clients whose windows overlap.
   */
  const host = fc.integer({ min: 1, max: 5 }).chain((n) =>
    fc.record({
      n: fc.constant(n),
      running: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
      attached: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
      extras: fc.array(fc.uniqueArray(fc.integer({ min: 0, max: n - 1 }), { maxLength: 3 }), { minLength: n, maxLength: n }),
      remote: fc.array(fc.uniqueArray(fc.integer({ min: 0, max: n - 1 }), { minLength: 1, maxLength: 3 }), { maxLength: 2 }),
    }),
  );

  it("is sound: an exec whose client is among its candidates is only ever paired with that client, remote execs or not", () => {
    fc.assert(
      fc.property(host, ({ n, running, attached, extras, remote }) => {
        const candidates = new Map<string, string[]>();
        const committed = new Set<string>();
        for (let i = 0; i < n; i++) {
          if (!running[i]) continue;
          candidates.set(`e${i}`, [...new Set([`c${i}`, ...(extras[i] ?? []).map((c) => `c${c}`)])]);
          if (attached[i]) committed.add(`c${i}`);
        }
        remote.forEach((clients, j) =>
          candidates.set(
            `r${j}`,
            clients.map((c) => `c${c}`),
          ),
        );
        for (const [execId, p] of partnersOf({ candidates, committed, paired: new Set() }, [...candidates.keys()])) {
          if (p.kind === "forced" && execId.startsWith("e")) expect(p.client).toBe(`c${execId.slice(1)}`);
        }
      }),
    );
  });

  it("with no remote exec, finds the truth whenever it is the only matching", () => {
    fc.assert(
      fc.property(host, ({ n, extras }) => {
        const candidates = new Map(Array.from({ length: n }, (_, i) => [`e${i}`, [...new Set([`c${i}`, ...(extras[i] ?? []).map((c) => `c${c}`)])]]));
        const committed = new Set(Array.from({ length: n }, (_, i) => `c${i}`));
        const graph = [...candidates];
        const unique = allMatchings(graph).filter((m) => m.size === n).length === 1;
        const out = partnersOf({ candidates, committed, paired: new Set() }, [...candidates.keys()]);
        if (unique) for (const [execId, p] of out) expect(p).toEqual(forced(`c${execId.slice(1)}`));
      }),
    );
  });
});

/** The execs linked to `execId` through shared candidates. */
function groupOf(graph: [string, string[]][], execId: string): [string, string[]][] {
  const members = new Set([execId]);
  let grew = true;
  while (grew) {
    grew = false;
    const clients = new Set(graph.filter(([id]) => members.has(id)).flatMap(([, c]) => c));
    for (const [id, c] of graph) {
      if (!members.has(id) && c.some((x) => clients.has(x))) {
        members.add(id);
        grew = true;
      }
    }
  }
  return graph.filter(([id]) => members.has(id));
}
