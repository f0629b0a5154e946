// Bounded reads of another process's fd table on the main thread: any container process may hold 500,000
// fds, and one readlink costs about 8 µs, so every such read has a per-process cap and a shared time budget.
import { isVanished } from "../errors.js";
import type { ProcFs } from "./procfs.js";

/** Why a read of a process's fds stopped short: bounded, the fd reasons of ptyreaper_process_reads_cut_total. */
export type FdReadCut = "fd_cap" | "read_budget";
export const FD_READ_CUTS: readonly FdReadCut[] = ["fd_cap", "read_budget"];

/**
 * What one cycle's client evidence of one runtime may spend reading other processes' fds: a real client's
 * dozen fds take microseconds, so this is only reached when a crowd of would-be clients is read.
 */
export const EVIDENCE_READ_BUDGET_MS = 50;

/** Links read between two looks at the clock: a clock read is cheap, but not free next to a readlink. */
const LINKS_PER_CLOCK_LOOK = 32;

/**
 * The cap on one process's fds and the time all reads drawing on this budget may take together (one
 * cycle's client evidence, one reap step). Cut reads are reported to `onCut` (the metric), never waited on.
 */
export class FdReadBudget {
  private readonly deadline: number;

  constructor(
    readonly maxFds: number,
    budgetMs: number,
    private readonly onCut: (reason: FdReadCut) => void = () => undefined,
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.deadline = clock() + budgetMs;
  }

  get spent(): boolean {
    return this.clock() >= this.deadline;
  }

  /** Reports a cut and returns it, for `return budget.cut(...)`. */
  cut(reason: FdReadCut): FdReadCut {
    this.onCut(reason);
    return reason;
  }
}

/** One fd and its link. */
export interface FdLinkText {
  fd: string;
  link: string;
}

/**
 * The links of `pid`'s fds that pass `keep` (every one by default), or why they were not all read: more fds
 * than the cap (one stat of the fd directory on Linux ≥ 6.2; on older kernels, which report 0, the listing
 * stops after cap + 1 entries), or the budget spent before or during the read. An fd closed meanwhile is
 * left out; ENOENT when the process is gone and EACCES reach the caller.
 */
export function readFdLinksBounded(
  procfs: ProcFs,
  pid: number,
  budget: FdReadBudget,
  keep: (link: string) => boolean = () => true,
): FdLinkText[] | FdReadCut {
  if (budget.spent) return budget.cut("read_budget");
  const count = procfs.fdCount(pid);
  if (count !== null && count > budget.maxFds) return budget.cut("fd_cap");
  const fds = procfs.fdsUpTo(pid, budget.maxFds + 1);
  if (fds.length > budget.maxFds) return budget.cut("fd_cap");
  const links: FdLinkText[] = [];
  for (const [at, fd] of fds.entries()) {
    if (at % LINKS_PER_CLOCK_LOOK === LINKS_PER_CLOCK_LOOK - 1 && budget.spent) return budget.cut("read_budget");
    let link: string | null;
    try {
      link = procfs.fdLinkIfOpen(pid, fd);
    } catch (err) {
      if (isVanished(err)) continue;
      throw err;
    }
    if (link !== null && keep(link)) links.push({ fd, link });
  }
  return links;
}
