// Docker as a RuntimePort, like containerd's and Podman's adapters, over the Engine client (dockerode) and its event cache.
import { kubernetesRefOf, type ContainerRef, type RuntimeContainer, type RuntimeExec, type RuntimeView } from "../../domain/runtime.js";
import { DockerCache, type DockerCacheOptions } from "./cache.js";
import type { ContainerInfo, DockerEngine, ExecInfo } from "./engine.js";
import type { RuntimePort } from "../port.js";

/** No killExec: the Engine API has no call to signal or stop an exec (moby issue #9098), so its processes are signalled by pid. */
export class DockerRuntime implements RuntimePort {
  readonly runtime = "docker" as const;
  /**
   * dockerd handles an exec's exit after its process is gone: 28 s for a detached exec on this host's Docker 20.10
   * under load (docs/reliability.md). Until then it reports the exec running, so the pty's release decides.
   */
  readonly reportsExitLate = true;

  /** Kept current from the events stream: each cycle reads it, so a steady cycle makes no Engine API call. */
  private readonly cache: DockerCache;

  constructor(
    private readonly engine: DockerEngine,
    cache: Omit<DockerCacheOptions, "engine">,
  ) {
    this.cache = new DockerCache({ ...cache, engine });
  }

  /** Follows the events stream (the daemon; a one-shot command resyncs in full at its one cycle). */
  start(): Promise<void> {
    return this.cache.start();
  }

  /** This cycle's containers and execs, from the cache; unavailable while the engine does not answer. */
  async currentView(): Promise<RuntimeView> {
    const refresh = await this.cache.refresh();
    return {
      runtime: this.runtime,
      available: refresh.available,
      error: refresh.error,
      containers: refresh.containers.map(runtimeContainerOf),
      execs: refresh.execs.map(runtimeExecOf),
      apiCalls: refresh.apiCalls,
    };
  }

  get endpoint(): string {
    return this.engine.endpoint;
  }

  /** The Engine's answer to a ping: the ping is what tells that it is reachable. */
  async version(): Promise<string> {
    await this.engine.ping();
    return "reachable";
  }

  async listContainers(): Promise<RuntimeContainer[]> {
    const containers: RuntimeContainer[] = [];
    for (const id of await this.engine.listRunningContainerIds()) {
      const info = await this.engine.inspectContainer(id);
      if (info) containers.push(runtimeContainerOf(info));
    }
    return containers;
  }

  // The reaper's calls below ask the engine afresh: it acts on their answers.

  async getContainer(ref: ContainerRef): Promise<RuntimeContainer | null> {
    const info = await this.engine.inspectContainer(ref.id);
    return info && info.pid > 0 ? runtimeContainerOf(info) : null;
  }

  async listExecs(ref: ContainerRef): Promise<RuntimeExec[]> {
    const info = await this.engine.inspectContainer(ref.id);
    const execs: RuntimeExec[] = [];
    for (const id of info?.execIds ?? []) {
      const exec = await this.engine.inspectExec(id);
      if (exec) execs.push(runtimeExecOf(exec));
    }
    return execs;
  }

  close(): void {
    this.cache.stop();
  }
}

function runtimeContainerOf(info: ContainerInfo): RuntimeContainer {
  return {
    runtime: "docker",
    namespace: null,
    id: info.id,
    initPid: info.pid > 0 ? info.pid : null,
    labels: info.labels,
    name: info.name,
    kubernetes: kubernetesRefOf(info.labels),
  };
}

/** The command as the engine recorded it: what a `docker exec` client's arguments are paired with. */
function runtimeExecOf(exec: ExecInfo): RuntimeExec {
  return {
    id: exec.id,
    container: { namespace: null, id: exec.containerId },
    pid: exec.pid,
    running: exec.running,
    tty: exec.tty,
    command: [exec.entrypoint, ...exec.arguments],
  };
}
