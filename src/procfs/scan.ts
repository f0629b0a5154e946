// One pass over /proc: every pty fd of every process, and who holds it. No Docker knowledge here.
import { dirname } from "node:path";
import { isDenied, isVanished } from "../errors.js";
import { ptyKey, type ProcInfo, type ProcScan, type PtyFd, type PtyRole } from "../domain/types.js";
import { classifyRdev, devptsAt, formatDev, isDevptsDev, mayBePty, parseFdinfoTtyIndex, parseStat, type MountinfoEntry, type StatFields } from "./parse.js";
import type { FdLink, FdLinksOrError, FdSignature, LinkStat } from "./native.js";
import type { ProcFs } from "./procfs.js";

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
}

/** A pty fd as read, before a master is mapped to its devpts instance (which needs the holder's mounts). */
export interface RawPtyFd {
  fd: number;
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
  /** Links read natively for many processes at once (scanProc), each taken once by readPtyFds. */
  private prefetched: Map<number, FdLinksOrError> | null = null;
  private prefetchedStats: Map<number, string> | null = null;
  private prefetchedSignatures: Map<number, FdSignature> | null = null;

  constructor(readonly procfs: ProcFs) {}

  /** Reads the stat, and the links and signatures as asked, of all these processes now (no-op without the native reader). */
  prefetch(pids: readonly number[], threads: number, want: { links: boolean; signatures: boolean }): void {
    const read = this.procfs.batchOf(pids, threads, want);
    this.prefetched = read?.links ?? null;
    this.prefetchedStats = read?.stats ?? null;
    this.prefetchedSignatures = read?.signatures ?? null;
  }

  /** The prefetched fd count and signature of a process, taken once; undefined when not prefetched (read it now). */
  takeSignature(pid: number): FdSignature | undefined {
    const signature = this.prefetchedSignatures?.get(pid);
    if (signature !== undefined) this.prefetchedSignatures?.delete(pid);
    return signature;
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

  /** The native reader's links of one process (prefetched or read now); null when the JS reads are to be used. */
  nativeFdLinks(pid: number): FdLinksOrError | null {
    const prefetched = this.prefetched?.get(pid);
    if (prefetched !== undefined) {
      this.prefetched?.delete(pid);
      return prefetched;
    }
    if (!this.procfs.native) return null;
    try {
      return this.procfs.fdLinksMayBePty(pid);
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

/** Reads every process and its pty fds. Processes that vanish mid-scan are counted, never raised. */
export function scanProc(procfs: ProcFs, options: ScanOptions = {}): ProcScan {
  const ctx = new ScanContext(procfs);
  const scan = emptyScan(procfs.bootTimeSec(), ctx.parseErrors);
  const holders: number[] = [];
  const stats = new Map<number, StatFields>();
  const pids = procfs.pids();
  ctx.prefetch(pids, NATIVE_THREADS, { links: true, signatures: false });

  for (const pid of pids) {
    try {
      const stat = ctx.stat(pid);
      if (stat === null) {
        ctx.countParseError("stat");
        continue;
      }
      stats.set(pid, stat);
      const raws = readPtyFds(ctx, pid);
      if (raws.length === 0) continue;
      if (addPtyFds(ctx, scan, pid, raws) === GONE) {
        scan.vanished++;
        continue;
      }
      holders.push(pid);
    } catch (err) {
      if (isVanished(err)) scan.vanished++;
      else if (isDenied(err)) scan.unreadablePids.push(pid);
      else throw err;
    }
  }

  const wanted = new Set<number>([...holders, ...(options.initPids ?? [])]);
  for (const pid of wanted) {
    const base = stats.get(pid);
    if (!base) continue;
    const info = readProcInfo(ctx, pid, base);
    if (info) scan.processes.set(pid, info);
    else if (info === null) scan.vanished++;
  }
  resolveInitDevpts(ctx, scan, options);
  // The parent of every process, for joining descendants of an exec to its pty.
  for (const [pid, base] of stats) scan.ppids.set(pid, base.ppid);
  return scan;
}

/** Container inits: Docker's, and any process read in full that is pid 1 in its own namespace. */
export function resolveInitDevpts(ctx: ScanContext, scan: ProcScan, options: ScanOptions): void {
  for (const info of scan.processes.values()) {
    const isInit = info.nsPids.length > 1 && info.nsPids.at(-1) === 1;
    if (!isInit && !options.initPids?.includes(info.pid)) continue;
    const table = ctx.mountTable(info.pid);
    const dev = table && table !== GONE ? devptsAt(table, "/dev/pts") : null;
    if (dev) scan.initDevpts.set(info.pid, dev);
  }
}

/**
 * Adds one process's pty fds to the scan: holders, and slaves' times. A master whose instance is
 * unknown is left out (counted). GONE, with nothing added, when the process exited since its fds
 * were read: it then counts as vanished, like one that exited before.
 */
export function addPtyFds(ctx: ScanContext, scan: ProcScan, pid: number, raws: readonly RawPtyFd[]): typeof GONE | undefined {
  const resolved: [RawPtyFd, PtyFd][] = [];
  for (const raw of raws) {
    const ptyFd = resolvePtyFd(ctx, pid, raw);
    if (ptyFd === GONE) return GONE;
    if (ptyFd !== null) resolved.push([raw, ptyFd]);
  }
  for (const [raw, ptyFd] of resolved) {
    scan.ptyFds.push(ptyFd);
    if (raw.role === "slave") mergeTimes(scan, ptyFd.devptsDev, raw.index, raw.atimeMs, raw.mtimeMs);
  }
  return undefined;
}

/** Every slave fd of one pty names the same devpts inode; several stats of it keep the latest times. */
export function mergeTimes(scan: ProcScan, devptsDev: string, index: number, atimeMs: number, mtimeMs: number): void {
  const key = ptyKey(devptsDev, index);
  const known = scan.ttyTimes.get(key);
  if (!known) scan.ttyTimes.set(key, { atimeMs, mtimeMs });
  else if (known.atimeMs < atimeMs || known.mtimeMs < mtimeMs) {
    scan.ttyTimes.set(key, { atimeMs: Math.max(atimeMs, known.atimeMs), mtimeMs: Math.max(mtimeMs, known.mtimeMs) });
  }
}

export function resolvePtyFd(ctx: ScanContext, pid: number, raw: RawPtyFd): PtyFd | null | typeof GONE {
  if (raw.role === "slave") return { pid, fd: raw.fd, role: "slave", devptsDev: raw.dev, index: raw.index };
  const devptsDev = masterInstance(ctx, pid, raw.dev, raw.ino, raw.target);
  if (devptsDev === GONE) return GONE;
  if (devptsDev === null) {
    ctx.countParseError("master_instance");
    return null;
  }
  return { pid, fd: raw.fd, role: "master", devptsDev, index: raw.index };
}

const NO_FDS: readonly RawPtyFd[] = Object.freeze([]);
/**
 * Threads the native reader uses for a full pass. readlinkat relative to a directory fd scales
 * where full-path readlinks contend; more threads than this 2-cpu class of machine has gain nothing.
 */
export const NATIVE_THREADS = 2;
/** fd numbers as strings, made once: the probe below asks for the same few thousand names every pass. */
const FD_NAMES: readonly string[] = Array.from({ length: 1024 }, (_, fd) => String(fd));
/** Misses a probe tolerates before listing the directory: each costs a thrown ENOENT, dearer than a listing. */
const PROBE_MISSES = 2;

/**
 * The pty fds of one process. Throws ENOENT when the process is gone and EACCES when its fd table
 * is unreadable; an fd closed while being read is skipped. `knownCount`: fdCount(pid), when just read.
 *
 * Why probe: listing /proc/PID/fd costs the kernel about as much as reading every link, and fd
 * tables are dense (the kernel hands out the lowest free number). On Linux ≥ 6.2 the directory's
 * st_size is the number of open fds, so reading links 0, 1, 2… until that many answered skips the
 * listing. A sparse table (too many misses), an older kernel (size 0) or a count that moved while
 * probing (the process opened or closed fds meanwhile) falls back to the listing.
 */
export function readPtyFds(ctx: ScanContext, pid: number, knownCount?: number | null): readonly RawPtyFd[] {
  const links = ctx.nativeFdLinks(pid);
  if (links !== null) {
    if (links instanceof Error) throw links;
    let found = NO_FDS;
    for (const link of links) {
      const raw = readPtyFd(ctx, pid, link.fd, link.target, link);
      if (raw) found = found === NO_FDS ? [raw] : [...found, raw];
    }
    return found;
  }
  const { procfs } = ctx;
  const count = knownCount === undefined ? procfs.fdCount(pid) : knownCount;
  if (!count) return readListedFds(ctx, pid, 0, NO_FDS);
  let found = NO_FDS;
  let seen = 0;
  let misses = 0;
  let fd = 0;
  while (seen < count) {
    if (misses >= PROBE_MISSES) return readListedFds(ctx, pid, fd, found);
    const name = FD_NAMES[fd] ?? String(fd);
    fd++;
    const target = procfs.fdLinkIfOpen(pid, name);
    if (target === null) {
      misses++;
      continue;
    }
    seen++;
    if (!mayBePty(target)) continue;
    const raw = readPtyFd(ctx, pid, name, target);
    if (raw) found = found === NO_FDS ? [raw] : [...found, raw];
  }
  if (procfs.fdCount(pid) !== count) return readListedFds(ctx, pid, 0, NO_FDS);
  return found;
}

/** The listing way: readdir, then the links of fds numbered `from` and above, after those `found` below it. */
function readListedFds(ctx: ScanContext, pid: number, from: number, found: readonly RawPtyFd[]): readonly RawPtyFd[] {
  const { procfs } = ctx;
  let result = found;
  for (const name of procfs.fds(pid)) {
    if (from > 0 && Number(name) < from) continue;
    let target: string;
    try {
      target = procfs.fdLink(pid, name);
    } catch (err) {
      if (isVanished(err)) continue; // fd closed between readdir and readlink
      throw err;
    }
    if (!mayBePty(target)) continue;
    const raw = readPtyFd(ctx, pid, name, target);
    if (raw) result = result === NO_FDS ? [raw] : [...result, raw];
  }
  return result;
}

/**
 * stat (only for links that look like a pty) confirms it and says which one; null when not a pty or
 * closed meanwhile. `read`: what the native reader already read of this fd (its stat and fdinfo).
 */
function readPtyFd(ctx: ScanContext, pid: number, fd: string, target: string, read?: Pick<FdLink, "stat" | "fdinfo">): RawPtyFd | null {
  const { procfs } = ctx;
  let st: LinkStat;
  try {
    st = read?.stat ?? procfs.fdStat(pid, fd);
  } catch (err) {
    if (isVanished(err)) return null;
    throw err;
  }
  if (!st.isCharacterDevice()) return null;
  const kind = classifyRdev(st.rdev);
  if (kind === null) return null;
  const base = { fd: Number(fd), dev: formatDev(st.dev), ino: st.ino, target, atimeMs: st.atimeMs, mtimeMs: st.mtimeMs };
  if (kind.role === "slave") return { ...base, role: "slave", index: kind.index };
  let index: number | null;
  try {
    index = read?.fdinfo !== undefined ? parseFdinfoTtyIndex(read.fdinfo) : procfs.fdinfoTtyIndex(pid, fd);
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
 * when malformed (counted), null when the process exited meanwhile.
 */
export function readProcInfo(ctx: ScanContext, pid: number, base: StatBase): ProcInfo | null | undefined {
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
    return {
      pid,
      ppid: base.ppid,
      pgrp: base.pgrp,
      sid: base.sid,
      ttyNr: base.ttyNr,
      startTicks: base.startTicks,
      comm: base.comm,
      cmdline: procfs.cmdline(pid),
      uid: status.uid,
      pidNs,
      nsPids: status.nsPids,
      containerId: procfs.cgroupContainerId(pid),
    };
  } catch (err) {
    if (isVanished(err)) return null;
    throw err;
  }
}
