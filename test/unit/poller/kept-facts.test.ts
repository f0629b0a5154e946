// KeptFacts: a process's facts are the same object from cycle to cycle while they do not change, and read again when it may have.
import { describe, expect, it } from "vitest";
import type { ProcessFacts } from "../../../src/domain/attribution.js";
import { KeptFacts } from "../../../src/poller/reuse.js";
import { facts } from "../support/scan-fixtures.js";

describe("KeptFacts", () => {
  it("gives back the kept object for equal facts and keeps new ones when they differ", () => {
    const kept = new KeptFacts();
    const a = facts(10, 1, "sh", ["sh"], "0::/\n");
    expect(kept.same(10, a)).toBe(a);
    expect(kept.same(10, { ...a, argv: ["sh"] })).toBe(a);
    const moved = { ...a, cgroup: "0::/other\n" };
    expect(kept.same(10, moved)).toBe(moved);
    expect(kept.same(10, { ...moved })).toBe(moved);
  });

  it("reads a process again when its identity moved, on a full pass, and after it left the listing", () => {
    const kept = new KeptFacts();
    let reads = 0;
    const read = (): ProcessFacts => {
      reads++;
      return facts(20, 1, "bash", ["bash", `-${reads}`], "0::/\n");
    };
    const first = kept.readUnlessKept(20, "100 1 bash", read, false);
    expect(kept.readUnlessKept(20, "100 1 bash", read, false)).toBe(first);
    expect(reads).toBe(1);
    expect(kept.readUnlessKept(20, "100 1 vim", read, false)).not.toBe(first);
    expect(reads).toBe(2);
    kept.readUnlessKept(20, "100 1 vim", read, true);
    expect(reads).toBe(3);
    kept.prune(new Map([[1, 0]]));
    kept.readUnlessKept(20, "100 1 vim", read, false);
    expect(reads).toBe(4);
  });

  it("makes a scanned process's facts once per record the scan gives, and again for a new record or after a prune", () => {
    const kept = new KeptFacts();
    let made = 0;
    const make = (argv: string[]) => (): ProcessFacts => {
      made++;
      return facts(40, 1, "sh", argv, "0::/\n");
    };
    const record = { pid: 40 };
    const first = kept.ofRecord(40, record, make(["sh"]));
    expect(kept.ofRecord(40, record, make(["sh"]))).toBe(first);
    expect(made).toBe(1);
    // A new record (the holder read again) with equal facts: made, then the kept object given back.
    expect(kept.ofRecord(40, { pid: 40 }, make(["sh"]))).toBe(first);
    expect(made).toBe(2);
    const changed = kept.ofRecord(40, { pid: 40 }, make(["sh", "-i"]));
    expect(changed).not.toBe(first);
    expect(changed?.argv).toEqual(["sh", "-i"]);
    kept.prune(new Map([[1, 0]]));
    kept.ofRecord(40, record, make(["sh"]));
    expect(made).toBe(4);
  });

  it("does not keep a process that could not be read", () => {
    const kept = new KeptFacts();
    let reads = 0;
    const read = (): ProcessFacts | null => (reads++ === 0 ? null : facts(30, 1, "sh", ["sh"], "0::/\n"));
    expect(kept.readUnlessKept(30, "5 1 sh", read, false)).toBeNull();
    expect(kept.readUnlessKept(30, "5 1 sh", read, false)).not.toBeNull();
    expect(reads).toBe(2);
  });
});
