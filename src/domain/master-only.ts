// Pure: ptys held only by masters (a runtime's monitor, or a host process) with nobody on the slave end: leaks no session explains.
import { monitorOf, parseCgroupIdentity, type ProcessFacts, type RuntimeName } from "./attribution.js";
import { commandLine } from "./inventory.js";
import type { MasterHolderRole, MasterOnly, ProcScan, Pty } from "./types.js";

/** The `runtime` label of a master-only pty: a runtime, `unknown` (a runtime's process that does not say whose), or `none` (not a runtime's). */
export type MasterOnlyRuntime = MasterOnly["runtime"];

/**
 * One pty allocation held only by masters: the pty, and who holds its master. The same index held by other
 * processes (or the same pids after a restart) is another allocation, so its time starts again.
 */
export function masterOnlyIdentity(pty: Pick<Pty, "key" | "masterPids">, scan: Pick<ProcScan, "processes">): string {
  const holders = pty.masterPids.map((pid) => `${pid}@${scan.processes.get(pid)?.startTicks ?? "?"}`);
  return `${pty.key} ${holders.join(",")}`;
}

/** Whether a pty is held by masters and nobody holds its slave (what the scan saw; unreadable processes aside). */
export function heldOnlyByMasters(pty: Pick<Pty, "masterPids" | "slavePids" | "owner">): boolean {
  return pty.masterPids.length > 0 && pty.slavePids.length === 0 && pty.owner !== "exec";
}

/**
 * When each pty allocation was first seen held only by masters, kept across poll cycles. A pty seen with a
 * slave holder again, or gone, is forgotten: closing the slave again starts its time anew.
 */
export class MasterOnlyTracker {
  private since = new Map<string, number>();

  /** The first-seen time (ms) of every pty held only by masters now, by pty key; `nowMs` is this cycle's time. */
  observe(ptys: readonly Pty[], scan: Pick<ProcScan, "processes">, nowMs: number): Map<string, number> {
    const next = new Map<string, number>();
    const byKey = new Map<string, number>();
    for (const pty of ptys) {
      if (!heldOnlyByMasters(pty)) continue;
      const identity = masterOnlyIdentity(pty, scan);
      const first = this.since.get(identity) ?? nowMs;
      next.set(identity, first);
      byKey.set(pty.key, first);
    }
    this.since = next;
    return byKey;
  }

  get size(): number {
    return this.since.size;
  }
}

/** What one master holder is, as a role: a runtime's monitor or daemon, a process in a container, or a host process. */
export function masterHolder(
  facts: ProcessFacts | undefined,
  lookup: (pid: number) => ProcessFacts | undefined,
): { role: MasterHolderRole; runtime: MasterOnlyRuntime; containerId: string | null } {
  // Exited since the scan: nothing says whose it was.
  if (!facts) return { role: "host", runtime: "none", containerId: null };
  const monitor = monitorOf(facts);
  switch (monitor?.kind) {
    case "containerd-shim":
      return { role: "containerd-shim", runtime: monitor.runtime, containerId: null };
    case "conmon":
      return { role: "conmon", runtime: monitor.runtime, containerId: monitor.containerId };
    case "crio":
      return { role: "crio", runtime: "cri-o", containerId: null };
    case "oci-runtime-exec": {
      // CRI-O's runc/crun exec holds the container-side master; crio runs it.
      const parent = lookup(facts.ppid);
      return {
        role: "oci-runtime-exec",
        runtime: parent && monitorOf(parent)?.kind === "crio" ? "cri-o" : "unknown",
        containerId: monitor.containerId,
      };
    }
    default:
      break;
  }
  const program = facts.argv[0]?.slice(facts.argv[0].lastIndexOf("/") + 1) ?? "";
  if (facts.comm === "dockerd" || program === "dockerd") return { role: "dockerd", runtime: "docker", containerId: null };
  const cgroup = parseCgroupIdentity(facts.cgroup);
  if (cgroup) return { role: "container", runtime: cgroup.runtime, containerId: cgroup.containerId };
  return { role: "host", runtime: "none", containerId: null };
}

/** The runtime's roles first: a pty whose masters are a shim's and a host process's is the runtime's leak. */
const ROLE_ORDER: readonly MasterHolderRole[] = ["containerd-shim", "conmon", "oci-runtime-exec", "crio", "dockerd", "container", "host"];

export interface MarkMasterOnlyOptions {
  /** First-seen times from a MasterOnlyTracker; null: one look (`ptyreaper sessions`), no time to wait out. */
  firstSeen: ReadonlyMap<string, number> | null;
  nowMs: number;
  /** masterOnlyGrace: how long a pty must stay held only by masters to be named (ignored for one look). */
  graceMs: number;
  scan: Pick<ProcScan, "processes">;
  lookup: (pid: number) => ProcessFacts | undefined;
  /**
   * Slave indexes that processes whose fds could not be read have as controlling tty (any devpts instance):
   * such a process may hold that slave, so those ptys are not named. null: some of them could not even be
   * told (their stat unreadable), so none is named.
   */
  unreadableTtys: ReadonlySet<number> | null;
}

/**
 * Gives each pty held only by masters for at least the grace its `masterOnly` (null on every other). Not where an
 * unreadable process may hold the slave (unreadableTtys). Exec ptys and ptys with a slave holder are never
 * touched, so no session's pty is ever master-only.
 *
 * A pty marked before whose mark changes is replaced in `ptys` by a copy, never changed in place: the daemon gives
 * an unchanged pty to the next cycle's inventory as the same object (InventoryReuse), and a snapshot already
 * published must not change under its readers. One never marked is fresh from a build, in no snapshot yet.
 */
export function markMasterOnly(ptys: Pty[], options: MarkMasterOnlyOptions): void {
  for (let i = 0; i < ptys.length; i++) {
    const pty = ptys[i] as Pty;
    const mark = masterOnlyOf(pty, options);
    // Never marked: fresh from a build, not yet in any snapshot.
    if (pty.masterOnly === undefined) pty.masterOnly = mark;
    else if (!sameMark(pty.masterOnly, mark)) ptys[i] = { ...pty, masterOnly: mark };
  }
}

function masterOnlyOf(pty: Pty, options: MarkMasterOnlyOptions): MasterOnly | null {
  const { unreadableTtys } = options;
  if (unreadableTtys === null || unreadableTtys.has(pty.index) || !heldOnlyByMasters(pty)) return null;
  let sinceMs: number | null = null;
  if (options.firstSeen !== null) {
    const first = options.firstSeen.get(pty.key);
    if (first === undefined || options.nowMs - first < options.graceMs) return null;
    sinceMs = first;
  }
  const holders = pty.masterPids.map((pid) => {
    const facts = options.lookup(pid);
    return { pid, facts, ...masterHolder(facts, options.lookup) };
  });
  holders.sort((a, b) => ROLE_ORDER.indexOf(a.role) - ROLE_ORDER.indexOf(b.role));
  const first = holders[0];
  if (!first) return null;
  // The container's runtime as the runtimes told it beats the holder's own word (a shim says only its namespace).
  const runtime: MasterOnlyRuntime = first.role === "host" ? "none" : (pty.runtime ?? (first.runtime === "none" ? "unknown" : first.runtime));
  const info = options.scan.processes.get(first.pid);
  return {
    role: first.role,
    runtime,
    containerId: pty.containerId ?? first.containerId,
    holderPid: first.pid,
    holderCommand: info ? commandLine(info) : first.facts ? commandLine({ cmdline: [...first.facts.argv], comm: first.facts.comm }) : null,
    sinceMs,
  };
}

function sameMark(a: MasterOnly | null, b: MasterOnly | null): boolean {
  if (a === null || b === null) return a === b;
  return (
    a.role === b.role &&
    a.runtime === b.runtime &&
    a.containerId === b.containerId &&
    a.holderPid === b.holderPid &&
    a.holderCommand === b.holderCommand &&
    a.sinceMs === b.sinceMs
  );
}

/** Master-only ptys counted by runtime and holder role: the label pairs of ptyreaper_master_only_ptys. */
export function countMasterOnly(ptys: readonly Pty[]): Map<string, { runtime: MasterOnlyRuntime; holder: MasterHolderRole; count: number }> {
  const counts = new Map<string, { runtime: MasterOnlyRuntime; holder: MasterHolderRole; count: number }>();
  for (const pty of ptys) {
    if (!pty.masterOnly) continue;
    const { runtime, role } = pty.masterOnly;
    const key = `${runtime}/${role}`;
    const entry = counts.get(key);
    if (entry) entry.count += 1;
    else counts.set(key, { runtime, holder: role, count: 1 });
  }
  return counts;
}

/** Each runtime with the monitor that holds its exec masters: the series present from the start, at 0. */
export const EXPECTED_MASTER_HOLDERS: readonly { runtime: RuntimeName | "none"; holder: MasterHolderRole }[] = [
  { runtime: "docker", holder: "containerd-shim" },
  { runtime: "docker", holder: "dockerd" },
  { runtime: "containerd", holder: "containerd-shim" },
  { runtime: "podman", holder: "conmon" },
  { runtime: "cri-o", holder: "conmon" },
  { runtime: "cri-o", holder: "crio" },
  { runtime: "cri-o", holder: "oci-runtime-exec" },
  { runtime: "none", holder: "host" },
];
