// A scan thread's answer as what changed since its last one: the main thread keeps the rest, so a steady pass
// neither copies nor rebuilds on the main thread the thousands of parents and hundreds of holders it did not change.
import type { ProcInfo, PtyFd, TtyTimes } from "../domain/types.js";
import type { ModalScan } from "./incremental.js";

type Rest = Omit<ModalScan, "processes" | "ppids" | "ptyFds" | "ttyTimes">;

/**
 * One pass's answer. `whole`: the first answer of a thread, or the first after a failed pass: every field then
 * holds all of it (nothing "gone"). Otherwise each field holds only what differs from the thread's last answer.
 */
export interface ScanDelta {
  whole: boolean;
  /** Holders and inits read in full whose record is not the one sent last (the scanner keeps an unchanged one as is). */
  processes: ProcInfo[];
  processesGone: number[];
  /** pid, parent, pid, parent, … of every process listed anew or whose parent changed. */
  ppids: number[];
  ppidsGone: number[];
  /**
   * null: the same pty fds as the last answer. Else, by process: `set` has every fd of each process whose fds are
   * not the ones sent last (all of them when `whole`), `gone` the processes that held some and hold none now.
   * Each exec starting or ending changes a few processes' fds; resending all of them (a thousand on the bench
   * host) made as many objects on the main thread, kept until the next change.
   */
  ptyFds: { set: PtyFd[]; gone: number[] } | null;
  ttyTimes: [string, TtyTimes][];
  ttyTimesGone: string[];
  rest: Rest;
}

/** What changed in a scanner's parents (its scans' `ppids`, one map it keeps) during its last pass. */
export interface ParentChanges {
  /** pid, parent, pid, parent, … */
  set: number[];
  gone: number[];
}

/** The maps a delta is taken against, or applied to. */
interface Held {
  processes: Map<number, ProcInfo>;
  ppids: Map<number, number>;
  ptyFds: PtyFd[];
  ttyTimes: Map<string, TtyTimes>;
}

/** The receiver's: the pty fds also by process, to apply `ptyFds` changes to. */
interface HeldFds extends Held {
  ptyFdsByPid: Map<number, PtyFd[]>;
}

/** The scan thread's side: each pass's scan as a delta from the one before it. */
export class DeltaSender {
  private last: Omit<Held, "ppids"> | null = null;
  /** The last sent pty fds by process, once a change needed them: the next change groups only its own. */
  private lastFdsByPid: { of: readonly PtyFd[]; byPid: Map<number, PtyFd[]> } | null = null;

  /**
   * The delta from the last scan sent (the whole scan after forget()); `scan` is then the last one sent. `parents`:
   * what the pass changed in `ppids`, which the scanner keeps as one map from pass to pass, so only it can say.
   */
  delta(scan: ModalScan, parents: ParentChanges): ScanDelta {
    const { processes, ppids, ptyFds, ttyTimes, ...rest } = scan;
    const last = this.last;
    this.last = { processes, ptyFds, ttyTimes };
    if (last === null) {
      return {
        whole: true,
        processes: [...processes.values()],
        processesGone: [],
        ppids: [...ppids].flat(),
        ppidsGone: [],
        ptyFds: { set: ptyFds, gone: [] },
        ttyTimes: [...ttyTimes],
        ttyTimesGone: [],
        rest,
      };
    }
    const delta: ScanDelta = {
      whole: false,
      processes: [],
      processesGone: gone(last.processes, processes),
      ppids: parents.set,
      ppidsGone: parents.gone,
      ptyFds: sameItems(last.ptyFds, ptyFds) ? null : this.fdChanges(last.ptyFds, ptyFds),
      ttyTimes: [],
      ttyTimesGone: gone(last.ttyTimes, ttyTimes),
      rest,
    };
    // By reference: the scanner gives a holder's unchanged record again as the same object. forEach rather than
    // for-of, here and below: every pass walks every holder, and without V8's optimizing compiler each for-of step allocates.
    processes.forEach((info, pid) => {
      if (last.processes.get(pid) !== info) delta.processes.push(info);
    });
    ttyTimes.forEach((times, key) => {
      const was = last.ttyTimes.get(key);
      if (was === undefined || was.atimeMs !== times.atimeMs || was.mtimeMs !== times.mtimeMs) delta.ttyTimes.push([key, times]);
    });
    return delta;
  }

  /** By process: the fds of those whose fds are not the same objects as before, and those that hold none now. */
  private fdChanges(before: readonly PtyFd[], now: readonly PtyFd[]): { set: PtyFd[]; gone: number[] } {
    const kept = this.lastFdsByPid;
    const was = kept !== null && kept.of === before ? kept.byPid : fdsByPid(before);
    const is = fdsByPid(now);
    this.lastFdsByPid = { of: now, byPid: is };
    const set: PtyFd[] = [];
    const gone: number[] = [];
    is.forEach((fds, pid) => {
      if (!sameItems(was.get(pid) ?? [], fds)) for (let i = 0; i < fds.length; i++) set.push(fds[i] as PtyFd);
    });
    was.forEach((_, pid) => {
      if (!is.has(pid)) gone.push(pid);
    });
    return { set, gone };
  }

  /** After a failed pass: the next answer is whole. */
  forget(): void {
    this.last = null;
    this.lastFdsByPid = null;
  }
}

/**
 * The main thread's side: each delta applied to what the thread sent before, giving that pass's whole scan.
 * The scan's maps (`processes`, `ppids`, `ttyTimes`) are this receiver's own, updated in place by the next delta:
 * read them within the cycle the scan is for (the poller's cycles never overlap), copy what must outlive it, and
 * change none of them (claimNamedContainers changes a copy). Copying them every cycle cost more than the rest
 * of a steady cycle's allocations on the main thread.
 */
export class DeltaReceiver {
  private held: HeldFds | null = null;

  /** Throws when a delta comes with nothing to apply it to: the thread and this side are out of step. */
  apply(delta: ScanDelta): ModalScan {
    let held = this.held;
    if (delta.whole || held === null) {
      if (!delta.whole) throw new Error("a scan delta arrived before any whole scan");
      held = { processes: new Map(), ppids: new Map(), ptyFds: [], ttyTimes: new Map(), ptyFdsByPid: new Map() };
      this.held = held;
    }
    for (let i = 0; i < delta.processesGone.length; i++) held.processes.delete(delta.processesGone[i] as number);
    for (let i = 0; i < delta.processes.length; i++) {
      const info = delta.processes[i] as ProcInfo;
      held.processes.set(info.pid, info);
    }
    for (let i = 0; i < delta.ppidsGone.length; i++) held.ppids.delete(delta.ppidsGone[i] as number);
    for (let i = 0; i + 1 < delta.ppids.length; i += 2) held.ppids.set(delta.ppids[i] as number, delta.ppids[i + 1] as number);
    if (delta.ptyFds !== null) held.ptyFds = applyFdChanges(held.ptyFdsByPid, delta.ptyFds);
    for (let i = 0; i < delta.ttyTimesGone.length; i++) held.ttyTimes.delete(delta.ttyTimesGone[i] as string);
    for (let i = 0; i < delta.ttyTimes.length; i++) {
      const entry = delta.ttyTimes[i] as [string, TtyTimes];
      held.ttyTimes.set(entry[0], entry[1]);
    }
    return {
      ...delta.rest,
      processes: held.processes,
      ppids: held.ppids,
      ptyFds: held.ptyFds,
      ttyTimes: held.ttyTimes,
    };
  }

  /** The thread was replaced: its first answer is whole. */
  forget(): void {
    this.held = null;
  }
}

/** Each process's pty fds, in the order met (a pass adds each process's fds together). */
function fdsByPid(fds: readonly PtyFd[]): Map<number, PtyFd[]> {
  const byPid = new Map<number, PtyFd[]>();
  for (let i = 0; i < fds.length; i++) {
    const fd = fds[i] as PtyFd;
    const list = byPid.get(fd.pid);
    if (list === undefined) byPid.set(fd.pid, [fd]);
    else list.push(fd);
  }
  return byPid;
}

/** Applies fd changes to the fds held by process, and gives the flat list they now make (unchanged fds as the same objects). */
function applyFdChanges(byPid: Map<number, PtyFd[]>, changes: { set: readonly PtyFd[]; gone: readonly number[] }): PtyFd[] {
  for (let i = 0; i < changes.gone.length; i++) byPid.delete(changes.gone[i] as number);
  fdsByPid(changes.set).forEach((fds, pid) => byPid.set(pid, fds));
  const flat: PtyFd[] = [];
  byPid.forEach((fds) => {
    for (let i = 0; i < fds.length; i++) flat.push(fds[i] as PtyFd);
  });
  return flat;
}

function gone<K>(before: ReadonlyMap<K, unknown>, now: ReadonlyMap<K, unknown>): K[] {
  const keys: K[] = [];
  before.forEach((_, key) => {
    if (!now.has(key)) keys.push(key);
  });
  return keys;
}

function sameItems<T>(a: readonly T[], b: readonly T[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
