// The domain model shared by the scanner, the correlation, the policy and every output.
import type { RuntimeName } from "./attribution.js";
import type { KubernetesRef } from "./runtime.js";

/**
 * `attached`: the session's client was identified and still holds its connection to the engine.
 * `gone`: the identified client exited or dropped its connection, at `sinceMs` at the latest (the
 * first cycle that saw it gone). `unknown`: no evidence either way (a remote client, two candidates
 * that cannot be told apart, a runtime without a per-exec signal): only the idle policy applies.
 */
export type ClientState =
  { state: "attached"; detail: string } | { state: "gone"; sinceMs: number; detail: string } | { state: "unknown"; detail: string };

/** `/proc/sys/kernel/pty/{nr,max,reserve}`. */
export interface PtyLimits {
  allocated: number;
  max: number;
  reserve: number;
}

/**
 * Ptys containers can hold: max - reserve - 1. devpts_new_index() refuses a new pty outside the
 * initial mount namespace when the count *after* its increment reaches max - reserve, so the last
 * pty that fits is number max - reserve - 1 (3071 by default; the host's own limit is max - 1).
 */
export function containerCapacity(limits: PtyLimits): number {
  return Math.max(0, limits.max - limits.reserve - 1);
}

/** What the scan learned about one process (a "holder" when it has pty fds). */
export interface ProcInfo {
  pid: number;
  ppid: number;
  pgrp: number;
  sid: number;
  /** Controlling tty as the kernel encodes it in stat field 7; ambiguous across devpts instances. */
  ttyNr: number;
  /** Clock ticks after boot (stat field 22): with the pid, identifies the process across PID reuse. */
  startTicks: number;
  comm: string;
  /** Arguments as `ps` shows them to any user (from /proc/PID/cmdline); the last ends in "…" when cut. */
  cmdline: string[];
  /** Set when the command line was longer than the scan reads (a few KB). */
  cmdlineTruncated?: boolean;
  /** Set when the command line was not read: one of more than HOLDER_DETAILS_PER_PTY ordinary holders of its pty (cmdline is empty). */
  cmdlineUnread?: boolean;
  uid: number;
  /** Inode of /proc/PID/ns/pid, e.g. "4026531836"; null when unreadable. */
  pidNs: string | null;
  /** NSpid: the pid in each nested PID namespace, outermost first. */
  nsPids: number[];
  /** Container id from /proc/PID/cgroup, or null for a host process. */
  containerId: string | null;
  /** The /proc/PID/cgroup text it came from, for runtime attribution (read with it; absent where not read). */
  cgroup?: string;
}

export type PtyRole = "master" | "slave";

/** One open fd on a pty: key `${devptsDev}:${index}`. */
export interface PtyFd {
  pid: number;
  fd: number;
  role: PtyRole;
  /** The devpts instance, "major:minor" of its superblock (st_dev of the slave). */
  devptsDev: string;
  index: number;
  /** fds of this process on this pty end beyond `fd` (dup'd): one entry for all; 1 when absent. */
  fdCount?: number;
}

export interface TtyTimes {
  /** Last input (read on the slave), ms since epoch. */
  atimeMs: number;
  /** Last output (write on the slave), ms since epoch. */
  mtimeMs: number;
}

/** Raw result of one pass over /proc: no runtime knowledge yet. */
export interface ProcScan {
  /** Pty holders and container inits, read in full. */
  processes: Map<number, ProcInfo>;
  /**
   * Parent of every process seen, for ancestry, as last read. A steady pass lists only new pids, so a process that
   * exited may stay here until the next whole listing (a minute at most; PidListing): a live process's parent is
   * alive, so a walk up from a live process reaches such an entry only through a parent that died meanwhile.
   */
  ppids: Map<number, number>;
  ptyFds: PtyFd[];
  /** Times of each slave, by pty key. */
  ttyTimes: Map<string, TtyTimes>;
  /** devpts instance seen by /dev/pts of container init processes: pid -> devptsDev. */
  initDevpts: Map<number, string>;
  /** Processes whose fd table could not be read (EACCES: not root). */
  unreadablePids: number[];
  /** Processes that exited while being read. */
  vanished: number;
  /** Malformed /proc content skipped, by file kind. */
  parseErrors: Record<string, number>;
  /** System boot time, seconds since epoch (from /proc/stat btime). */
  bootTimeSec: number;
  /** Set when the pass ran out of its time budget: `unread` processes kept what the last pass learnt (new ones wait). */
  cut?: { unread: number };
  /** Holders whose whole command line the pass did not read: WHOLE_ARGV_PER_PASS was spent (their head is kept). */
  argvBudgetCuts?: number;
  /** Full passes of a scanner given the BPF finder: "bpf" when the kernel named the pty fds read, else why every link was read. */
  finder?: string;
  /** "new_pids" when steady passes list only the pids given out since the last pass, else why they list every pid (PidListing). */
  pidListing?: string;
}

/** Keys made so far, by instance then index (see ptyKey), and how many; emptied at PTY_KEYS_KEPT. */
const ptyKeys = new Map<string, Map<number, string>>();
let ptyKeysMade = 0;
const PTY_KEYS_KEPT = 16_384;

/**
 * "devptsDev:index", the same string for the same pty every time it is asked: every pass and every cycle keys
 * maps by pty, and a string made anew each time is garbage the next moment. Bounded: a host (or a container
 * making ptys) past PTY_KEYS_KEPT only empties the cache.
 */
export function ptyKey(devptsDev: string, index: number): string {
  let byIndex = ptyKeys.get(devptsDev);
  const known = byIndex?.get(index);
  if (known !== undefined) return known;
  if (ptyKeysMade >= PTY_KEYS_KEPT) {
    ptyKeys.clear();
    ptyKeysMade = 0;
    byIndex = undefined;
  }
  if (byIndex === undefined) {
    byIndex = new Map();
    ptyKeys.set(devptsDev, byIndex);
  }
  const key = `${devptsDev}:${index}`;
  byIndex.set(index, key);
  ptyKeysMade++;
  return key;
}

export type PtyOwner = "exec" | "container" | "host" | "unattributed";

export const PTY_OWNERS: readonly PtyOwner[] = ["exec", "container", "host", "unattributed"];

/** An allocated pty with everyone holding it. */
export interface Pty {
  key: string;
  devptsDev: string;
  index: number;
  owner: PtyOwner;
  containerId: string | null;
  containerName: string | null;
  execId: string | null;
  masterPids: number[];
  slavePids: number[];
  atimeMs: number | null;
  mtimeMs: number | null;
  /** The slave holder that leads its session (else the first): what `w` would show. */
  leaderPid: number | null;
  leaderCommand: string | null;
  leaderStartedAtMs: number | null;
  /** The runtime of the container it is in (set after the inventory is built); absent or null: none known. */
  runtime?: RuntimeName | null;
  /** Set when only masters have held it for masterOnlyGrace: a leak with no session to reap (absent or null: not so). */
  masterOnly?: MasterOnly | null;
}

/** Who holds a master-only pty's master: a runtime's monitor or daemon, a process in a container, or a host process. */
export type MasterHolderRole = "containerd-shim" | "conmon" | "crio" | "oci-runtime-exec" | "dockerd" | "container" | "host";
export const MASTER_HOLDER_ROLES: readonly MasterHolderRole[] = [
  "containerd-shim",
  "conmon",
  "crio",
  "oci-runtime-exec",
  "dockerd",
  "container",
  "host",
];

/** A pty no process holds the slave of, whose master stays open: never a session, its holder never signalled. */
export interface MasterOnly {
  role: MasterHolderRole;
  /** A runtime; `unknown`: a runtime's process that does not say whose; `none`: a host process. */
  runtime: RuntimeName | "unknown" | "none";
  /** The container the pty belongs to, when its devpts or the holder (conmon -c) says. */
  containerId: string | null;
  /** The holder named (the runtime's, when several processes hold masters). */
  holderPid: number;
  holderCommand: string | null;
  /** First cycle that saw it held only by masters; null for one look (`ptyreaper sessions`), which cannot time it. */
  sinceMs: number | null;
}

/** A running exec of any runtime (`docker exec`, `kubectl exec`, `podman exec`) that holds a pty. */
export interface ExecSession {
  execId: string;
  containerId: string;
  containerName: string;
  containerLabels: Record<string, string>;
  pid: number;
  /** Identity of `pid` when seen, checked again before any signal. */
  startTicks: number;
  pidNs: string | null;
  /** The pid inside the container (innermost NSpid); 1 would be the container's init. */
  nsPid: number;
  /** Started with PTYREAPER_EXEMPT=1 in its environment (`docker exec -e PTYREAPER_EXEMPT=1`). */
  exemptByEnv: boolean;
  ptyKey: string;
  devptsDev: string;
  index: number;
  /** Every process in the container holding this pty's slave. */
  holderPids: number[];
  startedAtMs: number;
  atimeMs: number;
  mtimeMs: number;
  command: string;
  /** Whether the session's client is still there; absent when nobody looked (read as unknown). */
  client?: ClientState;
  /** The runtime that started the exec. */
  runtime: RuntimeName;
  /** containerd namespace of the container (`k8s.io`); null for runtimes without namespaces. */
  runtimeNamespace?: string | null;
  /** From the container's `io.kubernetes.*` labels, when it is a pod's. */
  kubernetes?: KubernetesRef | null;
}

export interface Inventory {
  limits: PtyLimits;
  ptys: Pty[];
  sessions: ExecSession[];
  /** Distinct ptys found minus pty.nr, with a reason a person can read when not zero. */
  discrepancy: { found: number; allocated: number; explanation: string | null };
  unreadablePids: number[];
}
