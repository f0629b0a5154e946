// Which container runtime a pty holder belongs to, from /proc alone: cgroup paths, the master holder and the process tree.
// Pure: the caller reads /proc (cgroup text, comm, argv, NSpid) and passes what it read.
import { findAncestor } from "./ancestry.js";

/** Runtimes whose sessions ptyreaper can name; "unknown" is counted and shown, never reaped. */
export type RuntimeName = "docker" | "containerd" | "cri-o" | "podman";
export type RuntimeGuess = RuntimeName | "unknown";
export const RUNTIME_NAMES: readonly RuntimeName[] = ["docker", "containerd", "cri-o", "podman"];

/** What a cgroup path says about the container a process runs in. */
export interface CgroupIdentity {
  /** The runtime the path form names; "unknown" for a bare id (e.g. cgroupfs kubepods, where any CRI runtime fits). */
  runtime: RuntimeGuess;
  containerId: string;
  /** Kubernetes pod UID with its dashes, when the path has a kubepods pod level. */
  podUid: string | null;
  /** The path is the runtime's monitor cgroup (`crio-conmon-<id>.scope`, `libpod-conmon-<id>.scope`), not the container's. */
  monitor: boolean;
}

const ID = "([0-9a-f]{64})";

// One path segment each; tried against every segment, innermost first. A bare id needs its parent to tell the runtime.
const SEGMENT_FORMS: readonly { pattern: RegExp; runtime: RuntimeGuess; monitor: boolean }[] = [
  { pattern: new RegExp(`^docker-${ID}\\.scope$`), runtime: "docker", monitor: false },
  { pattern: new RegExp(`^cri-containerd-${ID}\\.scope$`), runtime: "containerd", monitor: false },
  { pattern: new RegExp(`^crio-conmon-${ID}\\.scope$`), runtime: "cri-o", monitor: true },
  { pattern: new RegExp(`^crio-${ID}(?:\\.scope)?$`), runtime: "cri-o", monitor: false },
  { pattern: new RegExp(`^libpod-conmon-${ID}\\.scope$`), runtime: "podman", monitor: true },
  { pattern: new RegExp(`^libpod-${ID}(?:\\.scope)?$`), runtime: "podman", monitor: false },
  { pattern: new RegExp(`^${ID}$`), runtime: "unknown", monitor: false },
];

/** A bare `<id>` segment's parent names the runtime: `/docker/<id>` (Docker, cgroupfs) and `/k8s.io/<id>` (containerd CRI, no cgroup parent). */
const BARE_ID_PARENTS: Readonly<Record<string, RuntimeName>> = { docker: "docker", "k8s.io": "containerd" };

// kubepods levels: cgroupfs `pod<uid>`, systemd `kubepods-<qos>-pod<uid with _>.slice` or `kubepods-pod<uid>.slice`.
const POD_CGROUPFS = /^pod([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;
const POD_SYSTEMD = /^kubepods(?:-[a-z]+)?-pod([0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12})\.slice$/;

function podUidOf(segment: string): string | null {
  const cgroupfs = POD_CGROUPFS.exec(segment);
  if (cgroupfs?.[1]) return cgroupfs[1];
  const systemd = POD_SYSTEMD.exec(segment);
  return systemd?.[1] ? systemd[1].replace(/_/g, "-") : null;
}

/** The identity in one cgroup path, or null when it names no container. */
export function parseCgroupPath(path: string): CgroupIdentity | null {
  const segments = path.split("/").filter((segment) => segment !== "");
  for (let i = segments.length - 1; i >= 0; i--) {
    const segment = segments[i] as string;
    for (const form of SEGMENT_FORMS) {
      const match = form.pattern.exec(segment);
      if (!match?.[1]) continue;
      const above = segments.slice(0, i);
      const podUid = above.map(podUidOf).find((uid) => uid !== null) ?? null;
      let runtime = form.runtime;
      if (runtime === "unknown" && podUid === null) {
        const parent = above[above.length - 1];
        runtime = parent !== undefined ? (BARE_ID_PARENTS[parent] ?? "unknown") : "unknown";
        // A bare 64-hex segment under no known parent is too weak to call a container.
        if (runtime === "unknown") return null;
      }
      return { runtime, containerId: match[1], podUid, monitor: form.monitor };
    }
  }
  return null;
}

/**
 * containerd's containers as its API listed them, by namespace: ids any string (`ctr run … myname`), so
 * no pattern can find them in a cgroup path, only an exact match against this list.
 */
export type NamedContainers = ReadonlyMap<string, ReadonlySet<string>>;

/**
 * The container a `/<namespace>/<id>` cgroup path names (containerd's default for `ctr run`, and what
 * nerdctl uses without systemd), when both are exactly a listed namespace and one of its containers.
 * The path must end there: a sub-cgroup, or any other shape, names nothing.
 */
export function namedCgroupContainer(path: string, named: NamedContainers): string | null {
  const segments = path.split("/").filter((segment) => segment !== "");
  if (segments.length < 2) return null;
  const id = segments[segments.length - 1] as string;
  const namespace = segments[segments.length - 2] as string;
  return named.get(namespace)?.has(id) === true ? id : null;
}

/**
 * The identity in /proc/PID/cgroup text (v1 and v2 lines alike). Lines that name a container agree on a
 * host; when they differ the cgroup v2 line wins (it is the one every runtime writes), then file order.
 * Only when no line has a known form, a line naming one of `named` exactly makes it containerd's.
 */
export function parseCgroupIdentity(text: string, named?: NamedContainers): CgroupIdentity | null {
  let found: CgroupIdentity | null = null;
  let byName: CgroupIdentity | null = null;
  for (const line of text.split("\n")) {
    const first = line.indexOf(":");
    const second = line.indexOf(":", first + 1);
    if (first < 0 || second < 0) continue;
    const path = line.slice(second + 1);
    const identity = parseCgroupPath(path);
    if (!identity) {
      const id = named === undefined ? null : namedCgroupContainer(path, named);
      if (id !== null && (byName === null || line.startsWith("0::")))
        byName = { runtime: "containerd", containerId: id, podUid: null, monitor: false };
      continue;
    }
    if (line.startsWith("0::")) return identity;
    found ??= identity;
  }
  return found ?? byName;
}

/**
 * The container a process runs in, from its /proc/PID/cgroup text: the innermost one its path names (a process
 * of a container nested in another belongs to the inner one), the cgroup v2 line first. null for a runtime's
 * monitor (`libpod-conmon-<id>.scope`, `crio-conmon-<id>.scope`): it runs on the host, like the shim.
 */
export function cgroupContainerId(text: string): string | null {
  const identity = parseCgroupIdentity(text);
  return identity === null || identity.monitor ? null : identity.containerId;
}

/** What /proc tells about one process. */
export interface ProcessFacts {
  pid: number;
  ppid: number;
  /** /proc/PID/comm (15 bytes at most). */
  comm: string;
  argv: readonly string[];
  /** /proc/PID/cgroup text. */
  cgroup: string;
  /** The last NSpid value: its pid in its own pid namespace (1 for a container's init). */
  nsPid: number | null;
}

/** A runtime's process that watches over container processes and holds their pty masters. */
export type MonitorKind = "containerd-shim" | "conmon" | "oci-runtime-exec" | "crio";

/** What a process's argv and comm say about it as a runtime monitor. */
export interface MonitorFacts {
  kind: MonitorKind;
  /** The runtime it serves, when its argv says. */
  runtime: RuntimeGuess;
  /** The container it serves (conmon `-c`, runc/crun exec's last argument); null for a shim (one shim may serve several). */
  containerId: string | null;
  /** containerd namespace (shim `-namespace`). */
  namespace: string | null;
  /** Exec ID when the monitor names one (conmon `-u` with `--exec-attach`). */
  execId: string | null;
}

function basename(path: string | undefined): string {
  return path === undefined ? "" : path.slice(path.lastIndexOf("/") + 1);
}

function flagValue(argv: readonly string[], ...flags: string[]): string | null {
  for (let i = 0; i < argv.length - 1; i++) {
    if (flags.includes(argv[i] as string)) return argv[i + 1] as string;
  }
  for (const arg of argv) {
    for (const flag of flags) if (arg.startsWith(`${flag}=`)) return arg.slice(flag.length + 1);
  }
  return null;
}

const OCI_RUNTIMES = new Set(["runc", "crun"]);

/**
 * Whether ptyreaper parses this program's argv (so it is read whole, up to 4 KB, not only its head): the
 * runtime monitors monitorOf reads, and the docker CLI (runtimes/docker/cli-args.ts). By comm or argv[0].
 */
export function argvIsParsed(comm: string, argv0: string | undefined): boolean {
  // No array of the two: the scan thread asks this of every holder it reads, every pass.
  return isParsedProgram(basename(argv0)) || isParsedProgram(comm);
}

function isParsedProgram(name: string): boolean {
  return name.startsWith("containerd-shim") || name === "conmon" || name === "crio" || OCI_RUNTIMES.has(name) || name === "docker";
}

/** The process as a runtime monitor, or null when it is none. */
export function monitorOf(process: Pick<ProcessFacts, "comm" | "argv">): MonitorFacts | null {
  const program = basename(process.argv[0]) || process.comm;
  if (program.startsWith("containerd-shim") || process.comm.startsWith("containerd-shim")) {
    const namespace = flagValue(process.argv, "-namespace", "--namespace");
    // Docker runs its containers in containerd namespace `moby`; any other namespace is containerd's own (k8s.io: CRI).
    const runtime: RuntimeGuess = namespace === null ? "unknown" : namespace === "moby" ? "docker" : "containerd";
    return { kind: "containerd-shim", runtime, containerId: null, namespace, execId: null };
  }
  if (program === "conmon" || process.comm === "conmon") {
    const exitCommand = flagValue(process.argv, "--exit-command");
    const exitDir = flagValue(process.argv, "--exit-dir") ?? "";
    const runtime: RuntimeGuess =
      basename(exitCommand ?? undefined) === "podman"
        ? "podman"
        : exitDir.includes("/crio/") || process.argv.includes("--socket-dir-path")
          ? "cri-o"
          : "unknown";
    const execAttach = process.argv.includes("--exec-attach") || process.argv.includes("-e") || process.argv.includes("--exec");
    return {
      kind: "conmon",
      runtime,
      containerId: flagValue(process.argv, "-c", "--cid"),
      namespace: null,
      execId: execAttach ? flagValue(process.argv, "-u", "--cuuid") : null,
    };
  }
  if ((OCI_RUNTIMES.has(program) || OCI_RUNTIMES.has(process.comm)) && process.argv.includes("exec")) {
    const last = process.argv[process.argv.length - 1];
    // The runtime is told by the parent (crio): runc/crun alone say nothing about who runs them.
    return {
      kind: "oci-runtime-exec",
      runtime: "unknown",
      containerId: last && /^[0-9a-f]{64}$/.test(last) ? last : null,
      namespace: null,
      execId: null,
    };
  }
  if (program === "crio" || process.comm === "crio") return { kind: "crio", runtime: "cri-o", containerId: null, namespace: null, execId: null };
  return null;
}

/** A pty holder attributed: which runtime, container and pod, and which process stands for the session. */
export interface Attribution {
  runtime: RuntimeGuess;
  containerId: string | null;
  podUid: string | null;
  /** containerd namespace, when a shim names it. */
  namespace: string | null;
  /** "exec": started by the runtime's exec; "main": the container's init or its descendants; "unknown": not told. */
  role: "exec" | "main" | "unknown";
  /** The process that is the session: the exec'd process (a direct child of the monitor), or for CRI-O the runc/crun exec itself. */
  sessionPid: number | null;
  /** Exec ID when the monitor names it (Podman). */
  execId: string | null;
  /** Why, in words a person can read; the first line that disagrees makes the runtime "unknown". */
  evidence: string[];
}

function pidOf(process: Pick<ProcessFacts, "pid">): number {
  return process.pid;
}

const UNKNOWN: Omit<Attribution, "evidence"> = {
  runtime: "unknown",
  containerId: null,
  podUid: null,
  namespace: null,
  role: "unknown",
  sessionPid: null,
  execId: null,
};

/**
 * Attributes `holder` (a process holding a pty end) from its cgroup, its ancestors up to the runtime's
 * monitor, and the holder of the pty's master. Disagreement between these makes the runtime "unknown",
 * which is shown but never reaped. `knownInits` are the host pids of container inits as the runtimes
 * record them: a shim's child is an exec only when it is known not to be one of them (a container that
 * shares its pod's pid namespace, or the host's, has an init that is not pid 1 inside). `named`: containerd's
 * listed containers, for cgroup paths no pattern reads (see namedCgroupContainer).
 */
export function attribute(
  holder: ProcessFacts,
  master: Pick<ProcessFacts, "pid" | "comm" | "argv"> | null,
  lookup: (pid: number) => ProcessFacts | undefined,
  knownInits?: ReadonlySet<number>,
  named?: NamedContainers,
): Attribution {
  const evidence: string[] = [];
  const cgroup = parseCgroupIdentity(holder.cgroup, named);
  if (cgroup) evidence.push(`cgroup names ${cgroup.runtime} container ${cgroup.containerId.slice(0, 12)}`);

  // Walk up to the first ancestor that is a runtime monitor; the process just below it is the session.
  let below: ProcessFacts = holder;
  let monitorProcess: ProcessFacts | undefined;
  let monitor: MonitorFacts | null = monitorOf(holder);
  if (monitor?.kind === "oci-runtime-exec") {
    monitorProcess = holder; // CRI-O's host pty: its slave is held by runc/crun exec itself
  } else {
    // crio never is the monitor: CRI-O's runc/crun exec is, found above.
    const parentOf = (node: ProcessFacts): ProcessFacts | undefined => lookup(node.ppid);
    const monitorAbove = (node: ProcessFacts): MonitorFacts | null => {
      const parent = parentOf(node);
      const found = parent && parent.pid !== node.pid ? monitorOf(parent) : null;
      return found?.kind === "crio" ? null : found;
    };
    const session = findAncestor(holder, pidOf, parentOf, (node) => monitorAbove(node) !== null);
    monitor = session ? monitorAbove(session) : null;
    if (session) {
      below = session;
      monitorProcess = parentOf(session);
    }
  }
  if (!monitor || !monitorProcess) {
    evidence.push("no runtime monitor among its ancestors");
    return { ...UNKNOWN, containerId: cgroup?.containerId ?? null, podUid: cgroup?.podUid ?? null, evidence };
  }

  let runtime: RuntimeGuess = monitor.runtime;
  let sessionPid = below.pid;
  let role: Attribution["role"] = "unknown";
  switch (monitor.kind) {
    case "containerd-shim":
      evidence.push(`parent ${monitorProcess.pid} is a containerd shim (namespace ${monitor.namespace ?? "not given"})`);
      if (knownInits?.has(below.pid) || below.nsPid === 1) {
        role = "main";
      } else if (knownInits) {
        role = "exec";
      } else {
        evidence.push("no runtime record of the container's init: exec or main process not told");
      }
      break;
    case "conmon":
      evidence.push(`parent ${monitorProcess.pid} is conmon${monitor.execId ? ` of exec ${monitor.execId.slice(0, 12)}` : ""}`);
      role = monitor.execId ? "exec" : "main";
      break;
    case "oci-runtime-exec": {
      const grandparent = lookup(monitorProcess.ppid);
      const crio = grandparent && monitorOf(grandparent)?.kind === "crio";
      evidence.push(
        crio
          ? `${monitorProcess.pid} is ${basename(monitorProcess.argv[0])} exec run by crio`
          : `${monitorProcess.pid} is an OCI runtime exec not run by crio`,
      );
      runtime = crio ? "cri-o" : "unknown";
      role = "exec";
      sessionPid = monitorProcess.pid; // both of CRI-O's ptys go with the runc/crun exec
      break;
    }
    case "crio":
      break; // excluded by the walk
  }

  // The master's holder must be the monitor (or crio, for CRI-O's host pty); anything else is not this runtime's pty.
  if (master) {
    const masterMonitor = monitorOf(master);
    const expected = monitor.kind === "oci-runtime-exec" ? ["oci-runtime-exec", "crio"] : [monitor.kind];
    if (!masterMonitor || !expected.includes(masterMonitor.kind)) {
      evidence.push(`master held by ${master.comm} (${master.pid}), not by the runtime's monitor`);
      runtime = "unknown";
    } else if (masterMonitor.kind === monitor.kind && master.pid !== monitorProcess.pid) {
      evidence.push(`master held by another ${masterMonitor.kind} (${master.pid})`);
      runtime = "unknown";
    }
  }

  // runc/crun exec holding CRI-O's host pty runs in crio's cgroup, not the container's: its argv names the container.
  const inContainer = monitorProcess === holder ? null : cgroup;
  const containerId = monitor.containerId ?? inContainer?.containerId ?? null;
  if (inContainer && monitor.containerId && inContainer.containerId !== monitor.containerId) {
    evidence.push(`cgroup container ${inContainer.containerId.slice(0, 12)} differs from the monitor's ${monitor.containerId.slice(0, 12)}`);
    runtime = "unknown";
  }
  if (inContainer && inContainer.runtime !== "unknown" && runtime !== "unknown" && inContainer.runtime !== runtime) {
    evidence.push(`cgroup form says ${inContainer.runtime}, the monitor says ${runtime}`);
    runtime = "unknown";
  }
  if (monitorProcess !== holder && !inContainer && runtime !== "unknown") {
    evidence.push("its cgroup names no container");
    runtime = "unknown";
  }
  if (containerId === null) runtime = "unknown";
  return {
    runtime,
    containerId,
    podUid: inContainer?.podUid ?? null,
    namespace: monitor.namespace,
    role,
    sessionPid,
    execId: monitor.execId,
    evidence,
  };
}
