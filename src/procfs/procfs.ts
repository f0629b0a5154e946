// Readers of the kernel files ptyreaper uses, one method per file, over an injected /proc root.
import { readFileSync, readdirSync, readlinkSync, statSync, statfsSync, type Stats } from "node:fs";
import { join } from "node:path";
import { PtyreaperError } from "../errors.js";
import type { PtyLimits } from "../domain/types.js";
import { WANT_FD_STAT, WANT_LINKS, WANT_SIGNATURE, WANT_STAT, loadNativeFdLinks, type FdLink, type NativeBatch, type NativeFdLinks } from "./native.js";
import {
  parseBootTime,
  parseCgroupContainerId,
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
    this.native = options.native !== undefined ? options.native : this.isProcfs ? loadNativeFdLinks().reader : null;
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
    const pids: number[] = [];
    for (const name of readdirSync(this.root)) {
      const first = name.charCodeAt(0);
      if (first >= 48 && first <= 57) pids.push(Number(name));
    }
    return pids;
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

  /** /proc/PID/schedstat (time on cpu, wait, times scheduled in), as text: it changes whenever the leader ran. */
  schedstat(pid: number): string {
    return readFileSync(`${this.root}/${pid}/schedstat`, UTF8);
  }

  /** /proc/PID/task: thread ids. */
  tasks(pid: number): string[] {
    return readdirSync(`${this.root}/${pid}/task`);
  }

  /** /proc/PID/task/TID/schedstat, as text. */
  taskSchedstat(pid: number, tid: string): string {
    return readFileSync(`${this.root}/${pid}/task/${tid}/schedstat`, UTF8);
  }

  /** /proc/PID/status; null when malformed. */
  status(pid: number): StatusFields | null {
    return parseStatus(readFileSync(`${this.root}/${pid}/status`, UTF8));
  }

  /** /proc/PID/cgroup, as text (runtimes/attribution.ts parses every runtime's form). */
  cgroupText(pid: number): string {
    return readFileSync(`${this.root}/${pid}/cgroup`, UTF8);
  }

  /** /proc/PID/cgroup → container id or null. */
  cgroupContainerId(pid: number): string | null {
    return parseCgroupContainerId(readFileSync(`${this.root}/${pid}/cgroup`, UTF8));
  }

  /** /proc/PID/cmdline, decoded as UTF-8 for display (bytes that are not UTF-8 show as U+FFFD). */
  cmdline(pid: number): string[] {
    return parseCmdline(readFileSync(`${this.root}/${pid}/cmdline`, UTF8));
  }

  /** /proc/PID/ns/pid (or another namespace) → inode, null when unreadable or malformed. */
  namespace(pid: number, kind: "pid" | "mnt"): string | null {
    return parseNsLink(readlinkSync(`${this.root}/${pid}/ns/${kind}`));
  }

  /** /proc/PID/environ as NUL-separated `KEY=value` strings. */
  environ(pid: number): string[] {
    return parseCmdline(readFileSync(`${this.root}/${pid}/environ`, "latin1"));
  }

  /** /proc/PID/fd: fd numbers. */
  fds(pid: number): string[] {
    return readdirSync(`${this.root}/${pid}/fd`);
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
   * Stat texts, and links (each with its stat and fdinfo) and signatures as asked, of many processes
   * in one native call by `threads` threads, an error per process instead of a throw; null when there
   * is no native reader.
   */
  batchOf(pids: readonly number[], threads: number, want: { links: boolean; signatures: boolean }): NativeBatch | null {
    if (!this.native) return null;
    return this.native.readBatch(this.root, pids, threads, WANT_STAT | (want.links ? WANT_LINKS | WANT_FD_STAT : 0) | (want.signatures ? WANT_SIGNATURE : 0));
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

  /** /proc/PID/fdinfo/FD → tty-index of a pty master. */
  fdinfoTtyIndex(pid: number, fd: string): number | null {
    return parseFdinfoTtyIndex(readFileSync(`${this.root}/${pid}/fdinfo/${fd}`, UTF8));
  }

  /** /proc/PID/mountinfo */
  mountinfo(pid: number): MountinfoEntry[] {
    return parseMountinfo(readFileSync(`${this.root}/${pid}/mountinfo`, UTF8));
  }
}
