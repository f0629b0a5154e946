// The stream tracker shared by containerd CRI and Podman: attached while held, gone from the first release after a hold, else unknown.
import { describe, expect, it } from "vitest";
import { ExecStreamTracker, type StreamSighting } from "../../../src/runtimes/stream-clients.js";

const held = (holder = "10@5"): StreamSighting => ({ execId: "e1", stream: "held", holder, detail: "held" });
const released = (holder = "10@5"): StreamSighting => ({ execId: "e1", stream: "released", holder, detail: "released" });
const unreadable: StreamSighting = { execId: "e1", stream: "unknown", detail: "unreadable" };

function run(cycles: readonly (StreamSighting | null)[]): ReturnType<ExecStreamTracker["update"]>[] {
  const tracker = new ExecStreamTracker("never held");
  return cycles.map((sighting, i) => tracker.update(sighting === null ? [] : [sighting], 1_000 * (i + 1)));
}
const last = (cycles: readonly (StreamSighting | null)[]) => run(cycles).at(-1)?.get("e1");

describe("ExecStreamTracker", () => {
  it.each([
    ["held", [held()], { state: "attached", detail: "held" }],
    [
      "released after held: gone since the first release",
      [held(), released(), released()],
      { state: "gone", sinceMs: 2_000, detail: "released, after holding it: the client went away" },
    ],
    ["released, never seen held: unknown", [released(), released()], { state: "unknown", detail: "released; never held" }],
    ["unreadable while attached: unknown", [held(), unreadable], { state: "unknown", detail: "unreadable" }],
    [
      "unreadable after gone: still gone",
      [held(), released(), unreadable],
      { state: "gone", sinceMs: 2_000, detail: "released, after holding it: the client went away" },
    ],
    ["held again after a release: attached (the safe answer)", [held(), released(), held()], { state: "attached", detail: "held" }],
    ["released by another holder (restarted): unknown", [held("10@5"), released("11@9")], { state: "unknown", detail: "released; never held" }],
    [
      "the exec left a cycle and came back: its history is forgotten",
      [held(), null, released()],
      { state: "unknown", detail: "released; never held" },
    ],
  ] as const)("%s", (_name, cycles, expected) => {
    expect(last(cycles)).toEqual(expected);
  });

  it("forgets execs that are no longer running", () => {
    const tracker = new ExecStreamTracker("never held");
    tracker.update([held(), { execId: "e2", stream: "held", holder: "10@5", detail: "held" }], 1_000);
    expect(tracker.size).toBe(2);
    tracker.update([held()], 2_000);
    expect(tracker.size).toBe(1);
  });
});

describe("ExecStreamTracker across a restart", () => {
  const restored = (memory: { link?: string; goneSinceMs?: number | null }) => {
    const tracker = new ExecStreamTracker("never held");
    tracker.restore([{ execId: "e1", link: memory.link ?? "10@5", goneSinceMs: memory.goneSinceMs ?? null }], 500);
    return tracker;
  };

  it("recorded held, released now by the same holder: gone from the last run's last look, not from now", () => {
    expect(restored({}).update([released()], 9_000).get("e1")).toMatchObject({ state: "gone", sinceMs: 500 });
  });

  it("recorded held, held now: attached; a later release dates from that cycle", () => {
    const tracker = restored({});
    expect(tracker.update([held()], 9_000).get("e1")?.state).toBe("attached");
    expect(tracker.update([released()], 10_000).get("e1")).toMatchObject({ state: "gone", sinceMs: 10_000 });
  });

  it("recorded gone: gone since then, even on a cycle that cannot tell", () => {
    expect(restored({ goneSinceMs: 300 }).update([unreadable], 9_000).get("e1")).toMatchObject({ state: "gone", sinceMs: 300 });
  });

  it("recorded under another holder (containerd or conmon restarted): the record says nothing", () => {
    expect(restored({ link: "99@1" }).update([released()], 9_000).get("e1")?.state).toBe("unknown");
  });

  it("links name each tracked exec's holder", () => {
    const tracker = new ExecStreamTracker("never held");
    tracker.update([held("10@5")], 1_000);
    expect(tracker.links()).toEqual(new Map([["e1", "10@5"]]));
  });
});

describe("ExecStreamTracker with a first-sight rule (containerd CRI)", () => {
  const tracker = () => new ExecStreamTracker("never held", { goneDetail: "ended before" });

  it("released at first sight: gone from that cycle, and it stays so", () => {
    const t = tracker();
    expect(t.update([released()], 1_000).get("e1")).toEqual({ state: "gone", sinceMs: 1_000, detail: "released: ended before" });
    expect(t.update([released()], 2_000).get("e1")).toMatchObject({ state: "gone", sinceMs: 1_000 });
  });

  it("held at first sight: attached, then gone from the first release, as without the rule", () => {
    const t = tracker();
    expect(t.update([held()], 1_000).get("e1")?.state).toBe("attached");
    expect(t.update([released()], 2_000).get("e1")).toMatchObject({ state: "gone", sinceMs: 2_000 });
  });

  it("what cannot be read stays unknown", () => {
    expect(tracker().update([unreadable], 1_000).get("e1")?.state).toBe("unknown");
  });
});
