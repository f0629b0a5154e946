// Pure correlation: pty fds from /proc + every runtime's containers and execs → ptys with owners, and exec sessions.
import { findAncestor } from "./ancestry.js";
import type { RuntimeName } from "./attribution.js";
import { isSessionCandidate, runtimeContainerName, type RuntimeContainer, type RuntimeExec, type RuntimeView } from "./runtime.js";
import { ptyKey, type ExecSession, type Inventory, type ProcInfo, type ProcScan, type Pty, type PtyLimits, type PtyOwner } from "./types.js";

/** USER_HZ: /proc reports starttime in these ticks; it is 100 on every Linux ABI. */
export const CLOCK_TICKS_PER_SECOND = 100;

/**
 * Arrays, not Sets, and indexed loops over them: the daemon runs without V8's optimizing compiler, where each
 * throwaway array or iterator allocates, and a building cycle does this for every pty.
 */
interface Holders {
  devptsDev: string;
  index: number;
  /** Each pid once. */
  masters: number[];
  slaves: number[];
}

export function processStartMs(scan: ProcScan, info: Pick<ProcInfo, "startTicks">): number {
  return scan.bootTimeSec * 1000 + (info.startTicks * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** Whether a process is the init of its own PID namespace (pid 1 inside a container). */
export function isNamespaceInit(info: Pick<ProcInfo, "nsPids">): boolean {
  return info.nsPids.length > 1 && info.nsPids.at(-1) === 1;
}

/** A container as the inventory knows it, with the runtime that listed it. */
export interface KnownContainer {
  container: RuntimeContainer;
  runtime: RuntimeName;
}

/** An exec with its runtime and its container as that runtime lists it (undefined: not listed there). */
interface ListedExec {
  exec: RuntimeExec;
  runtime: RuntimeName;
  container: RuntimeContainer | undefined;
}

/** Container ID → container, from the runtimes that answered; one two runtimes list is the first's (Docker's own, seen through containerd). */
export function inventoryContainers(views: readonly RuntimeView[]): Map<string, KnownContainer> {
  const known = new Map<string, KnownContainer>();
  for (const view of views) {
    if (!view.available) continue;
    for (const container of view.containers) if (!known.has(container.id)) known.set(container.id, { container, runtime: view.runtime });
  }
  return known;
}

function listedExecs(views: readonly RuntimeView[]): ListedExec[] {
  return views
    .filter((view) => view.available)
    .flatMap((view) => {
      const byId = new Map(view.containers.map((c) => [c.id, c]));
      return view.execs.map((exec) => ({ exec, runtime: view.runtime, container: byId.get(exec.container.id) }));
    });
}

export interface BuildOptions {
  /** Whether an exec's process has PTYREAPER_EXEMPT=1 in its environment. Default: none has. */
  exemptByEnv?: (pid: number) => boolean;
  /** Tags each pty with its runtime as it is made (ptyRuntimeOf). Absent: no runtime is set. */
  runtimeOf?: (pty: Pty) => RuntimeName | null;
  /**
   * The ptys the last cycle gave out: one built equal to the last one of its key (but for its master-only mark, the
   * marker's) is given as that same object. The daemon keeps the inventory from cycle to cycle: a copy of each of
   * hundreds of unchanged ptys at every build lived long enough to fill the old generation.
   */
  previous?: readonly Pty[];
}

/**
 * The inventory from the /proc scan and each runtime's view, as mergeRuntimeViews leaves it: of the session
 * candidates, only the execs /proc confirmed.
 */
export function buildInventory(scan: ProcScan, limits: PtyLimits, views: readonly RuntimeView[], options: BuildOptions = {}): Inventory {
  const { exemptByEnv = () => false, runtimeOf } = options;
  const previous = new Map<string, Pty>();
  options.previous?.forEach((pty) => previous.set(pty.key, pty));
  const holders = groupHolders(scan);
  const known = inventoryContainers(views);
  const containers = new Map([...known].map(([id, { container }]) => [id, container]));
  const execs = listedExecs(views);
  const containerInits = initPidsByContainer(scan, containers);
  const containerOf = processContainers(scan, containers, execs);
  const devptsOwners = devptsToContainer(scan, containerInits);
  const ownPtys = execOwnPtys(scan, execs, containerOf);

  const ptys: Pty[] = [];
  const sessions: ExecSession[] = [];
  const onHost = (pid: number): boolean => scan.processes.get(pid)?.containerId === null;
  holders.forEach((held, key) => {
    // What the slave holders say, gathered without an array or a set per pty: how many were read, the one that
    // leads its session (else the first read), and their container (HolderContainer).
    let readSlaves = 0;
    let first: ProcInfo | undefined;
    let leader: ProcInfo | undefined;
    let holderContainer: HolderContainer = undefined;
    for (let i = 0; i < held.slaves.length; i++) {
      const pid = held.slaves[i] as number;
      const info = scan.processes.get(pid);
      if (info !== undefined) {
        readSlaves++;
        first ??= info;
        if (leader === undefined && leadsItsSession(info)) leader = info;
      }
      const container = containerOf(pid);
      if (holderContainer === undefined) holderContainer = container;
      else if (holderContainer !== container) holderContainer = SEVERAL;
    }
    leader ??= first;
    const listed = ownPtys.get(key) ?? null;
    const exec = listed?.exec ?? null;
    // Per process: the one container every slave holder is in; with no slave holder, the devpts it lives on.
    const containerId = exec?.container.id ?? soleContainer(holderContainer, devptsOwners.get(held.devptsDev));
    const container = containerId ? containers.get(containerId) : undefined;
    const owner = classify(held, readSlaves, holderContainer, containerId, containerInits.get(containerId ?? ""), exec, onHost);
    const times = scan.ttyTimes.get(key);
    const pty: Pty = {
      key,
      devptsDev: held.devptsDev,
      index: held.index,
      owner,
      containerId,
      containerName: container ? runtimeContainerName(container) : null,
      execId: exec?.id ?? null,
      masterPids: held.masters.sort(byNumber),
      slavePids: held.slaves.sort(byNumber),
      atimeMs: times?.atimeMs ?? null,
      mtimeMs: times?.mtimeMs ?? null,
      leaderPid: leader?.pid ?? null,
      leaderCommand: leader ? commandLine(leader) : null,
      leaderStartedAtMs: leader ? processStartMs(scan, leader) : null,
    };
    if (runtimeOf) pty.runtime = runtimeOf(pty);
    const before = previous.get(key);
    ptys.push(before !== undefined && sameBuild(before, pty) ? before : pty);
    const execInfo = exec ? scan.processes.get(exec.pid) : undefined;
    if (listed && exec && container && execInfo && times) {
      sessions.push({
        execId: exec.id,
        runtime: listed.runtime,
        runtimeNamespace: listed.container?.namespace ?? null,
        kubernetes: listed.container?.kubernetes ?? null,
        containerId: container.id,
        containerName: runtimeContainerName(container),
        containerLabels: { ...container.labels },
        pid: exec.pid,
        startTicks: execInfo.startTicks,
        pidNs: execInfo.pidNs,
        nsPid: execInfo.nsPids.at(-1) ?? exec.pid,
        exemptByEnv: exemptByEnv(exec.pid),
        ptyKey: key,
        devptsDev: held.devptsDev,
        index: held.index,
        holderPids: held.slaves.filter((pid) => containerOf(pid) === container.id),
        startedAtMs: processStartMs(scan, execInfo),
        atimeMs: times.atimeMs,
        mtimeMs: times.mtimeMs,
        command: (exec.command ?? execInfo.cmdline).join(" "),
      });
    }
  });
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

/** Every field a build sets on a pty: all but the master-only mark (compile-checked below). */
const BUILT_FIELDS = [
  "key",
  "devptsDev",
  "index",
  "owner",
  "containerId",
  "containerName",
  "execId",
  "masterPids",
  "slavePids",
  "atimeMs",
  "mtimeMs",
  "leaderPid",
  "leaderCommand",
  "leaderStartedAtMs",
  "runtime",
] as const satisfies readonly (keyof Pty)[];
// A field added to Pty must be added above, or be the marker's: else this line does not compile.
const everyBuiltField: Exclude<keyof Pty, (typeof BUILT_FIELDS)[number] | "masterOnly"> extends never ? true : never = true;
void everyBuiltField;

/**
 * Whether `before` (a pty given out before, perhaps since marked master-only) is what was just built as `built`:
 * every field a build sets has the same value (arrays item by item; an absent runtime is none). A list of fields
 * rather than for-in: without V8's optimizing compiler each for-in allocates, and this runs per pty per build.
 */
function sameBuild(before: Pty, built: Pty): boolean {
  for (let f = 0; f < BUILT_FIELDS.length; f++) {
    const field = BUILT_FIELDS[f] as (typeof BUILT_FIELDS)[number];
    const a = before[field] ?? null;
    const b = built[field] ?? null;
    if (a === b) continue;
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  }
  return true;
}

function groupHolders(scan: ProcScan): Map<string, Holders> {
  const byKey = new Map<string, Holders>();
  for (let i = 0; i < scan.ptyFds.length; i++) {
    const fd = scan.ptyFds[i] as ProcScan["ptyFds"][number];
    const key = ptyKey(fd.devptsDev, fd.index);
    let held = byKey.get(key);
    if (!held) {
      held = { devptsDev: fd.devptsDev, index: fd.index, masters: [], slaves: [] };
      byKey.set(key, held);
    }
    const pids = fd.role === "master" ? held.masters : held.slaves;
    // A process holds one end in several fds at times; a pty has few holders.
    if (!pids.includes(fd.pid)) pids.push(fd.pid);
  }
  return byKey;
}

/** Container id → host pid of its init: the runtime's (Docker's State.Pid), else a pid-1 holder found in /proc. */
function initPidsByContainer(scan: ProcScan, containers: ReadonlyMap<string, RuntimeContainer>): Map<string, number> {
  const inits = new Map<string, number>();
  for (const info of scan.processes.values()) {
    if (info.containerId && isNamespaceInit(info)) inits.set(info.containerId, info.pid);
  }
  for (const container of containers.values()) if (container.initPid !== null && container.initPid > 0) inits.set(container.id, container.initPid);
  return inits;
}

/**
 * pid → container, per process: its cgroup when the parser recognised it; otherwise the runtimes' answer,
 * i.e. the process is, or descends from, a running exec's process or a container's init (Docker's cgroupfs
 * driver, --cgroup-parent). A host process descends from neither, so it stays null.
 */
function processContainers(
  scan: ProcScan,
  containers: ReadonlyMap<string, RuntimeContainer>,
  execs: readonly ListedExec[],
): (pid: number) => string | null {
  const anchors = new Map<number, string>();
  for (const container of containers.values()) if (container.initPid !== null && container.initPid > 0) anchors.set(container.initPid, container.id);
  for (const { exec } of execs) if (exec.pid > 0 && exec.running) anchors.set(exec.pid, exec.container.id);
  const parentOf = (pid: number): number | undefined => scan.ppids.get(pid);
  const isAnchor = (pid: number): boolean => anchors.has(pid);
  // No memo: a build asks this about nearly every holder once, and a map of them all lived through the build.
  return (pid) => {
    let found: string | null = scan.processes.get(pid)?.containerId ?? null;
    // Only where the cgroup said nothing: a process whose cgroup names a container stays there.
    if (found === null) {
      const at = findAncestor(pid, pidItself, parentOf, isAnchor);
      const anchor = at === undefined ? undefined : anchors.get(at);
      if (at !== undefined && anchor !== undefined) {
        const own: string | null = scan.processes.get(at)?.containerId ?? null;
        if (own === null || own === anchor) found = anchor;
      }
    }
    return found;
  };
}

function pidItself(pid: number): number {
  return pid;
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
function execOwnPtys(scan: ProcScan, execs: readonly ListedExec[], containerOf: (pid: number) => string | null): Map<string, ListedExec> {
  // Only the execs' processes' slaves: every other holder's would be gathered for nothing.
  const slavesByPid = new Map<number, { fd: number; key: string; index: number }[]>();
  for (const { exec } of execs) if (isSessionCandidate(exec)) slavesByPid.set(exec.pid, []);
  for (let i = 0; i < scan.ptyFds.length; i++) {
    const fd = scan.ptyFds[i] as ProcScan["ptyFds"][number];
    const list = fd.role === "slave" ? slavesByPid.get(fd.pid) : undefined;
    list?.push({ fd: fd.fd, key: ptyKey(fd.devptsDev, fd.index), index: fd.index });
  }
  const claims = new Map<string, ListedExec[]>();
  for (const listed of execs) {
    const { exec } = listed;
    if (!isSessionCandidate(exec)) continue;
    const info = scan.processes.get(exec.pid);
    if (!info || containerOf(exec.pid) !== exec.container.id) continue;
    const keys = ownPtyKeys(slavesByPid.get(exec.pid) ?? [], ttyNrSlaveIndex(info.ttyNr));
    if (keys.size !== 1) continue;
    const key = [...keys][0] as string;
    claims.set(key, [...(claims.get(key) ?? []), listed]);
  }
  const own = new Map<string, ListedExec>();
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

/** Slave holders in more than one container (or host and a container). */
const SEVERAL: unique symbol = Symbol("several containers");

/**
 * The container of a pty's slave holders: a container id, null (the host), SEVERAL, or undefined when the pty has
 * no slave holder.
 */
type HolderContainer = string | null | typeof SEVERAL | undefined;

/** The one container all slave holders are in (none: the devpts instance's container); null when several. */
function soleContainer(holderContainer: HolderContainer, byDevpts: string | undefined): string | null {
  if (holderContainer === undefined) return byDevpts ?? null;
  return holderContainer === SEVERAL ? null : holderContainer;
}

/** `readSlaves`: how many slave holders were read; `onHost`: whether a process was read and runs in no container by its cgroup. */
function classify(
  held: Holders,
  readSlaves: number,
  holderContainer: HolderContainer,
  containerId: string | null,
  initPid: number | undefined,
  exec: RuntimeExec | null,
  onHost: (pid: number) => boolean,
): PtyOwner {
  if (exec) return "exec";
  if (containerId !== null) {
    if (holderContainer !== undefined && holderContainer !== SEVERAL && initPid !== undefined && held.slaves.includes(initPid)) return "container";
    return "unattributed";
  }
  // Host only when every holder was read and none runs in a container (by cgroup or by the runtimes' pids).
  const everyHolderOnHost = held.masters.every(onHost) && held.slaves.every(onHost) && (holderContainer === undefined || holderContainer === null);
  if (held.masters.length + held.slaves.length > 0 && everyHolderOnHost && readSlaves === held.slaves.length) return "host";
  return "unattributed";
}

export function explainDiscrepancy(scan: ProcScan, found: number, allocated: number): Inventory["discrepancy"] {
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

function byNumber(a: number, b: number): number {
  return a - b;
}

function leadsItsSession(info: ProcInfo): boolean {
  return info.sid === info.pid;
}
