// Pure correlation: pty fds from /proc + Docker's containers and execs → ptys with owners, and exec sessions.
import { ancestry } from "./ancestry.js";
import {
  ptyKey,
  type ContainerInfo,
  type DockerView,
  type ExecInfo,
  type ExecSession,
  type Inventory,
  type ProcInfo,
  type ProcScan,
  type Pty,
  type PtyLimits,
  type PtyOwner,
} from "./types.js";

/** USER_HZ: /proc reports starttime in these ticks; it is 100 on every Linux ABI. */
export const CLOCK_TICKS_PER_SECOND = 100;

interface Holders {
  devptsDev: string;
  index: number;
  masters: Set<number>;
  slaves: Set<number>;
}

export function processStartMs(scan: ProcScan, info: Pick<ProcInfo, "startTicks">): number {
  return scan.bootTimeSec * 1000 + (info.startTicks * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** Whether a process is the init of its own PID namespace (pid 1 inside a container). */
export function isNamespaceInit(info: Pick<ProcInfo, "nsPids">): boolean {
  return info.nsPids.length > 1 && info.nsPids.at(-1) === 1;
}

export function buildInventory(
  scan: ProcScan,
  limits: PtyLimits,
  docker: DockerView,
  exemptByEnv: (pid: number) => boolean = () => false,
): Inventory {
  const holders = groupHolders(scan);
  const containers = new Map(docker.containers.map((c) => [c.id, c]));
  const containerInits = initPidsByContainer(scan, docker.containers);
  const containerOf = processContainers(scan, docker);
  const devptsOwners = devptsToContainer(scan, containerInits);
  const ownPtys = execOwnPtys(scan, docker.execs, containerOf);

  const ptys: Pty[] = [];
  const sessions: ExecSession[] = [];
  for (const [key, held] of holders) {
    const slaveInfos = [...held.slaves].map((pid) => scan.processes.get(pid)).filter((p): p is ProcInfo => p !== undefined);
    const exec = ownPtys.get(key) ?? null;
    const holderContainers = new Set([...held.slaves].map((pid) => containerOf(pid)));
    // Per process: the one container every slave holder is in; with no slave holder, the devpts it lives on.
    const containerId = exec?.containerId ?? soleContainer(holderContainers, held.slaves.size === 0 ? devptsOwners.get(held.devptsDev) : undefined);
    const container = containerId ? containers.get(containerId) : undefined;
    const owner = classify(scan, held, slaveInfos, holderContainers, containerId, containerInits.get(containerId ?? ""), exec);
    const times = scan.ttyTimes.get(key);
    const leader = slaveInfos.find((p) => p.sid === p.pid) ?? slaveInfos[0];
    ptys.push({
      key,
      devptsDev: held.devptsDev,
      index: held.index,
      owner,
      containerId,
      containerName: container?.name ?? null,
      execId: exec?.id ?? null,
      masterPids: sorted(held.masters),
      slavePids: sorted(held.slaves),
      atimeMs: times?.atimeMs ?? null,
      mtimeMs: times?.mtimeMs ?? null,
      leaderPid: leader?.pid ?? null,
      leaderCommand: leader ? commandLine(leader) : null,
      leaderStartedAtMs: leader ? processStartMs(scan, leader) : null,
    });
    const execInfo = exec ? scan.processes.get(exec.pid) : undefined;
    if (exec && container && execInfo && times) {
      sessions.push({
        execId: exec.id,
        runtime: exec.runtime,
        runtimeNamespace: exec.namespace,
        kubernetes: exec.kubernetes,
        containerId: container.id,
        containerName: container.name,
        containerLabels: container.labels,
        pid: exec.pid,
        startTicks: execInfo.startTicks,
        pidNs: execInfo.pidNs,
        nsPid: execInfo.nsPids.at(-1) ?? exec.pid,
        exemptByEnv: exemptByEnv(exec.pid),
        ptyKey: key,
        devptsDev: held.devptsDev,
        index: held.index,
        holderPids: sorted(new Set([...held.slaves].filter((pid) => containerOf(pid) === container.id))),
        startedAtMs: processStartMs(scan, execInfo),
        atimeMs: times.atimeMs,
        mtimeMs: times.mtimeMs,
        command: [exec.entrypoint, ...exec.arguments].join(" "),
      });
    }
  }
  ptys.sort((a, b) => a.devptsDev.localeCompare(b.devptsDev) || a.index - b.index);
  sessions.sort((a, b) => a.containerName.localeCompare(b.containerName) || a.pid - b.pid);
  return {
    limits,
    ptys,
    sessions,
    discrepancy: explainDiscrepancy(scan, ptys.length, limits.allocated),
    unreadablePids: scan.unreadablePids,
  };
}

function groupHolders(scan: ProcScan): Map<string, Holders> {
  const byKey = new Map<string, Holders>();
  for (const fd of scan.ptyFds) {
    const key = ptyKey(fd.devptsDev, fd.index);
    let held = byKey.get(key);
    if (!held) {
      held = { devptsDev: fd.devptsDev, index: fd.index, masters: new Set(), slaves: new Set() };
      byKey.set(key, held);
    }
    (fd.role === "master" ? held.masters : held.slaves).add(fd.pid);
  }
  return byKey;
}

/** Container id → host pid of its init: Docker's State.Pid, else a pid-1 holder found in /proc. */
function initPidsByContainer(scan: ProcScan, containers: readonly ContainerInfo[]): Map<string, number> {
  const inits = new Map<string, number>();
  for (const info of scan.processes.values()) {
    if (info.containerId && isNamespaceInit(info)) inits.set(info.containerId, info.pid);
  }
  for (const container of containers) if (container.pid > 0) inits.set(container.id, container.pid);
  return inits;
}

/**
 * pid → container, per process: its cgroup when the parser recognised it; otherwise Docker's answer,
 * i.e. the process is, or descends from, an exec's process or a container's State.Pid (cgroupfs driver,
 * --cgroup-parent). A host process descends from neither, so it stays null.
 */
function processContainers(scan: ProcScan, docker: DockerView): (pid: number) => string | null {
  const anchors = new Map<number, string>();
  for (const container of docker.containers) if (container.pid > 0) anchors.set(container.pid, container.id);
  for (const exec of docker.execs) if (exec.pid > 0 && exec.running) anchors.set(exec.pid, exec.containerId);
  const known = new Set(docker.containers.map((c) => c.id));
  const memo = new Map<number, string | null>();
  return (pid) => {
    const cached = memo.get(pid);
    if (cached !== undefined) return cached;
    let found: string | null = scan.processes.get(pid)?.containerId ?? null;
    if (found === null || !known.has(found)) {
      const parentOf = ({ pid: at }: { pid: number }): { pid: number } | undefined => {
        const parent = scan.ppids.get(at);
        return parent === undefined ? undefined : { pid: parent };
      };
      for (const { pid: at } of ancestry({ pid }, parentOf)) {
        const anchor = anchors.get(at);
        if (anchor !== undefined) {
          // Only where the cgroup said nothing: a process whose cgroup names a container stays there.
          const own: string | null = scan.processes.get(at)?.containerId ?? null;
          if (found === null && (own === null || own === anchor)) found = anchor;
          break;
        }
      }
    }
    memo.set(pid, found);
    return found;
  };
}

/** devpts instance → container, from the /dev/pts each container init sees; an instance two containers see is nobody's. */
function devptsToContainer(scan: ProcScan, inits: Map<string, number>): Map<string, string> {
  const owners = new Map<string, string>();
  const shared = new Set<string>();
  for (const [containerId, pid] of inits) {
    const dev = scan.initDevpts.get(pid);
    if (!dev) continue;
    if (owners.has(dev) && owners.get(dev) !== containerId) shared.add(dev);
    owners.set(dev, containerId);
  }
  for (const dev of shared) owners.delete(dev);
  return owners;
}

/** The slave index a stat tty_nr names, or null when it is not a pty slave (major 136-143). */
export function ttyNrSlaveIndex(ttyNr: number): number | null {
  const major = (ttyNr >> 8) & 0xfff;
  const minor = (ttyNr & 0xff) | ((ttyNr >> 12) & 0xfff00);
  return major >= 136 && major <= 143 ? (major - 136) * 256 + minor : null;
}

/**
 * Each running tty exec's own pty: the one its controlling tty (stat tty_nr) names, among the slaves its
 * process holds; only when it has no controlling pty, the slave on its stdio (fd 0, 1, 2). The controlling
 * tty is set when the exec starts and does not follow `exec </proc/1/fd/0 >/proc/1/fd/1`, so its stdio may be
 * the console: a controlling pty the process no longer holds (or holds on two devpts) claims nothing, never
 * its stdio. One per exec; a pty two execs would claim is neither's. Other ptys its descendants open or
 * inherit (the console through /proc/1/fd/1) are not the session's.
 */
function execOwnPtys(scan: ProcScan, execs: readonly ExecInfo[], containerOf: (pid: number) => string | null): Map<string, ExecInfo> {
  const slavesByPid = new Map<number, { fd: number; key: string; index: number }[]>();
  for (const fd of scan.ptyFds) {
    if (fd.role !== "slave") continue;
    const list = slavesByPid.get(fd.pid) ?? [];
    list.push({ fd: fd.fd, key: ptyKey(fd.devptsDev, fd.index), index: fd.index });
    slavesByPid.set(fd.pid, list);
  }
  const claims = new Map<string, ExecInfo[]>();
  for (const exec of execs) {
    if (!exec.running || !exec.tty || exec.pid <= 0) continue;
    const info = scan.processes.get(exec.pid);
    if (!info || containerOf(exec.pid) !== exec.containerId) continue;
    const keys = ownPtyKeys(slavesByPid.get(exec.pid) ?? [], ttyNrSlaveIndex(info.ttyNr));
    if (keys.size !== 1) continue;
    const key = [...keys][0] as string;
    claims.set(key, [...(claims.get(key) ?? []), exec]);
  }
  const own = new Map<string, ExecInfo>();
  for (const [key, claimants] of claims) if (claimants.length === 1 && claimants[0]) own.set(key, claimants[0]);
  return own;
}

/**
 * The candidate keys for an exec's own pty: its controlling pty's index when it has one, else its stdio.
 * The one rule for every runtime: Docker's execs here, containerd's and Podman's in confirmRuntimeExec.
 */
export function ownPtyKeys(slaves: readonly { fd: number; key: string; index: number }[], controlling: number | null): Set<string> {
  const mine = controlling === null ? slaves.filter((s) => s.fd <= 2) : slaves.filter((s) => s.index === controlling);
  return new Set(mine.map((s) => s.key));
}

/** The one container all slave holders are in (none: the devpts instance's container); null when none or several. */
function soleContainer(holderContainers: ReadonlySet<string | null>, byDevpts: string | undefined): string | null {
  if (holderContainers.size === 0) return byDevpts ?? null;
  return holderContainers.size === 1 ? ([...holderContainers][0] ?? null) : null;
}

function classify(
  scan: ProcScan,
  held: Holders,
  slaves: readonly ProcInfo[],
  holderContainers: ReadonlySet<string | null>,
  containerId: string | null,
  initPid: number | undefined,
  exec: ExecInfo | null,
): PtyOwner {
  if (exec) return "exec";
  if (containerId !== null) {
    if (holderContainers.size === 1 && initPid !== undefined && held.slaves.has(initPid)) return "container";
    return "unattributed";
  }
  const all = [...held.masters, ...held.slaves].map((pid) => scan.processes.get(pid));
  // Host only when every holder was read and none runs in a container (by cgroup or by Docker's pids).
  const everyHolderOnHost = all.every((info) => info !== undefined && info.containerId === null) && [...holderContainers].every((c) => c === null);
  if (all.length > 0 && everyHolderOnHost && slaves.length === held.slaves.size) return "host";
  return "unattributed";
}

function explainDiscrepancy(scan: ProcScan, found: number, allocated: number): Inventory["discrepancy"] {
  if (found === allocated) return { found, allocated, explanation: null };
  const reasons: string[] = [];
  if (scan.unreadablePids.length > 0) reasons.push(`${scan.unreadablePids.length} process(es) could not be read (not root, or protected)`);
  const lostMasters = (scan.parseErrors.fdinfo ?? 0) + (scan.parseErrors.master_instance ?? 0);
  if (lostMasters > 0) reasons.push(`${lostMasters} master fd(s) without a readable tty-index or devpts instance`);
  if (scan.vanished > 0) reasons.push(`${scan.vanished} process(es) exited during the scan`);
  if (found < allocated)
    reasons.push("ptys can stay allocated with no open fd for a moment while being freed, or be held only by processes outside this /proc");
  else reasons.push("ptys were freed after pty/nr was read");
  return { found, allocated, explanation: reasons.join("; ") };
}

/** What `ps` shows: the arguments, or [comm] when cmdline is empty (kernel threads, zombies). */
export function commandLine(info: Pick<ProcInfo, "cmdline" | "comm">): string {
  return info.cmdline.length > 0 ? info.cmdline.join(" ") : `[${info.comm}]`;
}

function sorted(pids: Set<number>): number[] {
  return [...pids].sort((a, b) => a - b);
}
