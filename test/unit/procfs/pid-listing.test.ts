// Which pids a steady pass lists: the ranges given out between two marks of the pid allocator, and when every pid.
import { beforeEach, describe, expect, it } from "vitest";
import { parsePidMarks, type PidMarks } from "../../../src/procfs/parse.js";
import { PidListing, RELIST_BELOW_MARK, WHOLE_LISTING_EVERY_MS, pidsGivenOutBetween } from "../../../src/procfs/pid-listing.js";
import type { ProcFs } from "../../../src/procfs/procfs.js";

const marks = (lastPid: number, forks: number, pidMax = 32_768): PidMarks => ({ lastPid, forks, pidMax });

describe("pidsGivenOutBetween", () => {
  it("gives the pids after the last mark up to the new one", () => {
    expect(pidsGivenOutBetween(marks(1000, 50), marks(1000, 50))).toEqual([]);
    expect(pidsGivenOutBetween(marks(1000, 50), marks(1136, 186))).toEqual([[1001, 1136]]);
    // Pids in use are skipped: more steps than forks.
    expect(pidsGivenOutBetween(marks(1000, 50), marks(1500, 60))).toEqual([[1001, 1500]]);
  });

  it("goes round past pid_max and up from the bottom", () => {
    expect(pidsGivenOutBetween(marks(32_700, 10), marks(40, 100))).toEqual([
      [1, 40],
      [32_701, 32_767],
    ]);
    expect(pidsGivenOutBetween(marks(32_767, 10), marks(5, 12))).toEqual([[1, 5]]);
  });

  it("cannot tell when the allocator moved fewer steps than there were forks, or the marks do not fit", () => {
    // All the way round (or more): the steps left over are fewer than the forks.
    expect(pidsGivenOutBetween(marks(1000, 50), marks(1010, 32_800))).toBeNull();
    expect(pidsGivenOutBetween(marks(32_700, 10), marks(40, 200))).toBeNull();
    // Forks in another pid namespace do not move this one's allocator.
    expect(pidsGivenOutBetween(marks(1000, 50), marks(1001, 90))).toBeNull();
    expect(pidsGivenOutBetween(marks(1000, 50), marks(1100, 40))).toBeNull();
    expect(pidsGivenOutBetween(marks(1000, 50), marks(1100, 60, 4_194_304))).toBeNull();
  });
});

describe("PidListing", () => {
  let now: number;
  let whole: number[];
  let asked: [number, number][];
  let shifted: boolean;
  let own: boolean;
  let current: PidMarks | null;

  /** A procfs whose marks the test sets; its listings are `whole`. */
  const setMarks = (lastPid: number, forks: number): void => {
    current = marks(lastPid, forks);
  };
  const procfs = (): ProcFs =>
    ({
      isOwnPidNamespace: () => own,
      pidMarks: () => current,
      pids: () => [...whole],
      pidsBetween: (from: number, to: number) => {
        asked.push([from, to]);
        // A kernel that placed its listing offsets otherwise would start one pid late.
        return whole.filter((pid) => pid >= from + (shifted ? 1 : 0) && pid <= to);
      },
    }) as unknown as ProcFs;

  beforeEach(() => {
    now = 0;
    whole = Array.from({ length: 100 }, (_, i) => 300 + i * 10);
    asked = [];
    shifted = false;
    own = true;
    setMarks(1290, 500);
  });

  it("lists every pid first, then only those given out since, and every pid again after WHOLE_LISTING_EVERY_MS", () => {
    const listing = new PidListing(procfs(), () => now);
    expect(listing.next(false)).toEqual({ whole: true, pids: whole, relisted: [] });
    expect(listing.reason).toBeNull();

    whole.push(1295, 1301);
    setMarks(1301, 502);
    asked = [];
    const steady = listing.next(false);
    expect(steady.whole).toBe(false);
    expect(steady.pids).toEqual([1295, 1301]);
    expect(asked).toContainEqual([1291, 1301]);
    // The last mark's neighbourhood again: a fork in flight then shows only now.
    expect(asked).toContainEqual([1290 - RELIST_BELOW_MARK + 1, 1290]);
    expect(steady.relisted).toEqual(whole.filter((pid) => pid > 1290 - RELIST_BELOW_MARK && pid <= 1290));

    // A full pass lists every pid whatever the marks say.
    expect(listing.next(true).whole).toBe(true);
    now += WHOLE_LISTING_EVERY_MS - 1;
    expect(listing.next(false).whole).toBe(false);
    now += 1;
    expect(listing.next(false).whole).toBe(true);
  });

  it("lists every pid when the marks cannot tell: all the way round, or unreadable", () => {
    const listing = new PidListing(procfs(), () => now);
    listing.next(false);
    setMarks(1295, 40_000);
    expect(listing.next(false).whole).toBe(true);
    expect(listing.reason).toBeNull(); // nothing wrong with listing from a pid: the marks only could not tell this time
    expect(listing.next(false).whole).toBe(false);
    current = null;
    expect(listing.next(false).whole).toBe(true);
    expect(listing.reason).toBe("pid marks unreadable");
  });

  it("never lists from a pid when the procfs is another pid namespace's, or a listing from a pid disagrees", () => {
    own = false;
    const foreign = new PidListing(procfs(), () => now);
    foreign.next(false);
    expect(foreign.next(false).whole).toBe(true);
    expect(foreign.reason).toBe("not this process's pid namespace");

    own = true;
    shifted = true;
    const listing = new PidListing(procfs(), () => now);
    listing.next(false);
    expect(listing.reason).toBe("a listing from pid 380 disagreed with the whole listing");
    expect(listing.next(false).whole).toBe(true);
    shifted = false;
    expect(listing.next(false).whole).toBe(true); // (each whole listing checks again)
    expect(listing.reason).toBeNull();
    expect(listing.next(false).whole).toBe(false);
  });
});

describe("parsePidMarks", () => {
  it("reads the marks as the kernel writes them, and nothing from texts that are not", () => {
    const stat = "cpu  1 2 3\nbtime 1700000000\nprocesses 500\nprocs_running 1\n";
    expect(parsePidMarks(stat, "0.10 0.20 0.30 1/400 1290\n", "32768\n")).toEqual({ lastPid: 1290, forks: 500, pidMax: 32_768 });
    expect(parsePidMarks(stat, "0.10 0.20 0.30 1/400\n", "32768\n")).toBeNull();
    expect(parsePidMarks("cpu 1 2 3\n", "0.10 0.20 0.30 1/400 1290\n", "32768\n")).toBeNull();
    expect(parsePidMarks(stat, "0.10 0.20 0.30 1/400 1290\n", "max\n")).toBeNull();
  });
});
