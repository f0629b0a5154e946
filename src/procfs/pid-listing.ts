// Which pids a steady pass looks at: the whole /proc listing costs the kernel ~1.5 µs a process (every pass, on
// every node), while the pids given out since the last look are a few dozen a cycle. The kernel says which.
import type { PidMarks } from "./parse.js";
import type { ProcFs } from "./procfs.js";

/** A whole listing at least this often, whatever the marks say: it is what finds the processes that exited. */
export const WHOLE_LISTING_EVERY_MS = 60_000;

/**
 * The pids at and below the last mark listed again the next time. A fork takes its pid before it shows in /proc
 * (alloc_pid before attach_pid in copy_process), so one in flight when the marks were read shows only later, below
 * them. A fork held up longer than it takes the host to give out this many pids shows at the next whole listing.
 */
export const RELIST_BELOW_MARK = 64;

/**
 * The pid ranges (inclusive) a process started between two marks can have, or null when they cannot be told:
 * the allocator hands pids out in a cycle (after pid_max it starts again from the bottom), so every pid given out
 * since `before` lies after its last pid, up to `now`'s. Every fork takes one pid and moves the allocator at least
 * one step, so fewer steps than forks means it went all the way round, or the forks were in another pid namespace:
 * null, and the caller lists every pid.
 */
export function pidsGivenOutBetween(before: PidMarks, now: PidMarks): [number, number][] | null {
  const forks = now.forks - before.forks;
  if (forks < 0 || now.pidMax !== before.pidMax || now.lastPid >= now.pidMax) return null;
  if (now.lastPid >= before.lastPid) {
    if (now.lastPid - before.lastPid < forks) return null;
    return now.lastPid === before.lastPid ? [] : [[before.lastPid + 1, now.lastPid]];
  }
  // Round past pid_max and up from the bottom again (or the allocator was moved back: ns_last_pid).
  if (now.pidMax - 1 - before.lastPid + now.lastPid < forks) return null;
  const ranges: [number, number][] = [[1, now.lastPid]];
  if (before.lastPid + 1 <= now.pidMax - 1) ranges.push([before.lastPid + 1, now.pidMax - 1]);
  return ranges;
}

/**
 * What a pass looks at: every pid (`whole`), or those given out since the last listing, ascending either way; and
 * `relisted`, the pids just below the last listing's mark listed again (RELIST_BELOW_MARK): new to the caller only
 * if it does not know them.
 */
export interface Listing {
  whole: boolean;
  pids: number[];
  relisted: number[];
}

/**
 * Lists every pid, or only those given out since the last listing (ProcFs.pidsBetween, where the kernel walks
 * only them). The second needs three things, else every pass lists every pid as before:
 * - this procfs is of this process's own pid namespace (loadavg speaks of the reader's namespace);
 * - the native reader, whose listing can start at a pid;
 * - that start checked against a whole listing: on each whole listing, a span of old pids listed both ways must
 *   agree (a kernel that placed its pids otherwise would fail it, and is listed whole until one agrees).
 */
export class PidListing {
  private marks: PidMarks | null = null;
  private wholeAt = -Infinity;
  /** Why listings from a pid are not used now; null when they are. */
  private unusable: string | null = "no whole listing yet";
  private readonly ownNamespace: boolean;

  constructor(
    private readonly procfs: ProcFs,
    private readonly clock: () => number,
  ) {
    this.ownNamespace = procfs.isOwnPidNamespace();
  }

  /** Why the last listing was whole while not asked to be; null when listings since the last one are used. */
  get reason(): string | null {
    return this.unusable;
  }

  /** The pids to look at now. `whole`: every one, whatever the marks say (a full pass). */
  next(whole: boolean): Listing {
    const marks = this.ownNamespace ? this.procfs.pidMarks() : null;
    const since = this.marks;
    this.marks = marks;
    const usable = !whole && this.unusable === null && marks !== null && since !== null && this.clock() - this.wholeAt < WHOLE_LISTING_EVERY_MS;
    const ranges = usable ? pidsGivenOutBetween(since, marks) : null;
    if (ranges !== null && since !== null) {
      const pids: number[] = [];
      for (const [from, to] of ranges) pids.push(...(this.procfs.pidsBetween(from, to) ?? []));
      const relisted = this.procfs.pidsBetween(Math.max(1, since.lastPid - RELIST_BELOW_MARK + 1), since.lastPid) ?? [];
      return { whole: false, pids: pids.sort((a, b) => a - b), relisted };
    }
    const pids = this.procfs.pids();
    this.wholeAt = this.clock();
    this.unusable = marks === null ? (this.ownNamespace ? "pid marks unreadable" : "not this process's pid namespace") : this.check(pids);
    return { whole: true, pids, relisted: [] };
  }

  /** Lists a span of the oldest pids (the least likely to change meanwhile) from its first pid: null when it agrees. */
  private check(all: readonly number[]): string | null {
    const span = all.slice(Math.min(8, all.length), Math.min(72, all.length));
    const from = span[0];
    const to = span.at(-1);
    if (from === undefined || to === undefined) return "too few processes to check a listing from a pid";
    const listed = this.procfs.pidsBetween(from, to);
    if (listed === null) return "no native listing from a pid";
    const agrees = listed.length === span.length && listed.every((pid, i) => pid === span[i]);
    return agrees ? null : `a listing from pid ${from} disagreed with the whole listing`;
  }
}
