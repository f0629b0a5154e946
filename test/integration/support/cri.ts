// A CRI client for tests, driving containerd as the kubelet does: sandbox, container, and `Exec` with a tty.
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const PROTO = fileURLToPath(new URL("./cri-runtime-v1.proto", import.meta.url));
const CALL_TIMEOUT_MS = 60_000;

/** The labels the kubelet puts on every container (pkg/kubelet/types/labels.go). */
export interface KubernetesIdentity {
  namespace: string;
  pod: string;
  podUid: string;
  container: string;
}

export function kubeletContainerLabels(k: KubernetesIdentity): Record<string, string> {
  return {
    "io.kubernetes.pod.namespace": k.namespace,
    "io.kubernetes.pod.name": k.pod,
    "io.kubernetes.pod.uid": k.podUid,
    "io.kubernetes.container.name": k.container,
  };
}

export interface CriVersion {
  version: string;
  runtime_name: string;
  runtime_version: string;
  runtime_api_version: string;
}

type Unary = (
  request: object,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (err: grpc.ServiceError | null, response?: unknown) => void,
) => void;

interface RuntimeServiceClient extends grpc.Client {
  [method: string]: unknown;
}

/** The CRI RuntimeService on a unix socket. */
export class CriClient {
  private readonly client: RuntimeServiceClient;

  constructor(readonly socket: string) {
    const definition = protoLoader.loadSync(PROTO, { keepCase: true, defaults: true, enums: String, longs: Number });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      runtime: { v1: { RuntimeService: new (address: string, credentials: grpc.ChannelCredentials) => RuntimeServiceClient } };
    };
    this.client = new loaded.runtime.v1.RuntimeService(`unix://${socket}`, grpc.credentials.createInsecure());
  }

  private call<T>(method: string, request: object): Promise<T> {
    const fn = this.client[method] as Unary;
    return new Promise((resolve, reject) => {
      fn.call(this.client, request, new grpc.Metadata(), { deadline: Date.now() + CALL_TIMEOUT_MS }, (err, response) => {
        if (err) reject(new Error(`CRI ${method} on ${this.socket}: ${err.details || err.message}`, { cause: err }));
        else resolve(response as T);
      });
    });
  }

  version(): Promise<CriVersion> {
    return this.call("Version", { version: "v1" });
  }

  /** A pod sandbox on the host network (so no CNI is needed), as a kubelet would for `hostNetwork: true` (no hostname then: the UTS namespace is the host's). */
  async runPodSandbox(k: Pick<KubernetesIdentity, "namespace" | "pod" | "podUid">, cgroupParent = ""): Promise<{ id: string; config: object }> {
    const config = {
      metadata: { name: k.pod, uid: k.podUid, namespace: k.namespace, attempt: 0 },
      labels: { "io.kubernetes.pod.name": k.pod, "io.kubernetes.pod.namespace": k.namespace, "io.kubernetes.pod.uid": k.podUid },
      // A kubelet with the cgroupfs driver passes /kubepods/<qos>/pod<uid>; empty leaves containerd's /k8s.io/<id>.
      linux: { cgroup_parent: cgroupParent, security_context: { namespace_options: { network: "NODE", pid: "CONTAINER", ipc: "POD" } } },
    };
    const { pod_sandbox_id } = await this.call<{ pod_sandbox_id: string }>("RunPodSandbox", { config });
    return { id: pod_sandbox_id, config };
  }

  /** Creates a container in the sandbox with the kubelet's labels; resolves with its id. */
  async createContainer(sandbox: { id: string; config: object }, k: KubernetesIdentity, image: string, command: string[]): Promise<string> {
    const { container_id } = await this.call<{ container_id: string }>("CreateContainer", {
      pod_sandbox_id: sandbox.id,
      config: {
        metadata: { name: k.container, attempt: 0 },
        image: { image },
        command,
        labels: kubeletContainerLabels(k),
        // The kubelet's default (no shareProcessNamespace): the container has a pid namespace of its own.
        linux: { security_context: { namespace_options: { network: "NODE", pid: "CONTAINER", ipc: "POD" } } },
      },
      sandbox_config: sandbox.config,
    });
    return container_id;
  }

  async startContainer(id: string): Promise<void> {
    await this.call("StartContainer", { container_id: id });
  }

  /** `kubectl exec -it`'s request: tty + stdin + stdout; resolves with the single-use streaming URL. */
  async exec(containerId: string, cmd: string[]): Promise<string> {
    const { url } = await this.call<{ url: string }>("Exec", { container_id: containerId, cmd, tty: true, stdin: true, stdout: true, stderr: false });
    return url;
  }

  async stopPodSandbox(id: string): Promise<void> {
    await this.call("StopPodSandbox", { pod_sandbox_id: id });
  }

  async removePodSandbox(id: string): Promise<void> {
    await this.call("RemovePodSandbox", { pod_sandbox_id: id });
  }

  close(): void {
    this.client.close();
  }
}
