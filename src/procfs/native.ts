// The optional native reader (native/ptyscan.c): loading it, and turning its struct-of-arrays answer into one record per process.
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { createRequire } from "node:module";
import { constants } from "node:os";
import { missingFileReason, NATIVE_OUTPUTS, shippedPath } from "../shipped.js";
import { PTY_LINK_NEEDLES } from "./parse.js";

/** What one call of the addon answers: struct-of-arrays, one row per pid or per matching link. */
interface AddonAnswer {
  status: Int32Array;
  pidIndex: Int32Array;
  fd: Int32Array;
  target: string[];
  stat?: (string | null)[];
  fdCount?: Int32Array;
  fdStat?: Float64Array;
  fdinfo?: (string | null)[];
  linkCount?: Int32Array;
  /** With a finder asked for: "bpf" when it named the fds read, else why it could not run. */
  finder?: string;
}

/** The addon's functions, as they are exported. */
interface PtyScanAddon {
  scanFdLinks(procRoot: string, pids: Int32Array, needles: readonly string[], threads: number, want?: boolean | number, finder?: string): AddonAnswer;
  /** The same read with the JS thread left free meanwhile; absent from builds older than it. */
  scanFdLinksAsync?(
    procRoot: string,
    pids: Int32Array,
    needles: readonly string[],
    threads: number,
    want?: boolean | number,
    finder?: string,
  ): Promise<AddonAnswer>;
  /** A stat of the file each (pid, fd) names: FD_STAT_FIELDS numbers per pair (NaN, errno where unread); absent from builds older than it. */
  statFds?(procRoot: string, pids: Int32Array, fds: Int32Array): Float64Array;
  /** The numeric entries of a /proc, ascending (only from..to when given); absent from builds older than it. */
  listPids?(procRoot: string, from?: number, to?: number): Int32Array;
  exitNow?(code: number): never;
}

/** What one native call reads per process (the addon's WANT_* bits). */
export const WANT_STAT = 1;
export const WANT_LINKS = 2;
/** st_size of /proc/PID/fd: the process's fd count (Linux 6.2 and later). */
export const WANT_FD_COUNT = 4;
/** With links: a stat of each link's file, and the fdinfo of ptmx masters (their tty-index). */
export const WANT_FD_STAT = 8;
/** Numbers per link in the addon's fdStat: dev, ino, rdev, mode, atime s and ns, mtime s and ns. */
const FD_STAT_FIELDS = 8;
const S_IFMT = 0o170000;
const S_IFCHR = 0o020000;

/** What readPtyFd needs of an fd's stat, as the native reader took it. */
export interface LinkStat {
  dev: number;
  ino: number;
  rdev: number;
  atimeMs: number;
  mtimeMs: number;
  isCharacterDevice(): boolean;
}

/**
 * One batch read: links only when asked (WANT_LINKS), and whatever stat texts and fd counts could be
 * read. This is the one place the addon's arrays become per-process records; the JS reads
 * (ScanContext in scan.ts) make the same ones for a process the batch did not cover.
 */
export interface NativeBatch {
  links: Map<number, FdLinksOrError> | null;
  stats: Map<number, string>;
  fdCounts: Map<number, number>;
  /** When a finder was asked for: "bpf" when the kernel named the pty fds read, else why every link was read. */
  finder?: string;
}

/**
 * One link that passed mayBePty: the fd's number as its /proc name, and the link text; with a
 * batch that asked for them, the stat of its file and (ptmx masters) its fdinfo text, each
 * absent when it could not be read (the caller reads it again and meets the error).
 */
export interface FdLink {
  fd: string;
  target: string;
  /** fds of the process naming the same file (dup'd), folded into this one; 1 when absent. */
  count?: number;
  stat?: LinkStat;
  fdinfo?: string;
}

/**
 * A stat row of the addon's answer as Node's Stats gives the same fields (times: sec * 1e3 + nsec / 1e6, as Node
 * computes them). A class, so isCharacterDevice is one method and not a closure per row: a steady pass makes one
 * per pty slave held.
 */
class NativeLinkStat implements LinkStat {
  constructor(
    readonly dev: number,
    readonly ino: number,
    readonly rdev: number,
    readonly atimeMs: number,
    readonly mtimeMs: number,
    private readonly mode: number,
  ) {}

  isCharacterDevice(): boolean {
    return (this.mode & S_IFMT) === S_IFCHR;
  }
}

function linkStat(rows: Float64Array, k: number): LinkStat | undefined {
  const at = k * FD_STAT_FIELDS;
  const dev = rows[at] ?? NaN;
  if (Number.isNaN(dev)) return undefined;
  return new NativeLinkStat(
    dev,
    rows[at + 1] ?? 0,
    rows[at + 2] ?? 0,
    (rows[at + 4] ?? 0) * 1e3 + (rows[at + 5] ?? 0) / 1e6,
    (rows[at + 6] ?? 0) * 1e3 + (rows[at + 7] ?? 0) / 1e6,
    rows[at + 3] ?? 0,
  );
}

/** A process's links that may be ptys, or the errno-coded error that stopped the read (ENOENT: gone, EACCES: denied). */
export type FdLinksOrError = readonly FdLink[] | NodeJS.ErrnoException;

/** Where `npm install` (node-gyp) leaves the addon, at the root of the package this runs from. */
export function defaultAddonPath(): string {
  return shippedPath(NATIVE_OUTPUTS.ptyscan);
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, value]) => [value, name]));

function errnoError(errno: number, path: string, what = "read fd links of"): NodeJS.ErrnoException {
  const code = ERRNO_NAMES.get(errno) ?? `E${errno}`;
  const err: NodeJS.ErrnoException = new Error(`${code}: cannot ${what} ${path}`);
  err.code = code;
  err.errno = -errno;
  err.path = path;
  return err;
}

/**
 * Reads fd links relative to each /proc/PID/fd directory (openat + getdents64 + readlinkat): about
 * twice as fast as readlink of full paths, and it scales across the threads it is given. Only
 * links that pass mayBePty come back; its needles are passed in, so parse.ts keeps the one definition.
 */
export class NativeFdLinks {
  constructor(private readonly addon: PtyScanAddon) {}

  /** _exit(2) through the addon, when this build of it has it; false when it has not. */
  exitNow(code: number): boolean {
    if (typeof this.addon.exitNow !== "function") return false;
    this.addon.exitNow(code);
    return true;
  }

  /**
   * The pids listed in `procRoot`, ascending, with one getdents64 loop; with `range`, only those from..to, the
   * listing starting at `from` (see PidListing). null when this build of the addon has no listPids.
   */
  listPids(procRoot: string, range?: { from: number; to: number }): number[] | null {
    if (typeof this.addon.listPids !== "function") return null;
    return Array.from(range ? this.addon.listPids(procRoot, range.from, range.to) : this.addon.listPids(procRoot));
  }

  /**
   * A stat of the file each (pid, fd) names, in one call: an errno-coded error (ENOENT: gone) where one could not
   * be read. null when this build of the addon has no statFds.
   */
  statFds(procRoot: string, pids: Int32Array, fds: Int32Array): (LinkStat | NodeJS.ErrnoException)[] | null {
    if (typeof this.addon.statFds !== "function") return null;
    const rows = this.addon.statFds(procRoot, pids, fds);
    const stats: (LinkStat | NodeJS.ErrnoException)[] = [];
    for (let k = 0; k < pids.length; k++) {
      stats.push(linkStat(rows, k) ?? errnoError(rows[k * FD_STAT_FIELDS + 1] ?? 0, `${procRoot}/${pids[k]}/fd/${fds[k]}`, "stat"));
    }
    return stats;
  }

  /** Every given process's pty-looking links, read by `threads` threads inside the addon. */
  read(procRoot: string, pids: readonly number[], threads = 1): Map<number, FdLinksOrError> {
    return this.readBatch(procRoot, pids, threads, WANT_LINKS | WANT_FD_STAT).links ?? new Map<number, FdLinksOrError>();
  }

  /**
   * Any of stat texts, fd counts and pty-looking links (`want`: WANT_* bits) of every given
   * process, read by `threads` threads inside the addon, each process's in that order. A stat or
   * count that could not be read is absent: the caller reads it again to learn why. `finder`: the
   * BPF finder's object: with WANT_LINKS, only the fds the kernel names as pty ends are read.
   */
  readBatch(procRoot: string, pids: readonly number[], threads: number, want: number, finder?: string): NativeBatch {
    const request = Int32Array.from(pids);
    return batchFrom(procRoot, request, want, this.addon.scanFdLinks(procRoot, request, PTY_LINK_NEEDLES, threads, want, finder));
  }

  /**
   * readBatch with the JS thread free while the addon's threads read: the one-shot CLI starts it
   * first and loads its config meanwhile. null when this build of the addon has no async call.
   */
  readBatchAsync(procRoot: string, pids: readonly number[], threads: number, want: number, finder?: string): Promise<NativeBatch> | null {
    if (typeof this.addon.scanFdLinksAsync !== "function") return null;
    const request = Int32Array.from(pids);
    return this.addon
      .scanFdLinksAsync(procRoot, request, PTY_LINK_NEEDLES, threads, want, finder)
      .then((answer) => batchFrom(procRoot, request, want, answer));
  }

  /** One process's pty-looking links (dup'd fds folded, see FdLink.count); throws its errno-coded error like fs calls do. */
  readOne(procRoot: string, pid: number): readonly FdLink[] {
    const links = this.read(procRoot, [pid]).get(pid);
    if (links === undefined) return [];
    if (links instanceof Error) throw links;
    return links;
  }
}

/** The addon's arrays as one record per process (see NativeBatch). */
function batchFrom(procRoot: string, request: Int32Array, want: number, answer: AddonAnswer): NativeBatch {
  const stats = new Map<number, string>();
  const fdCounts = new Map<number, number>();
  for (let i = 0; i < request.length; i++) {
    const pid = request[i] ?? 0;
    const text = answer.stat?.[i];
    if (typeof text === "string") stats.set(pid, text);
    const count = answer.fdCount?.[i] ?? -1;
    if (count >= 0) fdCounts.set(pid, count);
  }
  const finder = answer.finder === undefined ? {} : { finder: answer.finder };
  if ((want & WANT_LINKS) === 0) return { links: null, stats, fdCounts, ...finder };
  const result = new Map<number, FdLinksOrError>();
  for (let i = 0; i < request.length; i++) {
    const pid = request[i] ?? 0;
    const errno = answer.status[i] ?? 0;
    result.set(pid, errno === 0 ? [] : errnoError(errno, `${procRoot}/${pid}/fd`));
  }
  for (let k = 0; k < answer.target.length; k++) {
    const pid = request[answer.pidIndex[k] ?? 0] ?? 0;
    const links = result.get(pid);
    if (!Array.isArray(links)) continue;
    const link: FdLink = { fd: String(answer.fd[k]), target: answer.target[k] ?? "" };
    const stat = answer.fdStat ? linkStat(answer.fdStat, k) : undefined;
    if (stat) link.stat = stat;
    const fdinfo = answer.fdinfo?.[k];
    if (typeof fdinfo === "string") link.fdinfo = fdinfo;
    const count = answer.linkCount?.[k] ?? 1;
    if (count > 1) link.count = count;
    (links as FdLink[]).push(link);
  }
  return { links: result, stats, fdCounts, ...finder };
}

/** PROC_PID_INIT_INO: the inode number of the initial pid namespace, fixed by the kernel. */
const INIT_PID_NS_INO = 0xeffffffc;
const CAP_SYS_ADMIN = 21n;
const CAP_PERFMON = 38n;
const CAP_BPF = 39n;

/**
 * Whether an effective capability set (CapEff of /proc/PID/status, hex) may load and run the
 * finder's tracing iterator: CAP_BPF with CAP_PERFMON (Linux ≥ 5.8), or CAP_SYS_ADMIN, which
 * covers both. Root under the shipped unit has neither (its bounding set keeps three others).
 */
export function capsAllowBpf(capEffHex: string): boolean {
  let caps: bigint;
  try {
    caps = BigInt(`0x${capEffHex.trim()}`);
  } catch {
    return false; // unreadable: as if not granted
  }
  const has = (cap: bigint): boolean => ((caps >> cap) & 1n) === 1n;
  return has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON));
}

/** This process's effective capabilities, as CapEff's hex digits; "" when unreadable. */
function ownCapEff(): string {
  try {
    return /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? "";
  } catch {
    return "";
  }
}

/** The finder's object to use, or why every fd link is read instead. */
export type BpfFinderChoice = { path: string; reason: null } | { path: null; reason: string };

/**
 * The BPF finder's object (native/ptyfds.bpf.c, built beside the addon when clang is there), when it
 * may be used on this root; otherwise why not, and every link is read. Loading it needs CAP_BPF and
 * CAP_PERFMON (or CAP_SYS_ADMIN). The kernel's iterator numbers processes in the reader's pid
 * namespace, so both the reader and the root's processes must be in the initial one: a procfs that
 * shows the reader as `self` is of the reader's own namespace (none is above the initial one).
 * PTYREAPER_BPF_FINDER=0 switches it off.
 */
export function bpfFinder(procRoot: string, options: { addonPath?: string; env?: NodeJS.ProcessEnv; capEff?: string } = {}): BpfFinderChoice {
  if ((options.env ?? process.env).PTYREAPER_BPF_FINDER === "0") return { path: null, reason: "PTYREAPER_BPF_FINDER=0" };
  if (!capsAllowBpf(options.capEff ?? ownCapEff())) return { path: null, reason: "no CAP_BPF and CAP_PERFMON (see systemd/bpf-finder.conf)" };
  const path =
    options.addonPath === undefined ? shippedPath(NATIVE_OUTPUTS.bpfFinder) : join(dirname(options.addonPath), basename(NATIVE_OUTPUTS.bpfFinder));
  if (!existsSync(path)) return { path: null, reason: missingFileReason(path) };
  try {
    if (statSync("/proc/self/ns/pid").ino !== INIT_PID_NS_INO) return { path: null, reason: "not in the host's pid namespace" };
    if (statSync(`${procRoot}/self/ns/pid`).ino !== INIT_PID_NS_INO) return { path: null, reason: `${procRoot} is not the host's procfs` };
  } catch (err) {
    return { path: null, reason: `pid namespace unreadable: ${(err as Error).message}` };
  }
  return { path, reason: null };
}

/** bpfFinder's object path alone, or null: for `ptyreaper sessions`. */
export function bpfFinderFor(procRoot: string, options: { addonPath?: string; env?: NodeJS.ProcessEnv } = {}): string | null {
  return bpfFinder(procRoot, options).path;
}

/** Which reader a ProcFs uses and why, for the startup log line and ptyreaper_scan_info. */
export interface ScanReaderInfo {
  reader: "native" | "js";
  reason: string;
}

/** Why the native reader is not in use, when it is not: for a log line and for the tests. */
export type NativeLoad = { reader: NativeFdLinks; reason: null } | { reader: null; reason: string };

/**
 * Loads the addon, or says why not: switched off (PTYREAPER_NATIVE_SCAN=0), not built (npm install
 * could not compile it), or failing to load. Callers then use the JS scan, which gives the same result.
 * The switch is read from the environment here, not passed in, because every scan thread builds its own
 * readers and inherits the environment.
 */
export function loadNativeFdLinks(options: { addonPath?: string; env?: NodeJS.ProcessEnv } = {}): NativeLoad {
  const env = options.env ?? process.env;
  if (env.PTYREAPER_NATIVE_SCAN === "0") return { reader: null, reason: "PTYREAPER_NATIVE_SCAN=0" };
  const path = options.addonPath ?? defaultAddonPath();
  if (!existsSync(path)) return { reader: null, reason: missingFileReason(path) };
  try {
    const addon = createRequire(import.meta.url)(path) as Partial<PtyScanAddon>;
    if (typeof addon.scanFdLinks !== "function") return { reader: null, reason: `${path} has no scanFdLinks` };
    return { reader: new NativeFdLinks(addon as PtyScanAddon), reason: null };
  } catch (err) {
    return { reader: null, reason: `${path}: ${(err as Error).message}` };
  }
}

/**
 * Ends the process at once, without joining worker threads: for a scan thread blocked in a /proc read
 * (which Node would wait for on any exit). Through the addon's _exit when it loads, else SIGKILL to itself.
 */
export function exitWithoutJoining(code: number): void {
  const { reader } = loadNativeFdLinks({ env: {} });
  if (reader?.exitNow(code)) return;
  process.kill(process.pid, "SIGKILL");
}
