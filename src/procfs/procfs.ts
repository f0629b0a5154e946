// Readers of the kernel files ptyreaper uses, one method per file, over an injected /proc root.
import {
  closeSync,
  opendirSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  readlinkSync,
  statSync,
  statfsSync,
  type BigIntStats,
  type Stats,
} from "node:fs";
import { join } from "node:path";
import { PtyreaperError } from "../errors.js";
import { cgroupContainerId } from "../domain/attribution.js";
import type { PtyLimits } from "../domain/types.js";
import {
  WANT_FD_STAT,
  WANT_LINKS,
  WANT_FD_COUNT,
  WANT_STAT,
  loadNativeFdLinks,
  type FdLink,
  type LinkStat,
  type NativeBatch,
  type NativeFdLinks,
  type ScanReaderInfo,
} from "./native.js";
import {
  parsePidMarks,
  type PidMarks,
  parseBootTime,
  parseCmdline,
  parseFdinfoTtyIndex,
  parseMountinfo,
  parseNsLink,
  parseStat,
  parseStatus,
  parseSysctlInt,
  type MountinfoEntry,
  type StatFields,
  type StatusFields,
} from "./parse.js";

const PROC_SUPER_MAGIC = 0x9fa0;

/**
 * What is read at most of a command line: it is shown, not parsed, and any process can make its
 * own megabytes long (argv is bounded only by its stack rlimit, which a container may raise).
 */
export const CMDLINE_MAX_BYTES = 4096;
/**
 * What is kept of the command line of a pty holder nobody parses: enough to show it. Any process may
 * hold a pty and any argv may be 2 MB, so thousands of holders must not each cost CMDLINE_MAX_BYTES.
 */
export const CMDLINE_SHOWN_BYTES = 256;
/**
 * What is read at most of an environment, searched only for PTYREAPER_EXEMPT=1: wider than a
 * command line because the exec's own variables (`docker exec -e`) follow the image's.
 */
export const ENVIRON_MAX_BYTES = 32 * 1024;

/** The first `maxBytes` of a file, and whether there was more. */
function readHead(path: string, maxBytes: number): { bytes: Buffer; truncated: boolean } {
  const buffer = Buffer.allocUnsafe(maxBytes + 1);
  const file = openSync(path, "r");
  try {
    let length = 0;
    for (;;) {
      const got = readSync(file, buffer, length, buffer.length - length, null);
      if (got === 0) break;
      length += got;
      if (length > maxBytes) return { bytes: buffer.subarray(0, maxBytes), truncated: true };
    }
    return { bytes: buffer.subarray(0, length), truncated: false };
  } finally {
    closeSync(file);
  }
}
/** One options object for every hot read: a string encoding makes Node copy its defaults on each call. */
const UTF8 = { encoding: "utf8" } as const;

/**
 * Synchronous on purpose: the scanner issues hundreds of thousands of tiny reads, and the sync
 * calls are several times cheaper than promises; the daemon runs the scan in a worker thread.
 * Errors (ENOENT when a process vanished, EACCES when not root) reach the caller unchanged.
 */
export class ProcFs {
  /** Whether `root` is a real procfs, whose fd directories report their size (see fdCount). */
  private readonly isProcfs: boolean;

  /** The native fd-link reader, on a real procfs when it is built and not switched off; null: the JS reads below. */
  readonly native: NativeFdLinks | null;
  /** Which reader is in use and why (the addon's load failure, a fixture tree, the caller's choice). */
  readonly reader: ScanReaderInfo;

  /** `native`: the reader to use (null for none); by default the built addon on a real procfs. */
  constructor(
    readonly root: string,
    options: { native?: NativeFdLinks | null } = {},
  ) {
    let type = 0;
    try {
      type = statfsSync(root).type;
    } catch {
      type = 0; // missing root: every read below will say so with its own path
    }
    this.isProcfs = type === PROC_SUPER_MAGIC;
    if (options.native !== undefined) {
      this.native = options.native;
      this.reader = options.native ? { reader: "native", reason: "given" } : { reader: "js", reason: "native reader not given" };
    } else if (!this.isProcfs) {
      this.native = null;
      this.reader = { reader: "js", reason: `${root} is not a procfs` };
    } else {
      const load = loadNativeFdLinks();
      this.native = load.reader;
      this.reader = load.reader ? { reader: "native", reason: "addon loaded" } : { reader: "js", reason: load.reason };
    }
  }

  /** /proc/sys/kernel/pty/{nr,max,reserve} */
  ptyLimits(): PtyLimits {
    const read = (name: string): number => {
      const path = join(this.root, "sys/kernel/pty", name);
      let text: string;
      try {
        text = readFileSync(path, "utf8");
      } catch (err) {
        throw new PtyreaperError("PTYR_PROC_READ", `cannot read ${path}: ${(err as Error).message}`, { cause: err });
      }
      const value = parseSysctlInt(text);
      if (value === null) throw new PtyreaperError("PTYR_PROC_READ", `${path}: expected a number, got ${JSON.stringify(text.trim())}`);
      return value;
    };
    return { allocated: read("nr"), max: read("max"), reserve: read("reserve") };
  }

  /** Numeric entries of /proc */
  pids(): number[] {
    // One getdents64 loop natively (ascending); Node's readdir makes a string of every entry on the way.
    const listed = this.native?.listPids(this.root);
    if (listed) return listed;
    const pids: number[] = [];
    for (const name of readdirSync(this.root)) {
      const first = name.charCodeAt(0);
      if (first >= 48 && first <= 57) pids.push(Number(name));
    }
    return pids;
  }

  /**
   * The pids from..to (inclusive), ascending, the kernel walking only those (PidListing checks that it does); null
   * without the native reader, which alone can start a listing at a pid.
   */
  pidsBetween(from: number, to: number): number[] | null {
    return this.native?.listPids(this.root, { from, to }) ?? null;
  }

  /** Whether this procfs is of this process's own pid namespace: its `self` names this process (PidListing). */
  isOwnPidNamespace(): boolean {
    try {
      return readlinkSync(join(this.root, "self")) === String(process.pid);
    } catch {
      return false; // a fixture tree, or another namespace's procfs where this process has no pid
    }
  }

  /** /proc/stat, /proc/loadavg, /proc/sys/kernel/pid_max: how far the pid allocator has gone; null when unreadable. */
  pidMarks(): PidMarks | null {
    const text = (name: string): string => readFileSync(join(this.root, name), "latin1");
    try {
      // forks first: a fork counted here took its pid before, so the last pid read after covers it.
      const stat = text("stat");
      return parsePidMarks(stat, text("loadavg"), text("sys/kernel/pid_max"));
    } catch {
      return null;
    }
  }

  /** /proc/stat (btime) */
  bootTimeSec(): number {
    const path = join(this.root, "stat");
    const value = parseBootTime(readFileSync(path, "utf8"));
    if (value === null) throw new PtyreaperError("PTYR_PROC_READ", `${path}: no btime line`);
    return value;
  }

  /** /proc/PID/stat; null when malformed. */
  stat(pid: number): StatFields | null {
    return parseStat(this.statText(pid));
  }

  /** /proc/PID/stat as text, for callers that parse more than one field from a single read. */
  statText(pid: number): string {
    return readFileSync(`${this.root}/${pid}/stat`, UTF8);
  }

  /** /proc/PID/status; null when malformed. */
  status(pid: number): StatusFields | null {
    return parseStatus(readFileSync(`${this.root}/${pid}/status`, UTF8));
  }

  /** /proc/PID/cgroup, as text (domain/attribution.ts parses every runtime's form). */
  cgroupText(pid: number): string {
    return readFileSync(`${this.root}/${pid}/cgroup`, UTF8);
  }

  /** /proc/PID/cgroup → container id or null (domain/attribution.ts: the one cgroup parser). */
  cgroupContainerId(pid: number): string | null {
    return cgroupContainerId(readFileSync(`${this.root}/${pid}/cgroup`, UTF8));
  }

  /**
   * /proc/PID/cmdline, its first `maxBytes` (CMDLINE_MAX_BYTES), decoded as UTF-8 for display (bytes that are
   * not UTF-8 show as U+FFFD); `truncated` when there was more.
   */
  cmdline(pid: number, maxBytes: number = CMDLINE_MAX_BYTES): { args: string[]; truncated: boolean } {
    const { bytes, truncated } = readHead(`${this.root}/${pid}/cmdline`, maxBytes);
    return { args: parseCmdline(bytes.toString("utf8")), truncated };
  }

  /** /proc/PID/ns/pid (or another namespace) → inode, null when unreadable or malformed. */
  namespace(pid: number, kind: "pid" | "mnt"): string | null {
    return parseNsLink(readlinkSync(`${this.root}/${pid}/ns/${kind}`));
  }

  /**
   * /proc/PID/environ as NUL-separated `KEY=value` strings, from its first ENVIRON_MAX_BYTES only
   * (a variable cut there is left out, not shown in part).
   */
  environ(pid: number): string[] {
    const { bytes, truncated } = readHead(`${this.root}/${pid}/environ`, ENVIRON_MAX_BYTES);
    const entries = parseCmdline(bytes.toString("latin1"));
    if (truncated && bytes.at(-1) !== 0) entries.pop();
    return entries;
  }

  /** /proc/PID/fd: fd numbers. */
  fds(pid: number): string[] {
    return readdirSync(`${this.root}/${pid}/fd`);
  }

  /**
   * /proc/PID/fd: at most `max` fd numbers, in directory order. The listing stops there, so a process
   * holding 500,000 fds costs no more than one holding `max`.
   */
  fdsUpTo(pid: number, max: number): string[] {
    const dir = opendirSync(`${this.root}/${pid}/fd`);
    try {
      const names: string[] = [];
      for (let entry = dir.readSync(); entry !== null && names.length < max; entry = dir.readSync()) names.push(entry.name);
      return names;
    } finally {
      dir.closeSync();
    }
  }

  /**
   * st_size of /proc/PID/fd: the number of open fds on Linux ≥ 6.2, 0 on older kernels. null when
   * the root is not a procfs (a fixture tree), where a directory's size means nothing.
   */
  fdCount(pid: number): number | null {
    if (!this.isProcfs) return null;
    return statSync(`${this.root}/${pid}/fd`).size;
  }

  /**
   * The links in /proc/PID/fd that pass mayBePty, read natively (readlinkat from the directory);
   * null when there is no native reader. Throws ENOENT when the process is gone, EACCES when denied.
   */
  fdLinksMayBePty(pid: number): readonly FdLink[] | null {
    return this.native ? this.native.readOne(this.root, pid) : null;
  }

  /**
   * Stat texts, and links (each with its stat and fdinfo) and fd counts as asked, of many processes
   * in one native call by `threads` threads, an error per process instead of a throw; null when there
   * is no native reader. `finder` (bpfFinder's object): links only of the fds the kernel names.
   */
  batchOf(pids: readonly number[], threads: number, want: { links: boolean; fdCounts: boolean; finder?: string }): NativeBatch | null {
    if (!this.native) return null;
    const bits = WANT_STAT | (want.links ? WANT_LINKS | WANT_FD_STAT : 0) | (want.fdCounts ? WANT_FD_COUNT : 0);
    return this.native.readBatch(this.root, pids, threads, bits, want.finder);
  }

  /**
   * Stat texts and links (each with its stat and fdinfo) of every process in /proc now, read by
   * the native reader's threads while the JS thread goes on; null when there is no native reader
   * or it cannot read asynchronously. What a full pass needs of each process (scanProc's `early`).
   * `finder`: the BPF finder's object (bpfFinderFor): the kernel names the pty fds, and only those are read.
   */
  batchOfAllAsync(threads: number, finder?: string): Promise<NativeBatch> | null {
    return this.native?.readBatchAsync(this.root, this.pids(), threads, WANT_STAT | WANT_LINKS | WANT_FD_STAT, finder) ?? null;
  }

  /** readlink /proc/PID/fd/FD, or null when no such fd is open (ENOENT). */
  fdLinkIfOpen(pid: number, fd: string): string | null {
    try {
      return readlinkSync(`${this.root}/${pid}/fd/${fd}`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
  }

  /** readlink /proc/PID/fd/FD */
  fdLink(pid: number, fd: string): string {
    return readlinkSync(`${this.root}/${pid}/fd/${fd}`);
  }

  /** stat (following the link) of /proc/PID/fd/FD: the opened file's device and times. */
  fdStat(pid: number, fd: string): Stats {
    return statSync(`${this.root}/${pid}/fd/${fd}`);
  }

  /**
   * The stat of the file each (pid, fd) names, in one native call (an errno-coded error where unread); null without
   * the native reader (fdStat each).
   */
  statFds(pids: Int32Array, fds: Int32Array): (LinkStat | NodeJS.ErrnoException)[] | null {
    return this.native?.statFds(this.root, pids, fds) ?? null;
  }

  /** The same with nanosecond times (a pty slave's ctime marks its allocation: reaper/identity.ts). */
  fdStatBig(pid: number, fd: string): BigIntStats {
    return statSync(`${this.root}/${pid}/fd/${fd}`, { bigint: true });
  }

  /** /proc/PID/fdinfo/FD → tty-index of a pty master. */
  fdinfoTtyIndex(pid: number, fd: string): number | null {
    return parseFdinfoTtyIndex(readFileSync(`${this.root}/${pid}/fdinfo/${fd}`, UTF8));
  }

  /** /proc/PID/mountinfo */
  mountinfo(pid: number): MountinfoEntry[] {
    return parseMountinfo(readFileSync(`${this.root}/${pid}/mountinfo`, UTF8));
  }
}
