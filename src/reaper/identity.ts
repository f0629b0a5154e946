// Who the reaper may signal: the process-identity port it reads, and the never-signal rules as a pure function.
import type { BigIntStats } from "node:fs";
import { classifyRdev, formatDev, type StatFields } from "../procfs/parse.js";
import { cgroupMembers } from "../procfs/cgroupfs.js";
import { readFdLinksBounded, type FdReadBudget, type FdReadCut } from "../procfs/fd-budget.js";
import type { ProcFs } from "../procfs/procfs.js";

/** The few /proc facts the reaper reads about a process; errors (ENOENT when gone) reach the caller. */
export interface ProcessTable {
  /** Numeric entries of /proc. */
  pids(): number[];
  /** /proc/PID/stat; null when malformed. */
  stat(pid: number): StatFields | null;
  /** NSpid of /proc/PID/status, outermost first; null when malformed. */
  nsPids(pid: number): number[] | null;
  /** /proc/PID/cgroup as text: compared whole, so any cgroup driver or parent works. */
  cgroup(pid: number): string;
  /** The pids of the cgroup a cgroup() text names (cgroup v2 cgroup.procs); null when that cannot be read from here. */
  cgroupMembers(cgroup: string): number[] | null;
  /**
   * The ctime (ns) of the slave of pty (devptsDev, index) that PID has open now, read through its fd (so it is
   * the allocation that process holds); null when it holds none; a cut when that could not be told within the
   * budget (the process holds more fds than its cap, or the step's time is spent): never signal it on a guess.
   * See PtyAllocation for why ctime.
   */
  slaveCtimeNs(pid: number, devptsDev: string, index: number, budget: FdReadBudget): bigint | null | FdReadCut;
  /**
   * The last input (atime) and output (mtime) on that same slave, read now through PID's fd: the idle clock as
   * it is at reap time, not as the last scan saw it (a pass cut by its budget carries older times).
   */
  slaveActivity(pid: number, devptsDev: string, index: number, budget: FdReadBudget): SlaveActivity | null | FdReadCut;
}

/** A slave's times in ms since the epoch, from its inode. */
export interface SlaveActivity {
  atimeMs: number;
  mtimeMs: number;
}

/**
 * The most fds of one process the reaper reads to find the slave it holds. A session's shell and its
 * children hold the pty on their standard streams, which are looked at first whatever the count; this caps
 * the rest (about 8 ms of reads): a container process holding 500,000 fds costs one stat.
 */
export const HOLDER_MAX_FDS = 1_024;
/** The time one reap step (or one look at a session's holders) may spend reading fd tables. */
export const STEP_READ_BUDGET_MS = 100;

/** A shell's standard streams: where a session's processes hold its pty, read before (and besides) any cap. */
const STANDARD_STREAMS = ["0", "1", "2"];

/** Only pts links and the console (a bind of a pts) can be a slave: a cheap filter before a stat. */
function mayBeSlave(link: string): boolean {
  return link.includes("pts") || link.includes("console");
}

/** The reaper's ProcessTable, read through the same ProcFs (and so the same /proc root) as the scan. */
export function processTableOf(procfs: ProcFs): ProcessTable {
  return {
    pids: () => procfs.pids(),
    stat: (pid) => procfs.stat(pid),
    nsPids: (pid) => procfs.status(pid)?.nsPids ?? null,
    cgroup: (pid) => procfs.cgroupText(pid),
    cgroupMembers: (cgroup) => cgroupMembers(cgroup),
    slaveCtimeNs(pid, devptsDev, index, budget) {
      const st = slaveStat(procfs, pid, devptsDev, index, budget);
      return st === null || typeof st === "string" ? st : st.ctimeNs;
    },
    slaveActivity(pid, devptsDev, index, budget) {
      const st = slaveStat(procfs, pid, devptsDev, index, budget);
      return st === null || typeof st === "string" ? st : { atimeMs: Number(st.atimeNs) / 1e6, mtimeMs: Number(st.mtimeNs) / 1e6 };
    },
  };
}

/**
 * The inode of the slave of pty (devptsDev, index) that PID has open now, found through its fds: its standard
 * streams first whatever the count, then the rest within the budget (a cut when they could not all be read).
 */
function slaveStat(procfs: ProcFs, pid: number, devptsDev: string, index: number, budget: FdReadBudget): BigIntStats | null | FdReadCut {
  const slaveAt = (fd: string): BigIntStats | null => {
    let st: BigIntStats;
    try {
      st = procfs.fdStatBig(pid, fd);
    } catch {
      return null; // closed meanwhile
    }
    const kind = st.isCharacterDevice() ? classifyRdev(Number(st.rdev)) : null;
    return kind?.role === "slave" && kind.index === index && formatDev(Number(st.dev)) === devptsDev ? st : null;
  };
  for (const fd of STANDARD_STREAMS) {
    const link = procfs.fdLinkIfOpen(pid, fd);
    const st = link !== null && mayBeSlave(link) ? slaveAt(fd) : null;
    if (st !== null) return st;
  }
  const links = readFdLinksBounded(procfs, pid, budget, mayBeSlave);
  if (typeof links === "string") return links;
  for (const { fd } of links) {
    const st = STANDARD_STREAMS.includes(fd) ? null : slaveAt(fd);
    if (st !== null) return st;
  }
  return null;
}

/**
 * One allocation of a pty index: devpts hands a freed index out again at once (the lowest free one), so
 * (instance, index) alone cannot tell the exec's pty from the next one. devpts sets the slave inode's ctime
 * when it allocates the pty, and the inode number is the same for every allocation (index + 3). Checked on
 * this host's kernel (6.18): reads, writes and the 8-second atime/mtime updates leave ctime alone; chmod and
 * chown move it (so a changed ctime may also be a chmod: stopping then is the safe side); statx has no birth
 * time on devpts. ctime is the coarse clock, so allocations within one tick share it (20 back to back did):
 * a session is therefore only pinned when its allocation is over a second old, and any later allocation of
 * the index has a later ctime. An index cannot be handed out again while any fd of it is open.
 */
export interface PtyAllocation {
  devptsDev: string;
  index: number;
  ctimeNs: bigint;
}

/** A stale session as it was when judged: its processes (pid → start time) and its pty's allocation. */
export interface SessionPin {
  processes: Map<number, number>;
  allocation: PtyAllocation;
}

/** An allocation pinned this long after its ctime is told apart from every later one (the coarse clock's ticks are far shorter). */
export const MIN_ALLOCATION_AGE_MS = 1_000;

/** Why a process was not signalled; a bounded set, the label of ptyreaper_reap_refusals_total. */
export type RefusalReason =
  | "host_init"
  | "namespace_init"
  | "container_main"
  | "container_process"
  | "runtime"
  | "ptyreaper"
  | "outside_cgroup"
  | "not_in_session"
  | "pid_reused"
  | "not_pinned"
  | "allocation_changed"
  | "unreadable"
  | FdReadCut;

export const REFUSAL_REASONS: readonly RefusalReason[] = [
  "host_init",
  "namespace_init",
  "container_main",
  "container_process",
  "runtime",
  "ptyreaper",
  "outside_cgroup",
  "not_in_session",
  "pid_reused",
  "not_pinned",
  "allocation_changed",
  "unreadable",
  "fd_cap",
  "read_budget",
];

/** Container runtimes by comm (15 characters at most): never a session's process, whatever else holds. */
const RUNTIME_COMMS = new Set(["runc", "crun", "dockerd", "containerd", "docker-proxy", "conmon"]);

export function isRuntimeComm(comm: string): boolean {
  return RUNTIME_COMMS.has(comm) || comm.startsWith("containerd-shim") || comm.startsWith("runc:");
}

/** A process as the rules see it: pid and start time. */
export interface ProcessRef {
  pid: number;
  startTicks: number;
}

/** What is known about one candidate target, read while it is pinned (through its pidfd). */
export interface TargetFacts extends ProcessRef {
  comm: string;
  /** NSpid, outermost first. */
  nsPids: number[];
  cgroup: string;
  /** Parent, grandparent, ... up to the host's init (exclusive), as the kernel reports them now. */
  ancestors: ProcessRef[];
}

/** What protects everything around one session, re-read before every signal. */
export interface SessionGuard {
  /** The exec's process (ExecInspect.Pid) and its start time when the scan saw it. */
  exec: ProcessRef;
  /** The container's main process (State.Pid). */
  containerMain: ProcessRef;
  /** State.Pid's ancestors up to the host's init: docker-init, the shim, containerd, ... */
  containerMainAncestors: ReadonlySet<number>;
  /** /proc/PID/cgroup of State.Pid: a target must be in exactly this cgroup. */
  containerCgroup: string;
  /** ptyreaper and its ancestors. */
  self: ReadonlySet<number>;
  /**
   * The session's processes when it was judged stale (pid → start time); from then on only they and their
   * descendants may be signalled. null while the session is being pinned.
   */
  pinned?: ReadonlyMap<number, number> | null;
}

/**
 * The never-signal set, checked for each target at each signal; null when the target may be signalled.
 * When pinning, a target must be the exec's process, a descendant of it, or an orphan of it (a child of
 * the container's main process started after the exec); anything else holding the pty is not the session's.
 * Once pinned, only the pinned processes and their descendants: a child the container's main process
 * started later is not the exec's orphan (it may hold the same index, allocated again).
 */
export function refusalFor(target: TargetFacts, guard: SessionGuard): RefusalReason | null {
  if (target.pid === 1) return "host_init";
  if (guard.self.has(target.pid)) return "ptyreaper";
  if (target.nsPids.at(-1) === 1) return "namespace_init";
  if (target.pid === guard.containerMain.pid || guard.containerMainAncestors.has(target.pid)) return "container_main";
  if (isRuntimeComm(target.comm)) return "runtime";
  if (target.cgroup !== guard.containerCgroup) return "outside_cgroup";
  if (target.pid === guard.exec.pid) return target.startTicks === guard.exec.startTicks ? null : "pid_reused";
  const pinned = guard.pinned ?? null;
  // A pinned pid with another start time is a new process: judged by its ancestry like any other.
  if (pinned?.get(target.pid) === target.startTicks) return null;
  // Walk up: the first of the exec, a pinned process or the container's main process met decides.
  let child: ProcessRef = target;
  for (const ancestor of target.ancestors) {
    if (ancestor.pid === guard.exec.pid) return ancestor.startTicks === guard.exec.startTicks ? null : "not_in_session";
    if (pinned?.get(ancestor.pid) === ancestor.startTicks) return null;
    if (ancestor.pid === guard.containerMain.pid) {
      // Started before the exec: the container's own (the loop under docker-init or a wrapper). After: an orphan of the session.
      if (child.startTicks < guard.exec.startTicks) return "container_process";
      return pinned === null ? null : "not_pinned";
    }
    child = ancestor;
  }
  return "not_in_session";
}
