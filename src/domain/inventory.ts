// Pure correlation: pty fds from /proc + Docker's containers and execs → ptys with owners, and exec sessions.
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

/** Ancestry walks stop here: deeper trees are not plausible exec sessions. */
const MAX_ANCESTRY_DEPTH = 64;

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
  const devptsOwners = devptsToContainer(scan, containerInits);
  const execsByPid = runningTtyExecsByPid(docker.execs);

  const ptys: Pty[] = [];
  const sessions: ExecSession[] = [];
  for (const [key, held] of holders) {
    const slaveInfos = [...held.slaves].map((pid) => scan.processes.get(pid)).filter((p): p is ProcInfo => p !== undefined);
    const containerId = devptsOwners.get(held.devptsDev) ?? firstContainerId(slaveInfos);
    const container = containerId ? containers.get(containerId) : undefined;
    const exec = containerId ? findExec(scan, slaveInfos, containerId, execsByPid) : null;
    const owner = classify(scan, held, slaveInfos, containerId, containerInits.get(containerId ?? ""), exec);
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
        holderPids: slaveInfos.filter((p) => p.containerId === container.id).map((p) => p.pid),
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

/** devpts instance → container, from the /dev/pts each container init sees. */
function devptsToContainer(scan: ProcScan, inits: Map<string, number>): Map<string, string> {
  const owners = new Map<string, string>();
  for (const [containerId, pid] of inits) {
    const dev = scan.initDevpts.get(pid);
    if (dev) owners.set(dev, containerId);
  }
  return owners;
}

function runningTtyExecsByPid(execs: readonly ExecInfo[]): Map<number, ExecInfo> {
  const byPid = new Map<number, ExecInfo>();
  for (const exec of execs) if (exec.running && exec.tty && exec.pid > 0) byPid.set(exec.pid, exec);
  return byPid;
}

function firstContainerId(infos: readonly ProcInfo[]): string | null {
  return infos.find((info) => info.containerId !== null)?.containerId ?? null;
}

/** The exec whose process holds the slave, or is an ancestor of a holder, within the container. */
function findExec(scan: ProcScan, slaves: readonly ProcInfo[], containerId: string, execsByPid: Map<number, ExecInfo>): ExecInfo | null {
  for (const info of slaves) {
    const exec = execsByPid.get(info.pid);
    if (exec && exec.containerId === containerId) return exec;
  }
  for (const info of slaves) {
    if (info.containerId !== containerId) continue;
    let pid = scan.ppids.get(info.pid);
    for (let depth = 0; pid !== undefined && pid > 1 && depth < MAX_ANCESTRY_DEPTH; depth++) {
      const exec = execsByPid.get(pid);
      if (exec) return exec.containerId === containerId ? exec : null;
      pid = scan.ppids.get(pid);
    }
  }
  return null;
}

function classify(
  scan: ProcScan,
  held: Holders,
  slaves: readonly ProcInfo[],
  containerId: string | null,
  initPid: number | undefined,
  exec: ExecInfo | null,
): PtyOwner {
  if (containerId !== null) {
    if (exec) return "exec";
    if (initPid !== undefined && held.slaves.has(initPid)) return "container";
    return "unattributed";
  }
  const all = [...held.masters, ...held.slaves].map((pid) => scan.processes.get(pid));
  // Host only when every holder was read and none runs in a container.
  if (all.length > 0 && all.every((info) => info !== undefined && info.containerId === null) && slaves.length === held.slaves.size) {
    return "host";
  }
  return "unattributed";
}

function explainDiscrepancy(scan: ProcScan, found: number, allocated: number): Inventory["discrepancy"] {
  if (found === allocated) return { found, allocated, explanation: null };
  const reasons: string[] = [];
  if (scan.unreadablePids.length > 0) reasons.push(`${scan.unreadablePids.length} process(es) could not be read (not root, or protected)`);
  const lostMasters = (scan.parseErrors.fdinfo ?? 0) + (scan.parseErrors.master_instance ?? 0);
  if (lostMasters > 0) reasons.push(`${lostMasters} master fd(s) without a readable tty-index or devpts instance`);
  if (scan.vanished > 0) reasons.push(`${scan.vanished} process(es) exited during the scan`);
  if (found < allocated) reasons.push("ptys can stay allocated with no open fd for a moment while being freed, or be held only by processes outside this /proc");
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
