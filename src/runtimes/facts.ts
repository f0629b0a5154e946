// Reads what runtime attribution needs about one process from /proc: stat, status, cmdline and cgroup.
import { isVanished } from "../errors.js";
import type { ProcFs } from "../procfs/procfs.js";
import type { ProcessFacts } from "../domain/attribution.js";

/**
 * The facts of `pid`, or null when it exited (or its files are malformed) while being read. `known`: its stat,
 * when the caller has just read it.
 */
export function readProcessFacts(procfs: ProcFs, pid: number, known?: { ppid: number; comm: string }): ProcessFacts | null {
  try {
    const stat = known ?? procfs.stat(pid);
    const status = procfs.status(pid);
    if (!stat || !status) return null;
    return {
      pid,
      ppid: stat.ppid,
      comm: stat.comm,
      argv: procfs.cmdline(pid).args,
      cgroup: procfs.cgroupText(pid),
      nsPid: status.nsPids[status.nsPids.length - 1] ?? null,
    };
  } catch (err) {
    if (isVanished(err)) return null;
    throw err;
  }
}

/** A lookup over /proc that reads each process once. */
export function processFactsLookup(procfs: ProcFs): (pid: number) => ProcessFacts | undefined {
  const seen = new Map<number, ProcessFacts | null>();
  return (pid) => {
    if (!seen.has(pid)) seen.set(pid, pid > 0 ? readProcessFacts(procfs, pid) : null);
    return seen.get(pid) ?? undefined;
  };
}
