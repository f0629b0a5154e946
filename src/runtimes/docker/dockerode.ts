// DockerEngine over dockerode, with a timeout on every call so a hung socket cannot stall a poll.
import { createRequire } from "node:module";
import type Docker from "dockerode";
import { DockerUnavailableError, PtyreaperError } from "../../errors.js";
import type { ContainerInfo, DockerEvent, DockerEngine, EventHandlers, EventStream, ExecInfo } from "./engine.js";

// Loaded when the first client is made, so a daemon with Docker disabled never loads it (about 20 MiB resident).
const require = createRequire(import.meta.url);

interface EngineEvent {
  Type?: string;
  Action?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
}

export class DockerodeEngine implements DockerEngine {
  private readonly docker: Docker;
  readonly endpoint: string;

  constructor(
    socketPath: string,
    private readonly timeoutMs: number,
  ) {
    const DockerClient = require("dockerode") as typeof Docker;
    this.docker = new DockerClient({ socketPath });
    this.endpoint = socketPath;
  }

  async ping(): Promise<void> {
    // The typings omit ping's options argument, which dockerode accepts.
    const docker = this.docker as unknown as { ping(options: { abortSignal: AbortSignal }): Promise<unknown> };
    await this.call("ping", (signal) => docker.ping({ abortSignal: signal }));
  }

  async listRunningContainerIds(): Promise<string[]> {
    const list = await this.call("list containers", (signal) => this.docker.listContainers({ abortSignal: signal }));
    return list.map((c) => c.Id);
  }

  async inspectContainer(id: string): Promise<ContainerInfo | null> {
    const data = await this.callOrNull(`inspect container ${id.slice(0, 12)}`, (signal) =>
      this.docker.getContainer(id).inspect({ abortSignal: signal }),
    );
    return data ? containerInfoFrom(data) : null;
  }

  async inspectExec(id: string): Promise<ExecInfo | null> {
    const data = await this.callOrNull(`inspect exec ${id.slice(0, 12)}`, (signal) =>
      this.docker.getExec(id).inspect({ abortSignal: signal } as object),
    );
    return data ? execInfoFrom(data) : null;
  }

  async subscribeEvents(handlers: EventHandlers): Promise<EventStream> {
    const controller = new AbortController();
    const filters = JSON.stringify({ type: ["container"] });
    const stream = await this.call<NodeJS.ReadableStream>("subscribe to events", (deadline) =>
      this.docker.getEvents({ filters, abortSignal: AbortSignal.any([controller.signal, deadline]) }),
    );
    let buffered = "";
    let closed = false;
    const close = (err: Error | null): void => {
      if (closed) return;
      closed = true;
      handlers.onClose(err);
    };
    stream.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("utf8");
      let newline: number;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        const event = line ? parseEvent(line) : null;
        if (event) handlers.onEvent(event);
      }
    });
    stream.on("error", (err: Error) => close(err));
    stream.on("end", () => close(null));
    stream.on("close", () => close(null));
    return {
      close: () => {
        closed = true;
        controller.abort();
      },
    };
  }

  private async callOrNull<T>(what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T | null> {
    try {
      return await this.call(what, fn);
    } catch (err) {
      if ((err as { cause?: { statusCode?: number } }).cause?.statusCode === 404) return null;
      throw err;
    }
  }

  /** Runs one API call with a deadline; any failure becomes a DockerUnavailableError naming the call. */
  private async call<T>(what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort();
        reject(new PtyreaperError("PTYR_DOCKER_TIMEOUT", `docker ${what}: no answer from ${this.endpoint} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
    });
    try {
      return await Promise.race([fn(controller.signal), deadline]);
    } catch (err) {
      if (err instanceof PtyreaperError) throw err;
      throw new DockerUnavailableError(`docker ${what} via ${this.endpoint}: ${describe(err)}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }
}

/** GET /containers/{id}/json as ptyreaper needs it; null when the container is not running. */
export function containerInfoFrom(data: Docker.ContainerInspectInfo): ContainerInfo | null {
  if (!data.State?.Running) return null;
  return {
    id: data.Id,
    name: data.Name.replace(/^\//, ""),
    labels: data.Config?.Labels ?? {},
    pid: data.State.Pid,
    tty: data.Config?.Tty ?? false,
    execIds: data.ExecIDs ?? [],
  };
}

/** GET /exec/{id}/json as ptyreaper needs it (moby's ExecInspect). */
export function execInfoFrom(data: Docker.ExecInspectInfo): ExecInfo {
  return {
    id: data.ID,
    containerId: data.ContainerID,
    running: data.Running,
    pid: data.Pid,
    tty: data.ProcessConfig?.tty ?? false,
    entrypoint: data.ProcessConfig?.entrypoint ?? "",
    arguments: data.ProcessConfig?.arguments ?? [],
  };
}

export function describe(err: unknown): string {
  const e = err as { code?: string; statusCode?: number; message?: string; json?: { message?: string } };
  if (e.code === "ENOENT") return "socket not found (is dockerd running?)";
  if (e.code === "ECONNREFUSED") return "connection refused (is dockerd running?)";
  if (e.code === "EACCES") return "permission denied (run as root or in the docker group)";
  if (e.statusCode) return `HTTP ${e.statusCode}: ${e.json?.message ?? e.message ?? ""}`.trim();
  return e.message ?? String(err);
}

/** One line of the /events stream; exec actions arrive as "exec_start: sh -c ..." and are cut at ":". */
export function parseEvent(line: string): DockerEvent | null {
  let raw: EngineEvent;
  try {
    raw = JSON.parse(line) as EngineEvent;
  } catch {
    return null; // a torn or foreign line: the next full sync repairs anything missed
  }
  if (raw.Type !== "container" || !raw.Action || !raw.Actor?.ID) return null;
  return {
    action: raw.Action.split(":")[0]?.trim() ?? raw.Action,
    containerId: raw.Actor.ID,
    execId: raw.Actor.Attributes?.execID ?? null,
  };
}
