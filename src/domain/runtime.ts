// The runtimes' vocabulary, as every adapter answers in it: containers, exec sessions, Kubernetes identity, one runtime's view.
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
  /** The command as the runtime recorded it (Docker's entrypoint and arguments); absent: the process's own command line. */
  command?: readonly string[];
}

/** The kubelet's labels on a container (pkg/kubelet/types/labels.go) → its Kubernetes identity, or null. */
export function kubernetesRefOf(labels: Readonly<Record<string, string>>): KubernetesRef | null {
  const namespace = labels["io.kubernetes.pod.namespace"];
  const pod = labels["io.kubernetes.pod.name"];
  const container = labels["io.kubernetes.container.name"];
  if (!namespace || !pod || !container) return null;
  return { namespace, pod, podUid: labels["io.kubernetes.pod.uid"] || null, container };
}

/** What one runtime answered this cycle; on any failed call nothing of it is used (its sessions are not reaped). */
export interface RuntimeView {
  runtime: RuntimeName;
  available: boolean;
  error: string | null;
  containers: RuntimeContainer[];
  execs: RuntimeExec[];
  /** Requests this look made of the runtime, where its port counts them (Docker's: none in a steady cycle). */
  apiCalls?: number;
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

/** A running exec that may be a session: it has a process, and the runtime did not say it has no tty. */
export function isSessionCandidate(exec: RuntimeExec): boolean {
  return exec.running && exec.pid > 0 && exec.tty !== false;
}
