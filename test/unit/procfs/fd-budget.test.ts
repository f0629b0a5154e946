// Bounded fd-table reads: the per-process cap (from the directory's size, or a listing that stops) and the shared time budget.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FdReadBudget, readFdLinksBounded, type FdReadCut } from "../../../src/procfs/fd-budget.js";
import { ProcFs } from "../../../src/procfs/procfs.js";

const root = mkdtempSync(join(tmpdir(), "ptyr-fd-budget-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
mkdirSync(join(root, "10/fd"), { recursive: true });
for (let fd = 0; fd < 100; fd++) symlinkSync(fd % 2 === 0 ? `socket:[${1000 + fd}]` : "/dev/null", join(root, `10/fd/${fd}`));

/** Records what was asked of the fixture tree. */
class Counting extends ProcFs {
  links = 0;
  listed = 0;
  constructor(private readonly size: number | null = null) {
    super(root, { native: null });
  }
  override fdCount(): number | null {
    return this.size;
  }
  override fdsUpTo(pid: number, max: number): string[] {
    const fds = super.fdsUpTo(pid, max);
    this.listed += fds.length;
    return fds;
  }
  override fdLinkIfOpen(pid: number, fd: string): string | null {
    this.links++;
    return super.fdLinkIfOpen(pid, fd);
  }
}

describe("readFdLinksBounded", () => {
  it("reads every link within the cap, keeping those asked for", () => {
    const links = readFdLinksBounded(new Counting(), 10, new FdReadBudget(100, 1_000), (link) => link.startsWith("socket:"));
    expect(typeof links === "string" ? links : links.length).toBe(50);
  });

  it("over the cap by the directory's size (Linux ≥ 6.2): one stat, no listing, the cut reported", () => {
    const procfs = new Counting(500_000);
    const cuts: FdReadCut[] = [];
    expect(readFdLinksBounded(procfs, 10, new FdReadBudget(64, 1_000, (cut) => cuts.push(cut)))).toBe("fd_cap");
    expect([procfs.listed, procfs.links, cuts]).toEqual([0, 0, ["fd_cap"]]);
  });

  it("over the cap where the size says nothing (0 before Linux 6.2): the listing stops one past the cap, no link read", () => {
    const procfs = new Counting(0);
    expect(readFdLinksBounded(procfs, 10, new FdReadBudget(64, 1_000))).toBe("fd_cap");
    expect(procfs.listed).toBe(65);
    expect(procfs.links).toBe(0);
  });

  it("stops when the shared time budget is spent, and reads nothing more on it", () => {
    let now = 0;
    const procfs = new Counting();
    const cuts: FdReadCut[] = [];
    const budget = new FdReadBudget(
      1_000,
      10,
      (cut) => cuts.push(cut),
      () => now,
    );
    const original = procfs.fdLinkIfOpen.bind(procfs);
    procfs.fdLinkIfOpen = (pid, fd) => {
      now += 1; // each link read takes 1 ms
      return original(pid, fd);
    };
    expect(readFdLinksBounded(procfs, 10, budget)).toBe("read_budget");
    expect(procfs.links).toBeLessThan(100);
    expect(procfs.links).toBeGreaterThanOrEqual(10);
    const before = procfs.links;
    expect(readFdLinksBounded(procfs, 10, budget)).toBe("read_budget");
    expect(procfs.links).toBe(before);
    expect(cuts).toEqual(["read_budget", "read_budget"]);
  });

  it("reaches the caller with ENOENT when the process is gone", () => {
    expect(() => readFdLinksBounded(new Counting(), 11, new FdReadBudget(64, 1_000))).toThrow(/ENOENT/);
  });
});
