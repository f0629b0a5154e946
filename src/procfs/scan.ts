// One pass over /proc: every pty fd of every process, and who holds it. No Docker knowledge here.
import { dirname } from "node:path";
import { isDenied, isVanished } from "../errors.js";
import { ptyKey, type ProcInfo, type ProcScan, type PtyFd, type TtyTimes } from "../domain/types.js";
import { classifyRdev, devptsAt, formatDev, isDevptsDev, mayBePty, type MountinfoEntry } from "./parse.js";
import type { ProcFs } from "./procfs.js";

const DEVPTS_PTMX_INO = 2;

export interface ScanOptions {
  /** Host pids of container init processes known from Docker: their /dev/pts instance is resolved. */
  initPids?: readonly number[];
}

/** Per-scan caches and counters. */
class ScanState {
  readonly scan: ProcScan;
  /** Mount tables by mount namespace inode: a container's processes share one. */
  private readonly mountTables = new Map<string, MountinfoEntry[] | null>();
  constructor(
    readonly procfs: ProcFs,
    bootTimeSec: number,
  ) {
    this.scan = {
      processes: new Map(),
      ppids: new Map(),
      ptyFds: [],
      ttyTimes: new Map(),
      initDevpts: new Map(),
      unreadablePids: [],
      vanished: 0,
      parseErrors: {},
      bootTimeSec,
    };
  }

  countParseError(kind: string): void {
    this.scan.parseErrors[kind] = (this.scan.parseErrors[kind] ?? 0) + 1;
  }

  /** The holder's mount table, cached by mount namespace; null when unreadable. */
  mountTable(pid: number): MountinfoEntry[] | null {
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
      if (!isVanished(err)) this.countParseError("mountinfo");
    }
    if (ns !== null) this.mountTables.set(ns, table);
    return table;
  }
}

/** Reads every process and its pty fds. Processes that vanish mid-scan are counted, never raised. */
export function scanProc(procfs: ProcFs, options: ScanOptions = {}): ProcScan {
  const state = new ScanState(procfs, procfs.bootTimeSec());
  const holders = new Set<number>();
  const stats = new Map<number, { ppid: number; pgrp: number; sid: number; ttyNr: number; startTicks: number; comm: string }>();

  for (const pid of procfs.pids()) {
    try {
      const stat = procfs.stat(pid);
      if (stat === null) {
        state.countParseError("stat");
        continue;
      }
      stats.set(pid, stat);
      if (scanFds(state, pid)) holders.add(pid);
    } catch (err) {
      if (isVanished(err)) state.scan.vanished++;
      else if (isDenied(err)) state.scan.unreadablePids.push(pid);
      else throw err;
    }
  }

  const wanted = new Set<number>([...holders, ...(options.initPids ?? [])]);
  for (const pid of wanted) {
    const base = stats.get(pid);
    if (!base) continue;
    const info = readProcInfo(state, pid, base);
    if (info) state.scan.processes.set(pid, info);
  }
  // Container inits: Docker's, and any holder that is pid 1 in its own namespace.
  for (const info of state.scan.processes.values()) {
    const isInit = info.nsPids.length > 1 && info.nsPids.at(-1) === 1;
    if (!isInit && !options.initPids?.includes(info.pid)) continue;
    const table = state.mountTable(info.pid);
    const dev = table ? devptsAt(table, "/dev/pts") : null;
    if (dev) state.scan.initDevpts.set(info.pid, dev);
  }
  // The parent of every process, for joining descendants of an exec to its pty.
  for (const [pid, base] of stats) state.scan.ppids.set(pid, base.ppid);
  return state.scan;
}

/** Records the pty fds of one process; true when it holds any. */
function scanFds(state: ScanState, pid: number): boolean {
  const { procfs, scan } = state;
  const fds = procfs.fds(pid);
  let found = false;
  for (const fd of fds) {
    let target: string;
    try {
      target = procfs.fdLink(pid, fd);
    } catch (err) {
      if (isVanished(err)) continue; // fd closed between readdir and readlink
      throw err;
    }
    if (!mayBePty(target)) continue;
    const ptyFd = readPtyFd(state, pid, fd, target);
    if (ptyFd) {
      scan.ptyFds.push(ptyFd);
      found = true;
    }
  }
  return found;
}

function readPtyFd(state: ScanState, pid: number, fd: string, target: string): PtyFd | null {
  const { procfs, scan } = state;
  let st;
  try {
    st = procfs.fdStat(pid, fd);
  } catch (err) {
    if (isVanished(err)) return null;
    throw err;
  }
  if (!st.isCharacterDevice()) return null;
  const kind = classifyRdev(st.rdev);
  if (kind === null) return null;
  const fdNumber = Number(fd);
  if (kind.role === "slave") {
    const devptsDev = formatDev(st.dev);
    const key = ptyKey(devptsDev, kind.index);
    const times: TtyTimes = { atimeMs: st.atimeMs, mtimeMs: st.mtimeMs };
    const known = scan.ttyTimes.get(key);
    if (!known || known.atimeMs < times.atimeMs || known.mtimeMs < times.mtimeMs) {
      scan.ttyTimes.set(key, {
        atimeMs: Math.max(times.atimeMs, known?.atimeMs ?? 0),
        mtimeMs: Math.max(times.mtimeMs, known?.mtimeMs ?? 0),
      });
    }
    return { pid, fd: fdNumber, role: "slave", devptsDev, index: kind.index };
  }
  let index: number | null;
  try {
    index = procfs.fdinfoTtyIndex(pid, fd);
  } catch (err) {
    if (isVanished(err)) return null;
    throw err;
  }
  if (index === null) {
    state.countParseError("fdinfo");
    return null;
  }
  const devptsDev = masterInstance(state, pid, formatDev(st.dev), st.ino, target);
  if (devptsDev === null) {
    state.countParseError("master_instance");
    return null;
  }
  return { pid, fd: fdNumber, role: "master", devptsDev, index };
}

/**
 * A master opened as /dev/pts/ptmx lives on its devpts instance. One opened as /dev/ptmx (a
 * devtmpfs node) belongs to the devpts mounted at "pts" beside it, as the kernel resolves it.
 * A master received from another mount namespace (runc hands the container's to the shim) is on
 * a filesystem the holder cannot see: devpts gives its ptmx inode number 2, which confirms it.
 */
function masterInstance(state: ScanState, pid: number, dev: string, ino: number, target: string): string | null {
  const table = state.mountTable(pid);
  if (table === null) return null;
  if (isDevptsDev(table, dev)) return dev;
  if (table.some((entry) => entry.dev === dev)) return devptsAt(table, `${dirname(target)}/pts`);
  return ino === DEVPTS_PTMX_INO ? dev : null;
}

function readProcInfo(state: ScanState, pid: number, base: Pick<ProcInfo, "ppid" | "pgrp" | "sid" | "ttyNr" | "startTicks" | "comm">): ProcInfo | null {
  const { procfs } = state;
  try {
    const status = procfs.status(pid);
    if (status === null) {
      state.countParseError("status");
      return null;
    }
    let pidNs: string | null = null;
    try {
      pidNs = procfs.namespace(pid, "pid");
    } catch (err) {
      if (isVanished(err)) throw err;
    }
    return {
      pid,
      ...base,
      cmdline: procfs.cmdline(pid),
      uid: status.uid,
      pidNs,
      nsPids: status.nsPids,
      containerId: procfs.cgroupContainerId(pid),
    };
  } catch (err) {
    if (isVanished(err)) {
      state.scan.vanished++;
      return null;
    }
    throw err;
  }
}
