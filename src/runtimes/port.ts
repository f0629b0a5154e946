// What every container runtime answers for ptyreaper: its running containers, their exec sessions with pids, and a kill.
// One adapter per runtime implements it (runtimes/containerd, runtimes/podman; Docker keeps docker/port.ts until the wiring).
import type { RuntimeName } from "./attribution.js";

/** Kubernetes identity from the kubelet's labels on the container (no Kubernetes API needed). */
export interface KubernetesRef {
  namespace: string;
  pod: string;
  podUid: string | null;
  container: string;
}

/** A container as a runtime names it. containerd IDs are unique per namespace, so the namespace is part of the name. */
export interface ContainerRef {
  /** containerd namespace (`k8s.io`, `moby`, ...); null for runtimes without namespaces. */
  namespace: string | null;
  id: string;
}

export interface RuntimeContainer extends ContainerRef {
  runtime: RuntimeName;
  /** Host pid of its init (its main process); null when the runtime does not say. */
  initPid: number | null;
  labels: Readonly<Record<string, string>>;
  /** The runtime's name for it (Podman's `Name`); absent when the runtime has none. */
  name?: string;
  /** From `io.kubernetes.*` labels, when the container is a Kubernetes pod's. */
  kubernetes: KubernetesRef | null;
}

/** An exec session as the runtime records it (moby's ExecInspect words). */
export interface RuntimeExec {
  /** The runtime's exec ID (containerd exec ID, Podman exec session ID). */
  id: string;
  container: ContainerRef;
  /** Host pid of the exec'd process; 0 when the runtime reports none. */
  pid: number;
  running: boolean;
  /** Whether it was started with a tty; null when the runtime does not say in this call. */
  tty: boolean | null;
}

export type ExecSignal = "SIGHUP" | "SIGTERM" | "SIGKILL";

/**
 * What a kill through the runtime did: "signalled" (the runtime accepted it), "gone" (no such exec
 * any more), "unsupported" (this runtime or version has no call for it: the caller falls back to
 * signals by pid, with every safety check).
 */
export type KillOutcome = "signalled" | "gone" | "unsupported";

export interface RuntimePort {
  readonly runtime: RuntimeName;
  /** Where it connects, for messages. */
  readonly endpoint: string;
  /** The runtime's version; rejects when it cannot be reached. */
  version(): Promise<string>;
  /** Running containers (in every configured namespace). */
  listContainers(): Promise<RuntimeContainer[]>;
  /** null when the container is gone. */
  getContainer(ref: ContainerRef): Promise<RuntimeContainer | null>;
  /** The container's exec sessions that the runtime still records ([] when the container is gone). */
  listExecs(ref: ContainerRef): Promise<RuntimeExec[]>;
  /** Signals one exec through the runtime. */
  killExec(exec: Pick<RuntimeExec, "id" | "container">, signal: ExecSignal): Promise<KillOutcome>;
  close(): void;
}

/** The kubelet's labels on a container (pkg/kubelet/types/labels.go) → its Kubernetes identity, or null. */
export function kubernetesRefOf(labels: Readonly<Record<string, string>>): KubernetesRef | null {
  const namespace = labels["io.kubernetes.pod.namespace"];
  const pod = labels["io.kubernetes.pod.name"];
  const container = labels["io.kubernetes.container.name"];
  if (!namespace || !pod || !container) return null;
  return { namespace, pod, podUid: labels["io.kubernetes.pod.uid"] || null, container };
}

/** Signal numbers on Linux, as containerd's Kill takes them. */
export const SIGNAL_NUMBERS: Readonly<Record<ExecSignal, number>> = { SIGHUP: 1, SIGKILL: 9, SIGTERM: 15 };
