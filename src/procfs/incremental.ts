// Steady-state /proc scans: re-read only processes whose fd tables may have changed; full passes on a timer and when pty.nr disagrees.
import { isDenied, isVanished } from "../errors.js";
import { ptyKey, type ProcInfo, type ProcScan } from "../domain/types.js";
import { classifyRdev, formatDev, parseStat, parseStatThreads, type StatFields } from "./parse.js";
import type { ProcFs } from "./procfs.js";
import { GONE, NATIVE_THREADS, ScanContext, addPtyFds, emptyScan, readProcInfo, readPtyFds, resolveInitDevpts, type RawPtyFd, type ScanOptions } from "./scan.js";

export type ScanMode = "full" | "incremental";
export type ModalScan = ProcScan & { mode: ScanMode };

export const DEFAULT_FULL_RESCAN_EVERY_MS = 60_000;

export interface IncrementalScannerOptions {
  /** A full pass at least this often, whatever else says. Default 60 s. */
  fullRescanEveryMs?: number;
  now: () => number;
  /** Only pids with pid % count === index: the worker pool splits /proc between its threads this way. */
  partition?: { index: number; count: number };
}

/** Distinct ptys in a scan, the number the kernel's pty.nr counts. */
export function distinctPtys(scan: ProcScan): number {
  const keys = new Set<string>();
  for (const fd of scan.ptyFds) keys.add(ptyKey(fd.devptsDev, fd.index));
  return keys.size;
}

/** When a pass must be full: the first, one every `everyMs`, and one as soon as the pty count stops matching the kernel's. */
export class RescanPolicy {
  private lastFullAt: number | null = null;
  /**
   * pty.nr minus the ptys found, at the last full pass. A gap a full pass could not close either
   * (ptys held only by processes we cannot read, or by fds in flight in a unix socket) must not
   * cause a full pass on every cycle; a change in the gap does.
   */
  private gapAtFull = 0;

  constructor(private readonly everyMs: number) {}

  dueFull(now: number): boolean {
    return this.lastFullAt === null || now - this.lastFullAt >= this.everyMs;
  }

  disagrees(found: number, allocated: number): boolean {
    return allocated - found !== this.gapAtFull;
  }

  recordFull(now: number, found: number, allocated: number): void {
    this.lastFullAt = now;
    this.gapAtFull = allocated - found;
  }

  /** After state was lost (a restarted worker): the next pass is full. */
  forget(): void {
    this.lastFullAt = null;
  }
}

/**
 * The fd count and the signature made of it and every thread's schedstat (see IncrementalScanner);
 * signature null when schedstat is missing. The native reader makes the same text (native/ptyscan.c).
 */
export function readFdSignature(procfs: ProcFs, pid: number, statText: string): { count: number | null; signature: string | null } {
  const count = procfs.fdCount(pid);
  const threads = parseStatThreads(statText);
  try {
    if (threads === 1) return { count, signature: `${count}|${procfs.schedstat(pid)}` };
    let signature = `${count}`;
    for (const tid of procfs.tasks(pid)) {
      try {
        signature += `|${tid}:${procfs.taskSchedstat(pid, tid)}`;
      } catch (err) {
        if (!isVanished(err)) throw err; // a thread that exited: its absence changes the signature anyway
      }
    }
    return { count, signature };
  } catch (err) {
    // No schedstat (a kernel without CONFIG_SCHED_INFO, or a fixture tree): nothing to compare, so always re-read.
    if (isVanished(err)) return { count, signature: null };
    throw err;
  }
}

/** What the scanner remembers of a process between passes. */
interface Tracked {
  startTicks: number;
  /** What moves whenever the fd table can have changed; null when unreadable (then re-read every pass). */
  signature: string | null;
  raws: readonly RawPtyFd[];
  /** Parse problems met reading the fds: counted again on every pass that reuses them, as a full pass would. */
  parseErrors: readonly string[];
  /** Read in full when the process holds a pty or is a container init. */
  info: ProcInfo | null;
  /** Numbers of the pass that last read its fds, and of the last that saw it. */
  readIn: number;
  seenIn: number;
}

/**
 * Keeps what it learnt of every process and, on an incremental pass, re-reads the fds of a
 * process only when it is new (pid unseen or start time changed) or its signature moved.
 *
 * The signature is the fd count (st_size of /proc/PID/fd, Linux ≥ 6.2) and /proc/PID/schedstat
 * of every thread. An fd table only changes through its own threads, which must have run to do
 * so, and a thread that ran has a different schedstat (time on cpu, times scheduled in). The
 * count alone would miss a close followed by an open. What the signature cannot see — a
 * process sharing another's fd table without being its thread (clone(CLONE_FILES), very rare) —
 * the periodic full pass catches.
 *
 * Known holders are confirmed every pass by a stat of each of their pty fds, which also gives
 * fresh tty times. Everything read from /proc/PID/stat (ppid, session, comm, controlling tty) and
 * the cgroup of holders, which other processes can change, is read on every pass.
 */
export class IncrementalScanner {
  private readonly tracked = new Map<number, Tracked>();
  private passes = 0;
  private readonly policy: RescanPolicy;

  constructor(
    private readonly procfs: ProcFs,
    private readonly options: IncrementalScannerOptions,
  ) {
    this.policy = new RescanPolicy(options.fullRescanEveryMs ?? DEFAULT_FULL_RESCAN_EVERY_MS);
  }

  /** `ptyAllocated` is the kernel's pty.nr, read just before. */
  scan(options: ScanOptions & { ptyAllocated: number }): ModalScan {
    const now = this.options.now();
    if (!this.policy.dueFull(now)) {
      const result = this.pass(options, "incremental");
      if (!this.policy.disagrees(distinctPtys(result), options.ptyAllocated)) return result;
    }
    const result = this.pass(options, "full");
    this.policy.recordFull(now, distinctPtys(result), options.ptyAllocated);
    return result;
  }

  /** One pass in the given mode, with no decision of its own: a pool decides for all its partitions together. */
  pass(options: ScanOptions, mode: ScanMode): ModalScan {
    const { procfs } = this;
    const ctx = new ScanContext(procfs);
    const scan: ModalScan = { ...emptyScan(procfs.bootTimeSec(), ctx.parseErrors), mode };
    const passNo = ++this.passes;
    const inits = new Set(options.initPids ?? []);
    // Holders and inits, with their stat fields: the processes read in full below.
    const wanted = new Map<number, StatFields>();
    const part = this.options.partition;

    const pids = procfs.pids().filter((pid) => !part || pid % part.count === part.index);
    // The native reader batches every process's stat and signature across its threads, and on a full pass its links too.
    ctx.prefetch(pids, NATIVE_THREADS, { links: mode === "full", signatures: true });
    for (const pid of pids) {
      try {
        const text = ctx.statText(pid);
        const stat = parseStat(text);
        if (stat === null) {
          ctx.countParseError("stat");
          continue;
        }
        scan.ppids.set(pid, stat.ppid);
        // Read before the fds, so a change made while they are read shows on the next pass.
        const { count, signature } = ctx.takeSignature(pid) ?? readFdSignature(this.procfs, pid, text);
        const prev = this.tracked.get(pid);
        let entry: Tracked | null = null;
        if (mode === "incremental" && prev && prev.startTicks === stat.startTicks && signature !== null && prev.signature === signature) {
          entry = this.confirm(pid, prev);
        }
        entry ??= this.read(ctx, pid, stat.startTicks, count, signature, passNo);
        if (addPtyFds(ctx, scan, pid, entry.raws) === GONE) {
          scan.vanished++; // exited since its fds were read; forgotten below
          continue;
        }
        entry.seenIn = passNo;
        if (entry !== prev) this.tracked.set(pid, entry);
        for (const kind of entry.parseErrors) ctx.countParseError(kind);
        if (entry.raws.length > 0 || inits.has(pid)) wanted.set(pid, stat);
      } catch (err) {
        if (isVanished(err)) scan.vanished++;
        else if (isDenied(err)) scan.unreadablePids.push(pid);
        else throw err;
      }
    }
    // Processes not seen this pass have exited (or left this partition's view).
    for (const [pid, entry] of this.tracked) if (entry.seenIn !== passNo) this.tracked.delete(pid);

    for (const [pid, base] of wanted) {
      const entry = this.tracked.get(pid);
      if (!entry) continue;
      const info = entry.readIn === passNo || entry.info === null ? readProcInfo(ctx, pid, base) : this.refreshInfo(pid, entry.info, base);
      entry.info = info ?? null;
      if (info) scan.processes.set(pid, info);
      else if (info === null) scan.vanished++;
    }
    resolveInitDevpts(ctx, scan, options);
    return scan;
  }

  /** Drops everything learnt: the next incremental pass reads every process. */
  forget(): void {
    this.tracked.clear();
    this.policy.forget();
  }

  private read(ctx: ScanContext, pid: number, startTicks: number, count: number | null, signature: string | null, passNo: number): Tracked {
    const { value: raws, parseErrors } = ctx.recording(() => readPtyFds(ctx, pid, count));
    return { startTicks, signature, raws, parseErrors, info: null, readIn: passNo, seenIn: passNo };
  }

  /** Stats every known pty fd: still the same file → fresh times; otherwise null, and the process is read again. */
  private confirm(pid: number, prev: Tracked): Tracked | null {
    if (prev.raws.length === 0) return prev;
    const raws: RawPtyFd[] = [];
    for (const raw of prev.raws) {
      let st;
      try {
        st = this.procfs.fdStat(pid, String(raw.fd));
      } catch (err) {
        if (isVanished(err)) return null;
        throw err;
      }
      const kind = classifyRdev(st.rdev);
      const same = kind !== null && kind.role === raw.role && (kind.role === "master" || kind.index === raw.index) && st.ino === raw.ino && formatDev(st.dev) === raw.dev;
      if (!same) return null;
      raws.push({ ...raw, atimeMs: st.atimeMs, mtimeMs: st.mtimeMs });
    }
    return { ...prev, raws };
  }

  /** A holder that did not run: what others can change about it is read again (stat fields, cgroup). */
  private refreshInfo(pid: number, info: ProcInfo, base: StatFields): ProcInfo | null {
    let containerId: string | null;
    try {
      containerId = this.procfs.cgroupContainerId(pid);
    } catch (err) {
      if (isVanished(err)) return null;
      throw err;
    }
    return { ...info, ppid: base.ppid, pgrp: base.pgrp, sid: base.sid, ttyNr: base.ttyNr, startTicks: base.startTicks, comm: base.comm, containerId };
  }
}
