// A DaemonSet's pod, in `docker run` terms: the pure translation the container-image tests run the image with,
// so what they test is what deploy/kubernetes/daemonset.yaml asks of a node, not a hand-written copy of it.
import type { IPodSpec } from "kubernetes-models/v1/PodSpec";

/** Where the pod's non-hostPath volumes are on this machine, and which host paths stand in for others. */
export interface PodFiles {
  /** A directory holding each ConfigMap's files, by ConfigMap name (as the kubelet would project them). */
  configMaps: Readonly<Record<string, string>>;
  /** A directory holding each Secret's files (only the volume's `items`, at their paths), by Secret name. */
  secrets: Readonly<Record<string, string>>;
  /**
   * hostPath → the path used in its place (a test's private runtime instead of the node's). Every entry must
   * match a hostPath of the pod: a substitution that no longer applies is an error, not a silent no-op.
   */
  hostPathSubstitutes?: Readonly<Record<string, string>>;
}

export interface DockerRun {
  /** `docker run` arguments, up to (not including) the image. */
  options: string[];
  /** What follows the image: the container's args. */
  args: string[];
  /** Each hostPath replaced, as `hostPath → substitute (mounted at mountPath)`, for the test to print. */
  substituted: string[];
}

// Pod and container fields with no docker run counterpart that matters to what ptyreaper can see and do.
// Anything else is refused, so a new field in the manifest shows up here instead of being silently dropped.
const IGNORED_POD_FIELDS = new Set(["serviceAccountName", "automountServiceAccountToken", "tolerations", "terminationGracePeriodSeconds"]);
const TRANSLATED_POD_FIELDS = new Set(["hostPID", "hostNetwork", "containers", "volumes"]);
// Probes and ports: the test reaches the listeners itself (with hostNetwork a container port is the host's anyway).
const IGNORED_CONTAINER_FIELDS = new Set(["name", "image", "imagePullPolicy", "ports", "readinessProbe", "livenessProbe"]);
const TRANSLATED_CONTAINER_FIELDS = new Set(["args", "command", "env", "resources", "securityContext", "volumeMounts"]);
const TRANSLATED_SECURITY_FIELDS = new Set([
  "runAsUser",
  "runAsGroup",
  "runAsNonRoot",
  "privileged",
  "allowPrivilegeEscalation",
  "readOnlyRootFilesystem",
  "capabilities",
  "seccompProfile",
]);

function refuseUnknown(object: object, known: ReadonlySet<string>, where: string): void {
  const unknown = Object.keys(object).filter((key) => !known.has(key));
  if (unknown.length > 0) throw new Error(`${where}: no docker run translation for ${unknown.join(", ")}`);
}

/** Kubernetes quantities as docker takes them: memory in bytes, CPU in cores. */
export function memoryBytes(quantity: string): number {
  const m = /^(\d+)(Ki|Mi|Gi|k|M|G)?$/.exec(quantity);
  if (!m) throw new Error(`memory quantity ${quantity}: not understood`);
  const unit = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, k: 1e3, M: 1e6, G: 1e9 }[m[2] ?? ""] ?? 1;
  return Number(m[1]) * unit;
}

export function cpuCores(quantity: string): number {
  const m = /^(\d+(?:\.\d+)?)(m)?$/.exec(quantity);
  if (!m) throw new Error(`cpu quantity ${quantity}: not understood`);
  return m[2] ? Number(m[1]) / 1000 : Number(m[1]);
}

/** The one container of `pod` as `docker run` options and args. Throws on anything it cannot translate faithfully. */
export function dockerRunFromPod(pod: IPodSpec, files: PodFiles): DockerRun {
  refuseUnknown(pod, new Set([...IGNORED_POD_FIELDS, ...TRANSLATED_POD_FIELDS]), "pod spec");
  if (pod.containers.length !== 1) throw new Error(`pod spec: expected one container, got ${pod.containers.length}`);
  const container = pod.containers[0];
  if (!container) throw new Error("pod spec: no container");
  refuseUnknown(container, new Set([...IGNORED_CONTAINER_FIELDS, ...TRANSLATED_CONTAINER_FIELDS]), `container ${container.name}`);
  const options: string[] = [];

  options.push(...(pod.hostPID ? ["--pid=host"] : []));
  // A pod without hostNetwork has a network namespace of its own; "none" is the nearest that needs no bridge.
  options.push("--network", pod.hostNetwork ? "host" : "none");

  const security = container.securityContext ?? {};
  refuseUnknown(security, TRANSLATED_SECURITY_FIELDS, `container ${container.name} securityContext`);
  if (security.privileged) options.push("--privileged");
  if (security.runAsUser !== undefined) options.push("--user", `${security.runAsUser}:${security.runAsGroup ?? security.runAsUser}`);
  if (security.runAsNonRoot && security.runAsUser === 0) throw new Error("securityContext: runAsNonRoot with runAsUser 0 could not start");
  if (security.readOnlyRootFilesystem) options.push("--read-only");
  if (security.allowPrivilegeEscalation === false) options.push("--security-opt", "no-new-privileges");
  for (const cap of security.capabilities?.drop ?? []) options.push("--cap-drop", cap);
  for (const cap of security.capabilities?.add ?? []) options.push("--cap-add", cap);
  const seccomp = security.seccompProfile?.type;
  // RuntimeDefault is Docker's default profile; Unconfined has a flag; Localhost profiles live on a node.
  if (seccomp === "Unconfined") options.push("--security-opt", "seccomp=unconfined");
  else if (seccomp !== undefined && seccomp !== "RuntimeDefault") throw new Error(`seccompProfile ${seccomp}: no docker run translation`);

  for (const variable of container.env ?? []) {
    if (variable.valueFrom !== undefined) throw new Error(`env ${variable.name}: valueFrom has no docker run translation`);
    options.push("-e", `${variable.name}=${variable.value ?? ""}`);
  }
  const limits = container.resources?.limits ?? {};
  if (limits.memory !== undefined) options.push("--memory", `${memoryBytes(String(limits.memory))}b`);
  if (limits.cpu !== undefined) options.push("--cpus", String(cpuCores(String(limits.cpu))));

  const substitutes = new Map(Object.entries(files.hostPathSubstitutes ?? {}));
  const substituted: string[] = [];
  const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
  for (const mount of container.volumeMounts ?? []) {
    const volume = volumes.get(mount.name);
    if (!volume) throw new Error(`volumeMount ${mount.name}: no such volume`);
    if (mount.subPath !== undefined || mount.subPathExpr !== undefined) throw new Error(`volumeMount ${mount.name}: subPath has no translation here`);
    let source: string;
    if (volume.hostPath) {
      const substitute = substitutes.get(volume.hostPath.path);
      source = substitute ?? volume.hostPath.path;
      if (substitute !== undefined) {
        substitutes.delete(volume.hostPath.path);
        substituted.push(`${volume.hostPath.path} → ${substitute} (mounted at ${mount.mountPath})`);
      }
    } else if (volume.configMap) {
      const dir = files.configMaps[volume.configMap.name ?? ""];
      if (dir === undefined) throw new Error(`volume ${volume.name}: no files given for ConfigMap ${volume.configMap.name}`);
      source = dir;
    } else if (volume.secret) {
      const dir = files.secrets[volume.secret.secretName ?? ""];
      if (dir === undefined) throw new Error(`volume ${volume.name}: no files given for Secret ${volume.secret.secretName}`);
      source = dir;
    } else {
      throw new Error(`volume ${volume.name}: only hostPath, configMap and secret volumes are translated`);
    }
    options.push("-v", `${source}:${mount.mountPath}${mount.readOnly ? ":ro" : ""}`);
  }
  if (substitutes.size > 0) throw new Error(`hostPath substitutes match no mounted hostPath: ${[...substitutes.keys()].join(", ")}`);

  if (container.command !== undefined) {
    const [entrypoint, ...rest] = container.command;
    if (entrypoint === undefined) throw new Error("command: empty");
    options.push("--entrypoint", entrypoint);
    return { options, args: [...rest, ...(container.args ?? [])], substituted };
  }
  return { options, args: [...(container.args ?? [])], substituted };
}
