// The one pass over /proc: every pty fd of every process, and who holds it. No Docker knowledge here.
import { dirname } from "node:path";
import { performance } from "node:perf_hooks";
import { isDenied, isVanished } from "../errors.js";
import { argvIsParsed, cgroupContainerId } from "../domain/attribution.js";
import { isNamespaceInit } from "../domain/inventory.js";
import { ptyKey, type ProcInfo, type ProcScan, type PtyFd, type PtyRole, type TtyTimes } from "../domain/types.js";
import { DEFAULT_FULL_RESCAN_EVERY_MS, RescanPolicy, scanWithPolicy, type ModalScan, type ScanMode } from "./incremental.js";
import {
  classifyRdev,
  devptsAt,
  formatDev,
  isDevptsDev,
  mayBePty,
  parseFdinfoTtyIndex,
  parseStat,
  slaveIndexOf,
  type MountinfoEntry,
  type StatFields,
} from "./parse.js";
import type { BpfFinderChoice, FdLink, FdLinksOrError, LinkStat, NativeBatch } from "./native.js";
import { PidListing, type Listing } from "./pid-listing.js";
import { CMDLINE_SHOWN_BYTES, type ProcFs } from "./procfs.js";
import type { ParentChanges } from "./scan-delta.js";

const DEVPTS_PTMX_INO = 2;

/** What a read of a process that exited meanwhile gives back instead of data. */
export const GONE = Symbol("gone");

/** mountinfo of a process that is exiting: its namespaces are already released (EINVAL from mounts_open_common). */
function isExiting(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === "EINVAL";
}

export interface ScanOptions {
  /** Host pids of container init processes known from Docker: their /dev/pts instance is resolved. */
  initPids?: readonly number[];
  /** Host pids whose command line is read whole (CMDLINE_MAX_BYTES): the runtimes' exec processes. */
  wholeArgvPids?: readonly number[];
}

/** Whole command lines read per pass beyond wholeArgvPids (programs whose argv is parsed): a crowd of them costs this much at most. */
export const WHOLE_ARGV_PER_PASS = 256;

/**
 * Ordinary holders of one pty whose command line is read and kept, per pass (and per scan thread): any pod can
 * start thousands of processes on one pty. The rest keep their stat, status and cgroup (what attribution needs)
 * and an empty command line (cmdlineUnread). Never cut: exec processes, container inits, master holders and
 * programs whose argv is parsed (those have WHOLE_ARGV_PER_PASS).
 */
export const HOLDER_DETAILS_PER_PTY = 64;

/** A pty fd as read, before a master is mapped to its devpts instance (which needs the holder's mounts). */
export interface RawPtyFd {
  /** The first fd read that names this file. */
  fd: number;
  /** fds of the process naming this same file (dup'd): one entry for all of them. */
  count: number;
  role: PtyRole;
  /** st_dev of the opened file, "major:minor": a slave's devpts instance; devtmpfs for a master opened as /dev/ptmx. */
  dev: string;
  ino: number;
  index: number;
  /** readlink text, relative to the holder's mount namespace. */
  target: string;
  atimeMs: number;
  mtimeMs: number;
}

export type StatBase = Pick<ProcInfo, "ppid" | "pgrp" | "sid" | "ttyNr" | "startTicks" | "comm">;

/** What one pass shares: mount tables by mount namespace, and counts of malformed content. */
export class ScanContext {
  readonly parseErrors: Record<string, number> = {};
  /** A container's processes share one mount namespace, so one table serves them all. */
  private readonly mountTables = new Map<string, MountinfoEntry[] | null>();
  private recorder: string[] | null = null;
  /** Links read natively for many processes at once, each taken once by readPtyFds. */
  private prefetched: Map<number, FdLinksOrError> | null = null;
  private prefetchedStats: Map<number, string> | null = null;
  private prefetchedCounts: Map<number, number> | null = null;
  /** Stats of held slaves read in one native call (prefetchSlaveStats), by slaveKey, each taken once. */
  private prefetchedSlaves: Map<number, LinkStat | NodeJS.ErrnoException> | null = null;
  /** The processes an early read covered (see adopt): never read again in this pass. */
  private early: ReadonlySet<number> | null = null;

  /** Whole command lines read this pass for parsed programs (see readProcInfo), and those cut by the budget. */
  wholeArgvReads = 0;
  argvBudgetCuts = 0;
  /** Holders given details this pass, by slave pty key (HOLDER_DETAILS_PER_PTY). */
  private readonly detailsByPty = new Map<string, number>();

  /**
   * Whether a holder's command line is read: always for the exempt kinds (see HOLDER_DETAILS_PER_PTY), else while
   * one of the slaves it holds has had fewer than HOLDER_DETAILS_PER_PTY holders with details this pass.
   */
  keepsDetails(raws: readonly RawPtyFd[], exempt: boolean): boolean {
    // Indexed loops and no throwaway arrays: every holder asks this every pass (see readOne).
    let full = raws.length > 0;
    for (let i = 0; i < raws.length; i++) {
      const raw = raws[i] as RawPtyFd;
      if (raw.role !== "slave") return true; // a master holder
      if (full && (this.detailsByPty.get(ptyKey(raw.dev, raw.index)) ?? 0) < HOLDER_DETAILS_PER_PTY) full = false;
    }
    if (exempt) return true;
    if (full) return false;
    for (let i = 0; i < raws.length; i++) {
      const key = ptyKey((raws[i] as RawPtyFd).dev, (raws[i] as RawPtyFd).index);
      this.detailsByPty.set(key, (this.detailsByPty.get(key) ?? 0) + 1);
    }
    return true;
  }

  constructor(readonly procfs: ProcFs) {}

  /**
   * Takes a read of stat texts and links made before the pass began (a full pass's, see
   * ProcFs.batchOfAllAsync): its processes are taken from it, those it did not cover are read as usual.
   */
  adopt(early: NativeBatch): void {
    this.prefetched = early.links ?? new Map();
    this.prefetchedStats = early.stats;
    this.prefetchedCounts = early.fdCounts;
    this.early = new Set(this.prefetched.keys());
  }

  /** Reads the stat, and the links and fd counts as asked, of all these processes now (no-op without the native reader). */
  prefetch(pids: readonly number[], threads: number, want: { links: boolean; fdCounts: boolean }): void {
    const early = this.early;
    if (early === null) {
      const read = this.procfs.batchOf(pids, threads, want);
      this.prefetched = read?.links ?? null;
      this.prefetchedStats = read?.stats ?? null;
      this.prefetchedCounts = read?.fdCounts ?? null;
      return;
    }
    // Started since the early read: read now, beside what it left to take.
    const unread = pids.filter((pid) => !early.has(pid));
    const read = unread.length > 0 ? this.procfs.batchOf(unread, threads, want) : null;
    for (const [pid, links] of read?.links ?? []) this.prefetched?.set(pid, links);
    for (const [pid, text] of read?.stats ?? []) this.prefetchedStats?.set(pid, text);
    for (const [pid, count] of read?.fdCounts ?? []) this.prefetchedCounts?.set(pid, count);
  }

  /**
   * A stat of each of these fds, the pty slaves these processes held when last read, in one native call (no-op
   * without the native reader): confirming a holder then makes no Stats object per slave. Read after the batch's fd
   * counts, as a process's fds are always read after its count.
   */
  prefetchSlaveStats(pids: readonly number[], fds: readonly number[]): void {
    const stats = pids.length > 0 ? this.procfs.statFds(Int32Array.from(pids), Int32Array.from(fds)) : null;
    if (stats === null) return;
    this.prefetchedSlaves ??= new Map();
    for (let k = 0; k < stats.length; k++)
      this.prefetchedSlaves.set(slaveKey(pids[k] ?? 0, fds[k] ?? 0), stats[k] as LinkStat | NodeJS.ErrnoException);
  }

  /** The file fd `fd` of `pid` names: prefetched, else stat'd now. Throws (ENOENT when gone) as the stat does. */
  slaveStat(pid: number, fd: number): LinkStat {
    const key = slaveKey(pid, fd);
    const stat = this.prefetchedSlaves?.get(key);
    if (stat === undefined) return this.procfs.fdStat(pid, String(fd));
    this.prefetchedSlaves?.delete(key);
    if (stat instanceof Error) throw stat;
    return stat;
  }

  /** The fd count of a process (st_size of /proc/PID/fd), prefetched or read now; null where procfs does not give it. */
  fdCount(pid: number): number | null {
    const count = this.prefetchedCounts?.get(pid);
    if (count === undefined) return this.procfs.fdCount(pid);
    this.prefetchedCounts?.delete(pid);
    return count;
  }

  /** /proc/PID/stat as prefetched, else read now (throwing as the read does). */
  stat(pid: number): StatFields | null {
    return parseStat(this.statText(pid));
  }

  /** The text of /proc/PID/stat, prefetched or read now. */
  statText(pid: number): string {
    const text = this.prefetchedStats?.get(pid);
    if (text === undefined) return this.procfs.statText(pid);
    this.prefetchedStats?.delete(pid);
    return text;
  }

  /** The pty-looking links of one process: prefetched, else read now by the native reader or, without it, by JS. */
  fdLinks(pid: number): FdLinksOrError {
    const prefetched = this.prefetched?.get(pid);
    if (prefetched !== undefined) {
      this.prefetched?.delete(pid);
      return prefetched;
    }
    try {
      return this.procfs.fdLinksMayBePty(pid) ?? readFdLinksJs(this.procfs, pid);
    } catch (err) {
      return err as NodeJS.ErrnoException;
    }
  }

  countParseError(kind: string): void {
    if (this.recorder) this.recorder.push(kind);
    else this.parseErrors[kind] = (this.parseErrors[kind] ?? 0) + 1;
  }

  /** Runs `read`, collecting the parse problems it meets instead of counting them (the caller counts them, maybe again later). */
  recording<T>(read: () => T): { value: T; parseErrors: string[] } {
    const parseErrors: string[] = [];
    this.recorder = parseErrors;
    try {
      return { value: read(), parseErrors };
    } finally {
      this.recorder = null;
    }
  }

  /** The process's mount table, cached by mount namespace; null when unreadable, GONE when the process exited. */
  mountTable(pid: number): MountinfoEntry[] | null | typeof GONE {
    let ns: string | null;
    try {
      ns = this.procfs.namespace(pid, "mnt");
    } catch {
      ns = null; // unreadable namespace link: read this process's table uncached
    }
    if (ns !== null && this.mountTables.has(ns)) return this.mountTables.get(ns) ?? null;
    let table: MountinfoEntry[] | null = null;
    try {
      table = this.procfs.mountinfo(pid);
    } catch (err) {
      if (isVanished(err) || isExiting(err)) return GONE;
      this.countParseError("mountinfo");
    }
    if (ns !== null) this.mountTables.set(ns, table);
    return table;
  }
}

/** One number for a (pid, fd) pair: pids are below 2^22 (PID_MAX_LIMIT) and fds below 2^31, so it is exact. */
function slaveKey(pid: number, fd: number): number {
  return pid * 2 ** 31 + fd;
}

export function emptyScan(bootTimeSec: number, parseErrors: Record<string, number>): ProcScan {
  return {
    processes: new Map(),
    ppids: new Map(),
    ptyFds: [],
    ttyTimes: new Map(),
    initDevpts: new Map(),
    unreadablePids: [],
    vanished: 0,
    parseErrors,
    bootTimeSec,
  };
}

/**
 * Reads every process and its pty fds, all of them (no budget). Processes that vanish mid-scan are
 * counted, never raised. `early`: what ProcFs.batchOfAllAsync read of this same root before (the
 * CLI starts it first thing): those processes are not read again, only ones started since.
 */
export function scanProc(procfs: ProcFs, options: ScanOptions = {}, early?: NativeBatch): ModalScan {
  // One pass and no next one to compare with: the fd counts would be read for nothing.
  return new IncrementalScanner(procfs, { now: () => 0, fdCounts: false }).pass(options, "full", Infinity, early);
}

/** An init's /dev/pts as its mount table said, and which init and mount namespace that was. */
export interface KeptInitDevpts {
  startTicks: number;
  mntNs: string;
  dev: string | null;
}

/**
 * Container inits: Docker's, and any process read in full that is pid 1 in its own namespace. `kept`: what earlier
 * passes read, taken again while the init (pid and start time) and its mount namespace are the same, so a steady
 * pass reads no mount table; the caller clears it for a full pass. A container that mounts another devpts on its
 * /dev/pts meanwhile has its new ptys unattributed until then: never signalled, only not yet named.
 */
export function resolveInitDevpts(ctx: ScanContext, scan: ProcScan, options: ScanOptions, kept?: Map<number, KeptInitDevpts>): void {
  for (const info of scan.processes.values()) {
    if (!isNamespaceInit(info) && !options.initPids?.includes(info.pid)) continue;
    let mntNs: string | null = null;
    try {
      mntNs = kept ? ctx.procfs.namespace(info.pid, "mnt") : null;
    } catch {
      mntNs = null; // exited, or unreadable: read as without a cache
    }
    const known = kept?.get(info.pid);
    let dev: string | null;
    if (known !== undefined && mntNs !== null && known.mntNs === mntNs && known.startTicks === info.startTicks) dev = known.dev;
    else {
      const table = ctx.mountTable(info.pid);
      dev = table && table !== GONE ? devptsAt(table, "/dev/pts") : null;
      if (mntNs !== null && table !== GONE) kept?.set(info.pid, { startTicks: info.startTicks, mntNs, dev });
    }
    if (dev) scan.initDevpts.set(info.pid, dev);
  }
  if (kept) for (const pid of kept.keys()) if (!scan.processes.has(pid)) kept.delete(pid);
}

/**
 * Adds one process's pty fds to the scan: holders, and slaves' times. A master whose instance is
 * unknown is left out (counted). GONE, with nothing added, when the process exited since its fds
 * were read: it then counts as vanished, like one that exited before.
 */
export function addPtyFds(ctx: ScanContext, scan: ProcScan, pid: number, raws: readonly RawPtyFd[]): readonly PtyFd[] | typeof GONE {
  const resolved: PtyFd[] = [];
  for (const raw of raws) {
    const ptyFd = resolvePtyFd(ctx, pid, raw);
    if (ptyFd === GONE) return GONE;
    if (ptyFd !== null) resolved.push(ptyFd);
  }
  addResolved(scan, resolved, raws);
  return resolved;
}

/**
 * A tracked process's pty fds into the scan: as resolved before when they were, else resolved now and kept.
 * False when its mount namespace is gone (it exited).
 */
function addTracked(ctx: ScanContext, scan: ProcScan, pid: number, entry: Tracked): boolean {
  if (entry.resolved !== null) {
    addResolved(scan, entry.resolved, entry.raws);
    return true;
  }
  const resolved = addPtyFds(ctx, scan, pid, entry.raws);
  if (resolved === GONE) return false;
  entry.resolved = resolved;
  return true;
}

/** Pty fds resolved before (their instance does not change while the same file is held), with the slaves' times from `raws`. */
function addResolved(scan: ProcScan, resolved: readonly PtyFd[], raws: readonly RawPtyFd[]): void {
  for (let i = 0; i < resolved.length; i++) scan.ptyFds.push(resolved[i] as PtyFd);
  // A slave's instance is its st_dev: its times need no resolving.
  for (let i = 0; i < raws.length; i++) {
    const raw = raws[i] as RawPtyFd;
    if (raw.role === "slave") mergeTimes(scan.ttyTimes, raw.dev, raw.index, raw);
  }
}

/** Every slave fd of one pty names the same devpts inode; several stats of it keep the latest times. */
export function mergeTimes(ttyTimes: ProcScan["ttyTimes"], devptsDev: string, index: number, times: TtyTimes): void {
  const key = ptyKey(devptsDev, index);
  const known = ttyTimes.get(key);
  if (!known) ttyTimes.set(key, { atimeMs: times.atimeMs, mtimeMs: times.mtimeMs });
  else if (known.atimeMs < times.atimeMs || known.mtimeMs < times.mtimeMs) {
    ttyTimes.set(key, { atimeMs: Math.max(times.atimeMs, known.atimeMs), mtimeMs: Math.max(times.mtimeMs, known.mtimeMs) });
  }
}

export function resolvePtyFd(ctx: ScanContext, pid: number, raw: RawPtyFd): PtyFd | null | typeof GONE {
  const fdCount = raw.count > 1 ? { fdCount: raw.count } : {};
  if (raw.role === "slave") return { pid, fd: raw.fd, role: "slave", devptsDev: raw.dev, index: raw.index, ...fdCount };
  const devptsDev = masterInstance(ctx, pid, raw.dev, raw.ino, raw.target);
  if (devptsDev === GONE) return GONE;
  if (devptsDev === null) {
    ctx.countParseError("master_instance");
    return null;
  }
  return { pid, fd: raw.fd, role: "master", devptsDev, index: raw.index, ...fdCount };
}

/**
 * Threads the native reader uses for a pass. readlinkat relative to a directory fd scales where
 * full-path readlinks contend; more threads than this 2-cpu class of machine has gain nothing.
 */
export const NATIVE_THREADS = 2;

/**
 * The links of /proc/PID/fd that may be ptys, read by JS (the native reader's FdLink, without the
 * stat and fdinfo it takes along: readPtyFd reads those). Throws ENOENT when the process is gone,
 * EACCES when its fd table is unreadable; an fd closed while being read is skipped.
 */
export function readFdLinksJs(procfs: ProcFs, pid: number): FdLink[] {
  const links: FdLink[] = [];
  for (const fd of procfs.fds(pid)) {
    let target: string;
    try {
      target = procfs.fdLink(pid, fd);
    } catch (err) {
      if (isVanished(err)) continue; // fd closed between readdir and readlink
      throw err;
    }
    if (mayBePty(target)) links.push({ fd, target });
  }
  return links;
}

/**
 * The pty fds of one process, one entry per pty end held with the number of fds naming it: a process
 * that dup's one pty slave to its nofile limit costs one entry, and time linear in its fds. Throws
 * ENOENT when the process is gone and EACCES when its fd table is unreadable.
 */
export function readPtyFds(ctx: ScanContext, pid: number): readonly RawPtyFd[] {
  const links = ctx.fdLinks(pid);
  if (links instanceof Error) throw links;
  const byFile = new Map<string, RawPtyFd>();
  for (const link of links) {
    const raw = readPtyFd(ctx, pid, link);
    if (!raw) continue;
    // Every master opened through one ptmx node shares its inode: a master is known by its index too.
    const file = `${raw.dev}/${raw.ino}/${raw.role}/${raw.index}`;
    const known = byFile.get(file);
    if (!known) byFile.set(file, raw);
    else {
      known.count += raw.count;
      known.fd = Math.min(known.fd, raw.fd); // the lowest, as the native reader (reading in fd order) keeps
    }
  }
  return [...byFile.values()];
}

/**
 * stat (only for links that look like a pty) confirms it and says which one; null when not a pty or
 * closed meanwhile. The stat and fdinfo the native reader took along are used, else read now.
 */
function readPtyFd(ctx: ScanContext, pid: number, link: FdLink): RawPtyFd | null {
  const { procfs } = ctx;
  let st: LinkStat;
  try {
    st = link.stat ?? procfs.fdStat(pid, link.fd);
  } catch (err) {
    if (isVanished(err)) return null;
    throw err;
  }
  if (!st.isCharacterDevice()) return null;
  const kind = classifyRdev(st.rdev);
  if (kind === null) return null;
  const base = {
    fd: Number(link.fd),
    count: link.count ?? 1,
    dev: formatDev(st.dev),
    ino: st.ino,
    target: link.target,
    atimeMs: st.atimeMs,
    mtimeMs: st.mtimeMs,
  };
  if (kind.role === "slave") return { ...base, role: "slave", index: kind.index };
  let index: number | null;
  try {
    index = link.fdinfo !== undefined ? parseFdinfoTtyIndex(link.fdinfo) : procfs.fdinfoTtyIndex(pid, link.fd);
  } catch (err) {
    if (isVanished(err)) return null;
    throw err;
  }
  if (index === null) {
    ctx.countParseError("fdinfo");
    return null;
  }
  return { ...base, role: "master", index };
}

/**
 * A master opened as /dev/pts/ptmx lives on its devpts instance. One opened as /dev/ptmx (a
 * devtmpfs node) belongs to the devpts mounted at "pts" beside it, as the kernel resolves it.
 * A master received from another mount namespace (runc hands the container's to the shim) is on
 * a filesystem the holder cannot see: devpts gives its ptmx inode number 2, which confirms it.
 */
function masterInstance(ctx: ScanContext, pid: number, dev: string, ino: number, target: string): string | null | typeof GONE {
  const table = ctx.mountTable(pid);
  if (table === null || table === GONE) return table;
  if (isDevptsDev(table, dev)) return dev;
  if (table.some((entry) => entry.dev === dev)) return devptsAt(table, `${dirname(target)}/pts`);
  return ino === DEVPTS_PTMX_INO ? dev : null;
}

/**
 * The rest of what a holder or init is known by (status, namespace, cmdline, cgroup). undefined
 * when malformed (counted), null when the process exited meanwhile. The command line is read to
 * CMDLINE_SHOWN_BYTES, and to CMDLINE_MAX_BYTES for the exec processes named in `options` and, within
 * WHOLE_ARGV_PER_PASS, for programs whose argv ptyreaper parses (runtime monitors, the docker CLI);
 * a cut one ends in "…" (and cmdlineTruncated is set).
 */
export function readProcInfo(ctx: ScanContext, pid: number, base: StatBase, options: ScanOptions = {}, details = true): ProcInfo | null | undefined {
  const { procfs } = ctx;
  try {
    const status = procfs.status(pid);
    if (status === null) {
      ctx.countParseError("status");
      return undefined;
    }
    let pidNs: string | null = null;
    try {
      pidNs = procfs.namespace(pid, "pid");
    } catch (err) {
      if (isVanished(err)) throw err;
    }
    let cmdline = details ? procfs.cmdline(pid, CMDLINE_SHOWN_BYTES) : { args: [], truncated: false };
    if (cmdline.truncated) {
      if (options.wholeArgvPids?.includes(pid)) cmdline = procfs.cmdline(pid);
      else if (argvIsParsed(base.comm, cmdline.args[0])) {
        if (ctx.wholeArgvReads < WHOLE_ARGV_PER_PASS) {
          ctx.wholeArgvReads++;
          cmdline = procfs.cmdline(pid);
        } else ctx.argvBudgetCuts++;
      }
    }
    const cgroup = procfs.cgroupText(pid);
    const args = cmdline.truncated ? [...cmdline.args.slice(0, -1), `${cmdline.args.at(-1) ?? ""}…`] : cmdline.args;
    return {
      pid,
      ppid: base.ppid,
      pgrp: base.pgrp,
      sid: base.sid,
      ttyNr: base.ttyNr,
      startTicks: base.startTicks,
      comm: base.comm,
      cmdline: args,
      ...(cmdline.truncated ? { cmdlineTruncated: true } : {}),
      ...(details ? {} : { cmdlineUnread: true }),
      uid: status.uid,
      pidNs,
      nsPids: status.nsPids,
      containerId: cgroupContainerId(cgroup),
      cgroup,
    };
  } catch (err) {
    if (isVanished(err)) return null;
    throw err;
  }
}

export interface IncrementalScannerOptions {
  /** A full pass at least this often, whatever else says (scan() only). Default DEFAULT_FULL_RESCAN_EVERY_MS. */
  fullRescanEveryMs?: number;
  /** Wall clock, for the rescan policy. */
  now: () => number;
  /** Monotonic clock (ms) for the pass budget; performance.now by default. */
  clock?: () => number;
  /** Only pids with pid % count === index: the worker pool splits /proc between its threads this way. */
  partition?: { index: number; count: number };
  /**
   * The BPF finder for full passes (bpfFinder): the kernel names the pty fds of every process in one
   * walk, and only those links are read. Each full pass reports the outcome (ProcScan.finder); a
   * finder the kernel refuses is not tried again. Absent: every link is read, and nothing reported.
   */
  finder?: BpfFinderChoice;
  /**
   * Whether to read each process's fd count (default true). A scanner used for one pass only has
   * no later pass to compare it with.
   */
  fdCounts?: boolean;
}

/** Processes read per native batch: small enough to stop near the budget, large enough to keep its threads busy. */
const BATCH_PIDS = 256;

/**
 * The scanner's pid → parent map, kept from pass to pass (each scan's `ppids` is this one map), and what changed in
 * it during the last pass: a steady pass touches only the parents of what it read, and only those cross to the
 * main thread (ScanDelta).
 */
class Parents {
  readonly map = new Map<number, number>();
  private readonly changed = new Set<number>();
  private readonly gone = new Set<number>();

  /** A pass begins: what it changes is logged afresh. */
  begin(): void {
    this.changed.clear();
    this.gone.clear();
  }

  set(pid: number, parent: number): void {
    if (this.map.get(pid) === parent) return;
    this.map.set(pid, parent);
    this.changed.add(pid);
    this.gone.delete(pid);
  }

  delete(pid: number): void {
    if (!this.map.delete(pid)) return;
    this.gone.add(pid);
    this.changed.delete(pid);
  }

  clear(): void {
    for (const pid of this.map.keys()) this.gone.add(pid);
    this.map.clear();
    this.changed.clear();
  }

  changes(): ParentChanges {
    const set: number[] = [];
    for (const pid of this.changed) set.push(pid, this.map.get(pid) ?? 0);
    return { set, gone: [...this.gone] };
  }
}

/** What the scanner remembers of a process between passes. */
interface Tracked {
  startTicks: number;
  ppid: number;
  /** st_size of /proc/PID/fd when its fds were last read; null when not known (the next look reads them again). */
  fdCount: number | null;
  raws: readonly RawPtyFd[];
  /** The raws' pty fds with each master's instance resolved (from its mount table), kept while the same files are held. */
  resolved: readonly PtyFd[] | null;
  /** Parse problems met reading the fds: counted again on every pass that reuses them, as a full pass would. */
  parseErrors: readonly string[];
  /** Read in full when the process holds a pty or is a container init. */
  info: ProcInfo | null;
  /** Numbers of the pass that last read its fds, and of the last that saw it. */
  readIn: number;
  seenIn: number;
}

/**
 * The one pass over /proc (scanProc is a full one of these). A full pass reads every process. Between
 * full passes, a steady ("incremental") pass costs what the ptys cost, not what the host costs: a listing of
 * only the pids given out since the last pass (PidListing; of every pid once a minute, which is how exits of
 * processes it does not read are learnt), then reads only of
 * - processes it has not seen (a pid not listed before): stat, fd links, and the rest if they hold a pty;
 * - pty holders and container inits: stat (a new start time makes it a new process), the fd count, and a
 *   stat of each pty file held (still the same file, and its fresh tty times); the links again only when
 *   the fd count moved;
 * - the parent of a holder whose pty has no known master, when the parent's fd count moved since it was
 *   last read: a runtime's shim or conmon, or sshd, takes the master of a new session's pty that way.
 * A process seen before that holds no pty is not read at all: its parent is carried as last read.
 *
 * What a steady pass does not see — an existing process that opens an existing /dev/pts/N, receives one
 * over a socket, or swaps one fd for a pty's without the count moving; a pid reused between two passes
 * by a holder — the next full pass does, and a pty allocated meanwhile sooner: pty.nr then disagrees with
 * the ptys found and the rescan policy makes that pass full. Before any signal the reaper reads the
 * session's holders afresh in any case (reaper.ts holders()).
 *
 * A pass given a budget stops reading when it is spent: the processes it did not reach keep what
 * the last pass learnt of them (new ones wait), the result says how many (`cut`), and the next pass
 * starts where this one stopped, so a host too big for one budget is still read in full over a few.
 */
export class IncrementalScanner {
  private readonly tracked = new Map<number, Tracked>();
  /** Tracked processes that hold a pty, and those whose fds gave parse problems (counted again each pass). */
  private readonly holders = new Set<number>();
  private readonly erring = new Set<number>();
  /** Processes whose reads were refused at their last look: read again every pass, as a new one would be. */
  private readonly denied = new Set<number>();
  private readonly parents = new Parents();
  private readonly listing: PidListing;
  /** New processes a cut steady pass did not reach: read by the next one. */
  private waiting: number[] = [];
  private passes = 0;
  private readonly policy: RescanPolicy;
  /** Where a cut pass stopped (the last pid it read), and in which mode: the next pass goes on from there. */
  private resume: { after: number; mode: ScanMode } | null = null;
  /** Each init's /dev/pts, read on a full pass or when first seen (resolveInitDevpts). */
  private readonly initDevpts = new Map<number, KeptInitDevpts>();
  /** The finder full passes use, or why not; null when none was given (nothing to report). */
  private finder: BpfFinderChoice | null;

  constructor(
    private readonly procfs: ProcFs,
    private readonly options: IncrementalScannerOptions,
  ) {
    this.policy = new RescanPolicy(options.fullRescanEveryMs ?? DEFAULT_FULL_RESCAN_EVERY_MS);
    this.listing = new PidListing(procfs, options.clock ?? (() => performance.now()));
    const finder = options.finder ?? null;
    // The finder is run by the native reader: without it, the JS reads see every link.
    this.finder = finder?.path && !procfs.native ? { path: null, reason: `no native reader (${procfs.reader.reason})` } : finder;
  }

  /** A pass chosen by the rescan policy (scanWithPolicy); `ptyAllocated` is the kernel's pty.nr, read just before. */
  scan(options: ScanOptions & { ptyAllocated: number }, budgetMs = Infinity): Promise<ModalScan> {
    return scanWithPolicy(this.policy, this.options.now(), options.ptyAllocated, (mode) => this.pass(options, mode, budgetMs));
  }

  /**
   * One pass in the given mode, with no decision of its own: a pool decides for all its partitions
   * together. `early`: a full read of the same root made before (see scanProc), full passes only.
   */
  pass(options: ScanOptions, mode: ScanMode, budgetMs = Infinity, early?: NativeBatch): ModalScan {
    const { procfs } = this;
    const clock = this.options.clock ?? (() => performance.now());
    let startedAt = clock();
    const ctx = new ScanContext(procfs);
    this.parents.begin();
    const scan: ModalScan = { ...emptyScan(procfs.bootTimeSec(), ctx.parseErrors), ppids: this.parents.map, mode };
    const passNo = ++this.passes;
    const inits = new Set(options.initPids ?? []);
    // Holders and inits, with their stat fields: the processes read in full below.
    const wanted = new Map<number, StatFields | null>();
    const listing = this.listing.next(mode === "full" || early !== undefined);
    if (listing.whole) {
      for (const pid of this.denied) this.untrack(pid); // listed again below if still there
      this.waiting = [];
    }
    const toRead = listing.whole ? null : this.steadyOnly(listing, inits);
    const listed = this.ordered(toRead ? [...toRead] : listing.pids, mode);
    const { readEarlier } = listed;
    let { pids } = listed;
    if (mode === "full" && !early && this.finder) {
      early = this.readWithFinder(pids);
      scan.finder = this.finder.path !== null ? "bpf" : this.finder.reason;
      // One native call read what the loop below takes: the budget bounds the JS work after it (the deadline bounds the call).
      startedAt = clock();
    }
    if (early && mode === "full") ctx.adopt(early);
    // Read in full earlier in this sweep (a full pass cut before): kept as read, not counted as unread.
    for (const pid of readEarlier) this.carry(ctx, scan, pid, passNo, wanted);
    if (mode === "incremental" && listing.whole) pids = this.steadyPids(ctx, scan, pids, inits, passNo);
    else if (toRead) for (const pid of this.erring) if (!toRead.has(pid)) this.countCarried(ctx, pid);

    let reached = 0;
    const wantCounts = this.options.fdCounts !== false;
    while (reached < pids.length && clock() - startedAt < budgetMs) {
      // The native reader batches stat and fd count across its threads, and on a full pass the links too.
      const batch = pids.slice(reached, reached + BATCH_PIDS);
      // A steady pass reads few processes: a second thread would cost more CPU than it saves in wall time.
      ctx.prefetch(batch, mode === "full" ? NATIVE_THREADS : 1, { links: mode === "full", fdCounts: wantCounts });
      if (mode === "incremental") this.prefetchSlaves(ctx, batch);
      for (let i = 0; i < batch.length; i++) {
        if (clock() - startedAt >= budgetMs) break;
        reached++;
        this.readOne(ctx, scan, batch[i] as number, mode, passNo, inits, wanted);
      }
    }
    if (reached < pids.length) {
      for (const pid of pids.slice(reached)) this.carry(ctx, scan, pid, passNo, wanted);
      scan.cut = { unread: pids.length - reached };
      // New ones not reached may not be in the next listing (one of new pids starts after them): they wait for it.
      this.waiting = pids.slice(reached).filter((pid) => !this.tracked.has(pid));
      const last = pids[reached - 1];
      if (last !== undefined) this.resume = { after: last, mode };
    } else this.resume = null;
    if (mode === "incremental" && !scan.cut) this.readMasterlessParents(ctx, scan, passNo, inits, wanted);
    // Read and not seen: exited meanwhile. With every pid listed, the rest not seen have exited too (or left this partition's view).
    for (let i = 0; i < pids.length; i++) {
      const pid = pids[i] as number;
      if (this.tracked.get(pid)?.seenIn !== passNo && !this.denied.has(pid)) this.untrack(pid);
    }
    if (listing.whole) {
      this.tracked.forEach((entry, pid) => entry.seenIn !== passNo && this.untrack(pid));
      // Parents are kept only for processes tracked or refused: nothing else outlives a whole listing.
      this.parents.map.forEach((_, pid) => !this.tracked.has(pid) && !this.denied.has(pid) && this.parents.delete(pid));
    }

    wanted.forEach((base, pid) => {
      const entry = this.tracked.get(pid);
      if (!entry) return;
      if (base === null) {
        if (entry.info) scan.processes.set(pid, entry.info); // carried: as the last pass read it
        return;
      }
      const exempt = inits.has(pid) || options.wholeArgvPids?.includes(pid) === true || argvIsParsed(base.comm, undefined);
      const details = ctx.keepsDetails(entry.raws, exempt);
      const info =
        entry.readIn === passNo || entry.info === null ? readProcInfo(ctx, pid, base, options, details) : this.refreshInfo(entry.info, base);
      entry.info = info ?? null;
      if (info) scan.processes.set(pid, info);
      else if (info === null) scan.vanished++;
    });
    if (mode === "full") this.initDevpts.clear(); // a full pass reads every init's mount table again
    resolveInitDevpts(ctx, scan, options, this.initDevpts);
    if (ctx.argvBudgetCuts > 0) scan.argvBudgetCuts = ctx.argvBudgetCuts;
    scan.pidListing = this.listing.reason ?? "new_pids";
    return scan;
  }

  /**
   * The processes a steady pass reads when it listed only the pids given out since the last listing: those (and
   * relisted ones not known), and the holders, inits and refused ones it knows. Every other known process is as
   * last read.
   */
  private steadyOnly(listing: Listing, inits: ReadonlySet<number>): Set<number> {
    const read = new Set(listing.pids);
    for (let i = 0; i < listing.relisted.length; i++) if (!this.tracked.has(listing.relisted[i] as number)) read.add(listing.relisted[i] as number);
    for (let i = 0; i < this.waiting.length; i++) read.add(this.waiting[i] as number);
    const add = (pid: number): void => void read.add(pid);
    this.holders.forEach(add);
    this.denied.forEach(add);
    inits.forEach(add);
    return read;
  }

  /** A known process not read this pass counts the parse problems its fds gave, as a full pass would count them. */
  private countCarried(ctx: ScanContext, pid: number): void {
    for (const kind of this.tracked.get(pid)?.parseErrors ?? []) ctx.countParseError(kind);
  }

  /** A process seen at its last read (fds and all). */
  private track(pid: number, entry: Tracked): void {
    this.tracked.set(pid, entry);
    if (entry.raws.length > 0) this.holders.add(pid);
    else this.holders.delete(pid);
    if (entry.parseErrors.length > 0) this.erring.add(pid);
    else this.erring.delete(pid);
  }

  /** What was learnt of a process's fds. */
  private forgetFds(pid: number): void {
    this.tracked.delete(pid);
    this.holders.delete(pid);
    this.erring.delete(pid);
  }

  /** A process gone: forgotten, parent and all. */
  private untrack(pid: number): void {
    this.forgetFds(pid);
    this.denied.delete(pid);
    this.parents.delete(pid);
  }

  /** What changed in the scans' parents (`ppids`) during the last pass. */
  parentChanges(): ParentChanges {
    return this.parents.changes();
  }

  /**
   * A steady pass's share of the listing: the processes to read (new ones, holders, inits). Every other
   * known process is seen without a read: its parent is carried as last read, and it holds no pty.
   */
  private steadyPids(ctx: ScanContext, scan: ModalScan, pids: readonly number[], inits: ReadonlySet<number>, passNo: number): number[] {
    const read: number[] = [];
    for (const pid of pids) {
      const entry = this.tracked.get(pid);
      if (entry === undefined || entry.raws.length > 0 || inits.has(pid)) read.push(pid);
      else {
        entry.seenIn = passNo;
        this.parents.set(pid, entry.ppid);
        for (const kind of entry.parseErrors) ctx.countParseError(kind); // as a full pass would count them
      }
    }
    return read;
  }

  /**
   * A pty whose slave is held but whose master no process read holds: a session started under a
   * process that was already running (a shim's or conmon's new exec, sshd's new login). Its slave
   * holders' parents are read again when their fd count moved since their last read.
   */
  private readMasterlessParents(ctx: ScanContext, scan: ModalScan, passNo: number, inits: Set<number>, wanted: Map<number, StatFields | null>): void {
    const mastered = new Set<string>();
    for (let i = 0; i < scan.ptyFds.length; i++) {
      const fd = scan.ptyFds[i] as PtyFd;
      if (fd.role === "master") mastered.add(ptyKey(fd.devptsDev, fd.index));
    }
    const parents = new Set<number>();
    for (let i = 0; i < scan.ptyFds.length; i++) {
      const fd = scan.ptyFds[i] as PtyFd;
      if (fd.role !== "slave" || mastered.has(ptyKey(fd.devptsDev, fd.index))) continue;
      const parent = scan.ppids.get(fd.pid);
      const entry = parent === undefined ? undefined : this.tracked.get(parent);
      if (parent !== undefined && entry !== undefined && entry.readIn !== passNo && entry.raws.length === 0) parents.add(parent);
    }
    for (const pid of parents) {
      const entry = this.tracked.get(pid);
      let count: number | null;
      try {
        count = ctx.fdCount(pid);
      } catch (err) {
        if (isVanished(err) || isDenied(err)) continue; // exited; or unreadable, as its last read said
        throw err;
      }
      if (entry === undefined || (count !== null && count === entry.fdCount)) continue;
      this.readOne(ctx, scan, pid, "incremental", passNo, inits, wanted, { fdCount: count });
    }
  }

  /** The slaves the known holders among `pids` held at their last read, stat'd in one call for confirm(). */
  private prefetchSlaves(ctx: ScanContext, pids: readonly number[]): void {
    const holders: number[] = [];
    const fds: number[] = [];
    for (let i = 0; i < pids.length; i++) {
      const pid = pids[i] as number;
      const raws = this.tracked.get(pid)?.raws;
      for (let k = 0; raws !== undefined && k < raws.length; k++) {
        if ((raws[k] as RawPtyFd).role !== "slave") continue;
        holders.push(pid);
        fds.push((raws[k] as RawPtyFd).fd);
      }
    }
    ctx.prefetchSlaveStats(holders, fds);
  }

  /**
   * Every given process's stat, fd count and pty links in one native call, the kernel naming the
   * pty fds (undefined without a usable finder). A finder the kernel refused is dropped with its
   * reason; that call read every link instead, so the pass is whole either way.
   */
  private readWithFinder(pids: readonly number[]): NativeBatch | undefined {
    const path = this.finder?.path;
    if (!path) return undefined;
    const read = this.procfs.batchOf(pids, NATIVE_THREADS, { links: true, fdCounts: this.options.fdCounts !== false, finder: path }) ?? undefined;
    if (read?.finder !== "bpf") this.finder = { path: null, reason: read?.finder ?? "no answer from the native reader" };
    return read;
  }

  /** Drops everything learnt: the next incremental pass reads every process. */
  forget(): void {
    this.tracked.clear();
    this.holders.clear();
    this.erring.clear();
    this.denied.clear();
    this.parents.clear();
    this.waiting = [];
    this.initDevpts.clear();
    this.policy.forget();
    this.resume = null;
  }

  /**
   * This partition's pids in the order to read them. A full sweep runs from the lowest pid to the
   * highest over as many passes as its budget needs: a full pass after a cut full one reads only the
   * pids above where it stopped (`readEarlier` are the rest), so the sweep ends and counts as a full
   * pass even on a host too big for one budget. An incremental pass after a cut one starts after
   * where it stopped and wraps round.
   */
  private ordered(all: readonly number[], mode: ScanMode): { pids: number[]; readEarlier: number[] } {
    const part = this.options.partition;
    // Ascending, as /proc lists them, so "after the last pid read" means the same on every pass.
    const pids = (part ? all.filter((pid) => pid % part.count === part.index) : [...all]).sort((a, b) => a - b);
    const resume = this.resume;
    if (resume === null || (mode === "full" && resume.mode !== "full")) return { pids, readEarlier: [] };
    let start = pids.findIndex((pid) => pid > resume.after);
    if (start < 0) start = pids.length;
    if (mode === "full") return { pids: pids.slice(start), readEarlier: pids.slice(0, start) };
    return { pids: [...pids.slice(start), ...pids.slice(0, start)], readEarlier: [] };
  }

  /**
   * `reread`: read its fd links whatever its count says, taking the count its caller read just before
   * (see readMasterlessParents).
   */
  private readOne(
    ctx: ScanContext,
    scan: ModalScan,
    pid: number,
    mode: ScanMode,
    passNo: number,
    inits: Set<number>,
    wanted: Map<number, StatFields | null>,
    reread: { fdCount: number | null } | null = null,
  ): void {
    try {
      const text = ctx.statText(pid);
      const stat = parseStat(text);
      if (stat === null) {
        ctx.countParseError("stat");
        return;
      }
      this.parents.set(pid, stat.ppid);
      // Counted before the fds are read, so an fd opened while they are read moves the next count.
      const fdCount = reread !== null ? reread.fdCount : this.options.fdCounts === false ? null : ctx.fdCount(pid);
      const prev = this.tracked.get(pid);
      let entry: Tracked | null = null;
      const same = prev !== undefined && prev.startTicks === stat.startTicks && fdCount !== null && prev.fdCount === fdCount;
      if (mode === "incremental" && same && reread === null) entry = this.confirm(ctx, pid, prev);
      if (entry === null) {
        const { value: raws, parseErrors } = ctx.recording(() => readPtyFds(ctx, pid));
        entry = {
          startTicks: stat.startTicks,
          ppid: stat.ppid,
          fdCount,
          raws,
          resolved: null,
          parseErrors,
          info: null,
          readIn: passNo,
          seenIn: passNo,
        };
      }
      if (!addTracked(ctx, scan, pid, entry)) {
        scan.vanished++; // exited since its fds were read; forgotten below
        return;
      }
      entry.seenIn = passNo;
      entry.ppid = stat.ppid;
      this.denied.delete(pid);
      if (entry !== prev) this.track(pid, entry);
      for (let i = 0; i < entry.parseErrors.length; i++) ctx.countParseError(entry.parseErrors[i] as string);
      if (entry.raws.length > 0 || inits.has(pid)) wanted.set(pid, stat);
    } catch (err) {
      if (isVanished(err)) {
        scan.vanished++;
        this.denied.delete(pid);
      } else if (isDenied(err)) {
        scan.unreadablePids.push(pid);
        this.forgetFds(pid); // its parent stays known, as read
        this.denied.add(pid);
      } else throw err;
    }
  }

  /** A process the pass had no budget left for: what the last pass learnt of it, unread (unknown ones wait for the next pass). */
  private carry(ctx: ScanContext, scan: ModalScan, pid: number, passNo: number, wanted: Map<number, StatFields | null>): void {
    const entry = this.tracked.get(pid);
    if (!entry) return;
    entry.seenIn = passNo;
    this.parents.set(pid, entry.ppid);
    if (!addTracked(ctx, scan, pid, entry)) return; // its mount namespace is gone: it exited
    for (const kind of entry.parseErrors) ctx.countParseError(kind);
    if (entry.info) wanted.set(pid, null);
  }

  /**
   * Stats every known slave file: still the same file → fresh times; otherwise null, and the process is read
   * again. Its fd count held still, so masters (whose times mean nothing) are taken as still held: a master
   * closed and another file opened in its place is the kind of change the next full pass sees.
   */
  private confirm(ctx: ScanContext, pid: number, prev: Tracked): Tracked | null {
    if (prev.raws.every((raw) => raw.role === "master")) return prev;
    // Copied from the first slave whose times moved: a holder whose ttys were idle stays the same object (ScanDelta).
    let raws: RawPtyFd[] | null = null;
    for (let i = 0; i < prev.raws.length; i++) {
      const raw = prev.raws[i] as RawPtyFd;
      if (raw.role === "master") {
        raws?.push(raw);
        continue;
      }
      let st;
      try {
        st = ctx.slaveStat(pid, raw.fd);
      } catch (err) {
        if (isVanished(err)) return null;
        throw err;
      }
      const same = slaveIndexOf(st.rdev) === raw.index && st.ino === raw.ino && formatDev(st.dev) === raw.dev;
      if (!same) return null;
      if (st.atimeMs === raw.atimeMs && st.mtimeMs === raw.mtimeMs) {
        raws?.push(raw);
        continue;
      }
      raws ??= prev.raws.slice(0, i);
      raws.push({ ...raw, atimeMs: st.atimeMs, mtimeMs: st.mtimeMs });
    }
    return raws === null ? prev : { ...prev, raws };
  }

  /**
   * A holder whose fds were not read again: what its stat says now (parent, session, controlling tty, comm). Its
   * cgroup is kept as last read: a runtime places an exec's process before it runs, and a process moved since
   * (rare) is placed again by the next full pass, while the reaper reads every target's cgroup before a signal.
   */
  private refreshInfo(info: ProcInfo, base: StatFields): ProcInfo {
    const same =
      info.ppid === base.ppid &&
      info.pgrp === base.pgrp &&
      info.sid === base.sid &&
      info.ttyNr === base.ttyNr &&
      info.startTicks === base.startTicks &&
      info.comm === base.comm;
    // Unchanged: the same object, so the next answer need not carry it (ScanDelta).
    if (same) return info;
    return { ...info, ppid: base.ppid, pgrp: base.pgrp, sid: base.sid, ttyNr: base.ttyNr, startTicks: base.startTicks, comm: base.comm };
  }
}
