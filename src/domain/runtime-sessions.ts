// Pure: every runtime's exec sessions confirmed from /proc (Docker's too), in the shape the inventory takes.
// The inventory's identity rules (one session per exec, its own pty, in-container holders) then apply to them unchanged.
import { attribute, parseCgroupIdentity, parseCgroupPath, type NamedContainers, type ProcessFacts, type RuntimeName } from "./attribution.js";
import type { RuntimeContainer, RuntimeExec, RuntimeView } from "./runtime.js";
import { ptyKey, type ContainerInfo, type DockerView, type ExecInfo, type ProcScan, type Pty } from "./types.js";
import { ownPtyKeys, ttyNrSlaveIndex } from "./inventory.js";

/** The containerd namespace Docker runs its containers in: its shims carry `-namespace moby`. */
const DOCKER_NAMESPACE = "moby";

export interface RuntimeExecVerdict {
  exec: RuntimeExec;
  runtime: RuntimeName;
  /** null when /proc agrees with the runtime's record; else why it does not (the exec is then no session). */
  refusal: string | null;
}

export interface MergedView {
  /** Docker's confirmed execs plus the confirmed execs of the other runtimes (each with its runtime) and their containers. */
  view: DockerView;
  /** Container ID → the runtime that runs it (Docker's included). */
  containerRuntimes: Map<string, RuntimeName>;
  verdicts: RuntimeExecVerdict[];
}

/**
 * The name a person knows the container by: Podman's name, else the pod's `namespace/pod/container`, else the
 * short ID; an ID that is not 64-hex (`ctr run … myname`) was chosen by a person, so whole.
 */
export function runtimeContainerName(container: RuntimeContainer): string {
  if (container.name) return container.name;
  const k8s = container.kubernetes;
  if (k8s) return `${k8s.namespace}/${k8s.pod}/${k8s.container}`;
  return /^[0-9a-f]{64}$/.test(container.id) ? container.id.slice(0, 12) : container.id;
}

/**
 * Whether /proc says the same as the runtime about one running exec: its process holds a pty slave on
 * its stdio, the holder of that pty's master is this runtime's monitor, and the attribution names the
 * same runtime, container, exec role and session process (and exec ID where the monitor names one).
 */
export function confirmRuntimeExec(
  exec: RuntimeExec,
  runtime: RuntimeName,
  scan: ProcScan,
  lookup: (pid: number) => ProcessFacts | undefined,
  knownInits: ReadonlySet<number>,
  named?: NamedContainers,
): string | null {
  const holder = lookup(exec.pid);
  if (!holder) return `process ${exec.pid} not readable`;
  // Its own pty by the same rule as Docker's execs: the controlling tty's, stdio only without one.
  const slaves = scan.ptyFds
    .filter((fd) => fd.pid === exec.pid && fd.role === "slave")
    .map((fd) => ({ fd: fd.fd, key: ptyKey(fd.devptsDev, fd.index), index: fd.index }));
  const keys = ownPtyKeys(slaves, ttyNrSlaveIndex(scan.processes.get(exec.pid)?.ttyNr ?? 0));
  if (keys.size !== 1) return `process ${exec.pid} holds ${keys.size} ptys it could own (its controlling tty's, else on its stdio)`;
  const key = [...keys][0] as string;
  const masterPids = new Set(scan.ptyFds.filter((fd) => fd.role === "master" && ptyKey(fd.devptsDev, fd.index) === key).map((fd) => fd.pid));
  if (masterPids.size > 1) return `its pty's master is held by ${masterPids.size} processes`;
  const masterPid = [...masterPids][0];
  const master = masterPid === undefined ? null : (lookup(masterPid) ?? null);
  const found = attribute(holder, master, lookup, knownInits, named);
  const why = found.evidence.join("; ");
  if (found.runtime !== runtime) return `/proc attributes it to ${found.runtime} (${why})`;
  if (found.role !== "exec") return `/proc says it is the container's ${found.role} process (${why})`;
  if (found.sessionPid !== exec.pid) return `/proc names pid ${found.sessionPid ?? "none"} as the session's process`;
  if (found.containerId !== exec.container.id) return `/proc names container ${found.containerId ?? "none"}`;
  if (found.execId !== null && found.execId !== exec.id) return `its monitor names exec ${found.execId}`;
  return null;
}

/**
 * Docker's view with only the running tty execs /proc confirms (a child of a containerd shim in namespace moby
 * that holds its pty's master, not the container's init), plus each other runtime's confirmed running execs
 * (and their containers). A runtime that did not answer adds nothing; an exec /proc does not confirm adds
 * nothing, so its pty is counted but unowned.
 */
export function mergeRuntimeViews(
  docker: DockerView,
  runtimes: readonly RuntimeView[],
  scan: ProcScan,
  lookup: (pid: number) => ProcessFacts | undefined,
): MergedView {
  const containers: ContainerInfo[] = [...docker.containers];
  const verdicts: RuntimeExecVerdict[] = [];
  const knownInits = new Set<number>(docker.containers.map((c) => c.pid).filter((pid) => pid > 0));
  for (const view of runtimes) for (const c of view.containers) if (c.initPid !== null) knownInits.add(c.initPid);
  // Docker's execs pass the same check as every runtime's; one that is no session candidate is kept as it is.
  const execs: ExecInfo[] = docker.execs.filter((exec) => {
    if (!exec.running || exec.pid <= 0 || !exec.tty) return true;
    const asRuntimeExec: RuntimeExec = {
      id: exec.id,
      container: { namespace: DOCKER_NAMESPACE, id: exec.containerId },
      pid: exec.pid,
      running: true,
      tty: true,
    };
    const refusal = confirmRuntimeExec(asRuntimeExec, "docker", scan, lookup, knownInits);
    verdicts.push({ exec: asRuntimeExec, runtime: "docker", refusal });
    return refusal === null;
  });
  const named = namedContainersOf(runtimes);
  const seenContainers = new Set(containers.map((c) => c.id));
  const containerRuntimes = new Map<string, RuntimeName>(containers.map((c) => [c.id, "docker"]));

  for (const view of runtimes) {
    if (!view.available) continue;
    const byId = new Map(view.containers.map((c) => [c.id, c]));
    for (const container of view.containers) {
      if (seenContainers.has(container.id)) continue; // Docker's own, seen through containerd: Docker already has it
      seenContainers.add(container.id);
      containerRuntimes.set(container.id, view.runtime);
      containers.push({
        id: container.id,
        name: runtimeContainerName(container),
        labels: { ...container.labels },
        pid: container.initPid ?? 0,
        tty: false,
        execIds: [],
      });
    }
    for (const exec of view.execs) {
      const container = byId.get(exec.container.id);
      if (!exec.running || exec.pid <= 0 || exec.tty === false || !container) continue;
      if (execs.some((e) => e.id === exec.id)) continue; // never two sessions for one exec
      const refusal = confirmRuntimeExec(exec, view.runtime, scan, lookup, knownInits, named);
      verdicts.push({ exec, runtime: view.runtime, refusal });
      if (refusal !== null) continue;
      const cmdline = scan.processes.get(exec.pid)?.cmdline ?? [];
      execs.push({
        id: exec.id,
        containerId: exec.container.id,
        runtime: view.runtime,
        namespace: container.namespace,
        kubernetes: container.kubernetes,
        running: true,
        pid: exec.pid,
        tty: true,
        entrypoint: cmdline[0] ?? "",
        arguments: cmdline.slice(1),
      });
    }
  }
  return { view: { ...docker, containers, execs }, containerRuntimes, verdicts };
}

/**
 * containerd's listed containers, by namespace, whose `/<namespace>/<id>` cgroup path no pattern reads: ids
 * that are not 64-hex (`ctr run … myname`), or namespaces other than `k8s.io` (nerdctl's `default`).
 */
export function namedContainersOf(runtimes: readonly RuntimeView[]): Map<string, Set<string>> {
  const named = new Map<string, Set<string>>();
  for (const view of runtimes) {
    if (!view.available || view.runtime !== "containerd") continue;
    for (const { namespace, id } of view.containers) {
      if (namespace === null || parseCgroupPath(`/${namespace}/${id}`) !== null) continue;
      const ids = named.get(namespace) ?? new Set<string>();
      ids.add(id);
      named.set(namespace, ids);
    }
  }
  return named;
}

/**
 * Names the container of the processes the inventory goes by (pty holders and the runtimes' exec processes)
 * where no cgroup pattern did and their cgroup path is exactly one of `named` (namedCgroupContainer). Their
 * cgroups are read (through `lookup`) only when there is such a container. Replaces those entries of
 * `scan.processes` with copies.
 */
export function claimNamedContainers(scan: ProcScan, runtimes: readonly RuntimeView[], lookup: (pid: number) => ProcessFacts | undefined): void {
  const named = namedContainersOf(runtimes);
  if (named.size === 0) return;
  const pids = new Set(scan.ptyFds.map((fd) => fd.pid));
  for (const view of runtimes) for (const exec of view.execs) if (exec.pid > 0) pids.add(exec.pid);
  for (const pid of pids) {
    const info = scan.processes.get(pid);
    if (!info || info.containerId !== null) continue;
    const cgroup = lookup(pid)?.cgroup ?? "";
    // Only what the list names: a path of a known form is the patterns' to read, not this.
    if (parseCgroupIdentity(cgroup) !== null) continue;
    const identity = parseCgroupIdentity(cgroup, named);
    if (identity !== null) scan.processes.set(pid, { ...info, containerId: identity.containerId });
  }
}

/** Tags each pty with the runtime of its container, when one is known. */
export function tagPtys(ptys: Pty[], containerRuntimes: ReadonlyMap<string, RuntimeName>): void {
  for (const pty of ptys) pty.runtime = pty.containerId === null ? null : (containerRuntimes.get(pty.containerId) ?? null);
}

/**
 * For ptys no runtime's container claims (CRI-O has no adapter; a runtime may be down): the runtime /proc alone
 * attributes to the slave holder that leads it, so they are shown by runtime. Only shown: no session comes of it.
 */
export function tagPtysFromProc(ptys: Pty[], lookup: (pid: number) => ProcessFacts | undefined): void {
  for (const pty of ptys) {
    if (pty.runtime || pty.owner === "exec") continue;
    const holder = lookup(pty.leaderPid ?? pty.slavePids[0] ?? 0);
    if (!holder) continue;
    const masterPid = pty.masterPids[0];
    const master = pty.masterPids.length === 1 && masterPid !== undefined ? (lookup(masterPid) ?? null) : null;
    const found = attribute(holder, master, lookup);
    if (found.runtime !== "unknown") pty.runtime = found.runtime;
  }
}
