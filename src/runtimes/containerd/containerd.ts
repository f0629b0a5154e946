// RuntimePort over containerd's gRPC API (unix socket): tasks and their exec pids, container labels, kill by exec ID, events.
// Loads @grpc/grpc-js, so the composition root should import this module only when containerd is enabled.
import { existsSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { RuntimeUnavailableError } from "../../errors.js";
import { missingFileReason, shippedPath } from "../../shipped.js";
import type { RuntimeName } from "../../domain/attribution.js";
import { SIGNAL_NUMBERS, type ExecSignal, type KillOutcome, type RuntimePort } from "../port.js";
import { kubernetesRefOf, type ContainerRef, type RuntimeContainer, type RuntimeExec } from "../../domain/runtime.js";
import { decodeFields, numberField, stringField } from "./wire.js";

// proto/ sits at the package root, shipped by install and the image like dist/ (shipped.ts).
const PROTO_DIR = shippedPath("proto/containerd");
const PROTO_FILES = ["tasks.proto", "containers.proto", "namespaces.proto", "version.proto", "events.proto"];
/** Docker's own containerd keeps its containers in this namespace; see ContainerdOptions.namespaces. */
export const DOCKER_NAMESPACE = "moby";
/** The Any type of an exec's ProcessInfo.info (runc shim v2). */
const PROCESS_DETAILS = "containerd.runc.v1.ProcessDetails";

export interface ContainerdOptions {
  /** containerd's gRPC socket, e.g. /run/containerd/containerd.sock. */
  socket: string;
  /**
   * Namespaces to look in (`k8s.io` for Kubernetes). Docker's `moby` is Docker's adapter's business:
   * listing it here as well would count Docker's sessions twice.
   */
  namespaces: readonly string[];
  /** Deadline of each call. */
  callTimeoutMs?: number;
}

interface ProcessMessage {
  container_id: string;
  id: string;
  pid: number;
  status: "UNKNOWN" | "CREATED" | "RUNNING" | "STOPPED" | "PAUSED" | "PAUSING";
  terminal: boolean;
  exit_status: number;
}

interface AnyMessage {
  type_url: string;
  value: Buffer;
}

/** A containerd task event, reduced to what keeps exec sessions current. */
export interface ContainerdExecEvent {
  topic: "/tasks/exec-started" | "/tasks/exit";
  namespace: string;
  containerId: string;
  /** Exec ID; for /tasks/exit the exited process's ID (the container ID itself when the init exited). */
  execId: string;
  pid: number;
}

export interface ContainerdEventHandlers {
  onEvent(event: ContainerdExecEvent): void;
  /** The stream ended or failed; the caller resubscribes. */
  onClose(err: Error | null): void;
}

type Callback = (err: grpc.ServiceError | null, response?: unknown) => void;
type UnaryMethod = (request: object, metadata: grpc.Metadata, options: grpc.CallOptions, callback: Callback) => grpc.ClientUnaryCall;
type StreamMethod = (request: object, metadata: grpc.Metadata, options: grpc.CallOptions) => grpc.ClientReadableStream<unknown>;
type ServiceClient = grpc.Client & Record<string, unknown>;
type ServiceConstructor = new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => ServiceClient;

function loadServices(): Record<"tasks" | "containers" | "namespaces" | "version" | "events", ServiceConstructor> {
  for (const file of PROTO_FILES) {
    const path = join(PROTO_DIR, file);
    if (!existsSync(path)) throw new Error(`containerd's API description ${missingFileReason(path)}`);
  }
  const definition = protoLoader.loadSync(PROTO_FILES, { includeDirs: [PROTO_DIR], keepCase: true, defaults: true, enums: String, longs: Number });
  const root = grpc.loadPackageDefinition(definition) as unknown as {
    containerd: { services: Record<string, { v1: Record<string, ServiceConstructor> }> };
  };
  const service = (pkg: string, name: string): ServiceConstructor => {
    const found = root.containerd.services[pkg]?.v1[name];
    if (!found) throw new Error(`proto: containerd.services.${pkg}.v1.${name} missing from ${PROTO_DIR}`);
    return found;
  };
  return {
    tasks: service("tasks", "Tasks"),
    containers: service("containers", "Containers"),
    namespaces: service("namespaces", "Namespaces"),
    version: service("version", "Version"),
    events: service("events", "Events"),
  };
}

/** An exec ID that cannot name the task's init: not empty, not blank, not the container's own ID. */
export function isExecId(execId: string, containerId: string): boolean {
  return execId.trim() !== "" && execId === execId.trim() && execId !== containerId;
}

/** The exec ID in a ProcessInfo.info Any, or null for a process that is no exec's (the init, its children). */
export function execIdOfProcessInfo(info: AnyMessage | null | undefined): string | null {
  if (!info?.type_url.endsWith(PROCESS_DETAILS)) return null;
  const execId = stringField(decodeFields(info.value), 1);
  return execId === "" ? null : execId;
}

/** An Envelope's event → ContainerdExecEvent, or null for other topics. TaskExecStarted and TaskExit share fields 1-3. */
export function execEventOf(envelope: { namespace: string; topic: string; event: AnyMessage | null }): ContainerdExecEvent | null {
  if ((envelope.topic !== "/tasks/exec-started" && envelope.topic !== "/tasks/exit") || !envelope.event) return null;
  const fields = decodeFields(envelope.event.value);
  return {
    topic: envelope.topic,
    namespace: envelope.namespace,
    containerId: stringField(fields, 1),
    execId: stringField(fields, 2),
    pid: numberField(fields, 3),
  };
}

export class ContainerdRuntime implements RuntimePort {
  readonly runtime: RuntimeName = "containerd";
  readonly endpoint: string;
  private readonly tasks: ServiceClient;
  private readonly containers: ServiceClient;
  private readonly namespacesClient: ServiceClient;
  private readonly versionClient: ServiceClient;
  private readonly events: ServiceClient;
  private readonly callTimeoutMs: number;

  constructor(private readonly options: ContainerdOptions) {
    this.endpoint = options.socket;
    this.callTimeoutMs = options.callTimeoutMs ?? 5_000;
    const services = loadServices();
    const address = `unix://${options.socket}`;
    const credentials = grpc.credentials.createInsecure();
    this.tasks = new services.tasks(address, credentials);
    // The others share the first client's channel: one connection to containerd.
    const channelOverride = { channelOverride: this.tasks.getChannel() } as grpc.ChannelOptions;
    this.containers = new services.containers(address, credentials, channelOverride);
    this.namespacesClient = new services.namespaces(address, credentials, channelOverride);
    this.versionClient = new services.version(address, credentials, channelOverride);
    this.events = new services.events(address, credentials, channelOverride);
  }

  private call<T>(client: ServiceClient, method: string, namespace: string | null, request: object): Promise<T> {
    const metadata = new grpc.Metadata();
    if (namespace !== null) metadata.set("containerd-namespace", namespace);
    const fn = client[method] as UnaryMethod;
    return new Promise((resolve, reject) => {
      fn.call(client, request, metadata, { deadline: Date.now() + this.callTimeoutMs }, (err, response) => {
        if (err) reject(err);
        else resolve(response as T);
      });
    });
  }

  private unavailable(what: string, err: unknown): RuntimeUnavailableError {
    const detail = (err as grpc.ServiceError).details || (err as Error).message;
    return new RuntimeUnavailableError("containerd", `containerd at ${this.endpoint}: ${what}: ${detail}`, { cause: err });
  }

  async version(): Promise<string> {
    try {
      return (await this.call<{ version: string }>(this.versionClient, "Version", null, {})).version;
    } catch (err) {
      throw this.unavailable("Version", err);
    }
  }

  /** The configured namespaces that exist on this containerd. */
  async existingNamespaces(): Promise<string[]> {
    try {
      const { namespaces } = await this.call<{ namespaces: { name: string }[] }>(this.namespacesClient, "List", null, {});
      const present = new Set(namespaces.map((ns) => ns.name));
      return this.options.namespaces.filter((ns) => present.has(ns));
    } catch (err) {
      throw this.unavailable("Namespaces.List", err);
    }
  }

  async listContainers(): Promise<RuntimeContainer[]> {
    const found: RuntimeContainer[] = [];
    for (const namespace of await this.existingNamespaces()) {
      let tasks: ProcessMessage[];
      try {
        tasks = (await this.call<{ tasks: ProcessMessage[] }>(this.tasks, "List", namespace, {})).tasks;
      } catch (err) {
        throw this.unavailable(`Tasks.List in ${namespace}`, err);
      }
      for (const task of tasks) {
        if (task.status !== "RUNNING") continue;
        // A task is named by `id` (its container ID); `container_id` is left empty in List answers.
        const container = await this.containerOf({ namespace, id: task.id || task.container_id }, task.pid);
        if (container) found.push(container);
      }
    }
    return found;
  }

  async getContainer(ref: ContainerRef): Promise<RuntimeContainer | null> {
    const task = await this.task(ref, "");
    if (!task || task.status !== "RUNNING") return null;
    return this.containerOf(ref, task.pid);
  }

  private async containerOf(ref: ContainerRef, initPid: number): Promise<RuntimeContainer | null> {
    try {
      const { container } = await this.call<{ container: { id: string; labels: Record<string, string> } }>(this.containers, "Get", ref.namespace, {
        id: ref.id,
      });
      return {
        namespace: ref.namespace,
        id: ref.id,
        runtime: "containerd",
        initPid: initPid > 0 ? initPid : null,
        labels: container.labels,
        kubernetes: kubernetesRefOf(container.labels),
      };
    } catch (err) {
      if ((err as grpc.ServiceError).code === grpc.status.NOT_FOUND) return null;
      throw this.unavailable(`Containers.Get ${ref.id}`, err);
    }
  }

  /** Tasks.Get of the init ("" exec ID) or of one exec; null when not found. */
  private async task(ref: ContainerRef, execId: string): Promise<ProcessMessage | null> {
    try {
      return (await this.call<{ process: ProcessMessage }>(this.tasks, "Get", ref.namespace, { container_id: ref.id, exec_id: execId })).process;
    } catch (err) {
      if ((err as grpc.ServiceError).code === grpc.status.NOT_FOUND) return null;
      throw this.unavailable(`Tasks.Get ${ref.id}${execId ? ` exec ${execId}` : ""}`, err);
    }
  }

  async listExecs(ref: ContainerRef): Promise<RuntimeExec[]> {
    let processes: { pid: number; info: AnyMessage | null }[];
    try {
      processes = (
        await this.call<{ processes: { pid: number; info: AnyMessage | null }[] }>(this.tasks, "ListPids", ref.namespace, { container_id: ref.id })
      ).processes;
    } catch (err) {
      if ((err as grpc.ServiceError).code === grpc.status.NOT_FOUND) return [];
      throw this.unavailable(`Tasks.ListPids ${ref.id}`, err);
    }
    const execs: RuntimeExec[] = [];
    for (const process of processes) {
      const execId = execIdOfProcessInfo(process.info);
      if (execId === null) continue;
      const task = await this.task(ref, execId);
      if (!task) continue; // exited and deleted between the two calls
      execs.push({
        id: execId,
        container: { namespace: ref.namespace, id: ref.id },
        pid: task.pid || process.pid,
        running: task.status === "RUNNING",
        tty: task.terminal,
      });
    }
    return execs;
  }

  async killExec(exec: Pick<RuntimeExec, "id" | "container">, signal: ExecSignal): Promise<KillOutcome> {
    // Tasks.Kill with an empty exec_id signals the container's init: never let a missing ID become that.
    if (!isExecId(exec.id, exec.container.id))
      throw new RangeError(`refusing to kill through containerd: ${JSON.stringify(exec.id)} is not an exec ID of ${exec.container.id}`);
    try {
      await this.call(this.tasks, "Kill", exec.container.namespace, {
        container_id: exec.container.id,
        exec_id: exec.id,
        signal: SIGNAL_NUMBERS[signal],
        all: false,
      });
      return "signalled";
    } catch (err) {
      if ((err as grpc.ServiceError).code === grpc.status.NOT_FOUND) return "gone";
      throw this.unavailable(`Tasks.Kill ${exec.container.id} exec ${exec.id}`, err);
    }
  }

  /** Subscribes to exec starts and task exits in the configured namespaces; close() on the result ends it. */
  subscribeExecEvents(handlers: ContainerdEventHandlers): { close(): void } {
    const namespaces = this.options.namespaces.map((ns) => `namespace==${JSON.stringify(ns)}`);
    const filters = ["/tasks/exec-started", "/tasks/exit"].flatMap((topic) => namespaces.map((ns) => `topic==${JSON.stringify(topic)},${ns}`));
    const subscribe = this.events.Subscribe as StreamMethod;
    const stream = subscribe.call(this.events, { filters }, new grpc.Metadata(), {});
    let closed = false;
    stream.on("data", (envelope: { namespace: string; topic: string; event: AnyMessage | null }) => {
      try {
        const event = execEventOf(envelope);
        if (event) handlers.onEvent(event);
      } catch (err) {
        closed = true;
        stream.cancel();
        handlers.onClose(err as Error);
      }
    });
    stream.on("error", (err: grpc.ServiceError) => {
      if (closed) return;
      closed = true;
      handlers.onClose(err.code === grpc.status.CANCELLED ? null : this.unavailable("Events.Subscribe", err));
    });
    stream.on("end", () => {
      if (closed) return;
      closed = true;
      handlers.onClose(null);
    });
    return {
      close: () => {
        closed = true;
        stream.cancel();
      },
    };
  }

  close(): void {
    for (const client of [this.containers, this.namespacesClient, this.versionClient, this.events, this.tasks]) client.close();
  }
}
