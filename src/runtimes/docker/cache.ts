// Keeps containers and execs current from the events stream, so a steady cycle makes no API calls.
import type { Logger } from "pino";
import { errorMessage } from "../../errors.js";
import type { ContainerInfo, DockerEvent, DockerEngine, EventStream, ExecInfo } from "./engine.js";

/** The cache logs only connection changes; a one-shot command passes a silent one without pino. */
export type CacheLogger = Pick<Logger, "info" | "warn">;

export interface DockerCacheOptions {
  engine: DockerEngine;
  logger: CacheLogger;
  /** First reconnect delay; doubles up to maxBackoffMs. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /**
   * A quiet cycle pings the engine when nothing (no answer, no event) came from it for this long:
   * a hung dockerd keeps its events stream open and silent, and only a call shows it. Default 10 s.
   */
  livenessMs?: number;
  now?: () => number;
}

/** One cycle's running containers and their running execs, as the engine told them; empty while it does not answer. */
export interface DockerRefresh {
  available: boolean;
  error: string | null;
  containers: ContainerInfo[];
  execs: ExecInfo[];
  /** API requests this refresh made (0 in a steady state with no events). */
  apiCalls: number;
}

/**
 * Docker emits exec_start before the process runs: inspected in between, an exec has Pid 0 and says
 * Running false (as when just created) or already true. No later event brings the pid, so an exec
 * without one is inspected again each cycle; only an exec that had a pid and stopped has ended.
 */
function hasEnded(exec: ExecInfo): boolean {
  return !exec.running && exec.pid > 0;
}

function isStarting(exec: ExecInfo): boolean {
  return exec.pid === 0;
}

const CONTAINER_ACTIONS_THAT_CHANGE = new Set(["start", "restart", "unpause", "pause", "die", "stop", "kill", "destroy", "rename", "update", "oom"]);

export class DockerCache {
  private readonly engine: DockerEngine;
  private readonly logger: CacheLogger;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly livenessMs: number;
  private readonly now: () => number;
  /** When the engine last answered a call or sent an event. */
  private lastHeardMs = -Infinity;

  private containers = new Map<string, ContainerInfo>();
  /** Execs by id; ended ones are kept so they are never inspected again. */
  private execs = new Map<string, ExecInfo>();
  private dirtyContainers = new Set<string>();
  private dirtyExecs = new Set<string>();
  private needsFullSync = true;

  private stream: EventStream | null = null;
  private streamUp = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private backoffMs: number;
  private stopped = true;
  private lastError: string | null = "not connected yet";
  private connecting: Promise<void> | null = null;

  constructor(options: DockerCacheOptions) {
    this.engine = options.engine;
    this.logger = options.logger;
    this.minBackoffMs = options.minBackoffMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 10_000;
    this.livenessMs = options.livenessMs ?? 10_000;
    this.now = options.now ?? Date.now;
    this.backoffMs = this.minBackoffMs;
  }

  /** Opens the events stream (and keeps reopening it with backoff). */
  start(): Promise<void> {
    this.stopped = false;
    return this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.stream?.close();
    this.stream = null;
    this.streamUp = false;
  }

  get eventsConnected(): boolean {
    return this.streamUp;
  }

  /** A view for this cycle: incremental when the stream is up, else a full resync; never throws. */
  async refresh(): Promise<DockerRefresh> {
    const counter = { calls: 0 };
    // Reconnect in the background: this cycle resyncs fully instead of waiting for the stream.
    if (!this.stopped && !this.streamUp && !this.reconnectTimer) void this.connect();
    try {
      if (this.needsFullSync || !this.streamUp) {
        await this.fullSync(counter);
      } else {
        if (this.now() - this.lastHeardMs >= this.livenessMs) {
          counter.calls++;
          await this.engine.ping();
        }
        await this.applyDirty(counter);
      }
      if (counter.calls > 0) this.lastHeardMs = this.now();
      this.lastError = null;
      return this.view(true, null, counter.calls);
    } catch (err) {
      this.needsFullSync = true;
      this.lastError = errorMessage(err);
      // The engine failed a call: its events stream cannot be trusted either (a hung dockerd keeps it open).
      if (this.streamUp) this.dropStream();
      return this.view(false, this.lastError, counter.calls);
    }
  }

  private dropStream(): void {
    this.stream?.close();
    this.stream = null;
    this.streamUp = false;
  }

  private view(available: boolean, error: string | null, apiCalls: number): DockerRefresh {
    if (!available) return { available, error, containers: [], execs: [], apiCalls };
    const containers = [...this.containers.values()];
    const running = new Set(containers.map((c) => c.id));
    const execs = [...this.execs.values()].filter((e) => e.running && running.has(e.containerId));
    return { available, error, containers, execs, apiCalls };
  }

  private async fullSync(counter: { calls: number }): Promise<void> {
    counter.calls++;
    const ids = await this.engine.listRunningContainerIds();
    const containers = new Map<string, ContainerInfo>();
    for (const id of ids) {
      counter.calls++;
      const info = await this.engine.inspectContainer(id);
      if (info) containers.set(id, info);
    }
    const execs = new Map<string, ExecInfo>();
    for (const container of containers.values()) {
      for (const execId of container.execIds) {
        const known = this.execs.get(execId);
        if (known && hasEnded(known)) {
          execs.set(execId, known);
          continue;
        }
        counter.calls++;
        const exec = await this.engine.inspectExec(execId);
        if (exec) execs.set(execId, exec);
      }
    }
    this.containers = containers;
    this.execs = execs;
    this.dirtyContainers.clear();
    this.dirtyExecs.clear();
    this.needsFullSync = false;
  }

  private async applyDirty(counter: { calls: number }): Promise<void> {
    const containerIds = [...this.dirtyContainers];
    this.dirtyContainers.clear();
    for (const id of containerIds) {
      counter.calls++;
      const info = await this.engine.inspectContainer(id);
      if (!info) {
        this.containers.delete(id);
        for (const [execId, exec] of this.execs) if (exec.containerId === id) this.execs.delete(execId);
        continue;
      }
      this.containers.set(id, info);
      for (const execId of info.execIds) if (!this.execs.has(execId)) this.dirtyExecs.add(execId);
      // Docker forgets finished execs after a while; so do we.
      const listed = new Set(info.execIds);
      for (const [execId, exec] of this.execs) if (exec.containerId === id && !listed.has(execId)) this.execs.delete(execId);
    }
    for (const [execId, exec] of this.execs) if (isStarting(exec)) this.dirtyExecs.add(execId);
    const execIds = [...this.dirtyExecs];
    this.dirtyExecs.clear();
    for (const id of execIds) {
      counter.calls++;
      const exec = await this.engine.inspectExec(id);
      if (exec) this.execs.set(id, exec);
      else this.execs.delete(id);
    }
  }

  /** Exported for tests: how one event marks the cache. */
  handleEvent(event: DockerEvent): void {
    this.lastHeardMs = this.now();
    if (event.action.startsWith("exec_")) {
      if (event.execId) this.dirtyExecs.add(event.execId);
      // exec_create may not name the exec: the container's ExecIDs will.
      if (event.action === "exec_create" || !event.execId) this.dirtyContainers.add(event.containerId);
      return;
    }
    if (CONTAINER_ACTIONS_THAT_CHANGE.has(event.action)) this.dirtyContainers.add(event.containerId);
  }

  private connect(): Promise<void> {
    if (this.connecting) return this.connecting;
    this.connecting = (async () => {
      try {
        this.stream = await this.engine.subscribeEvents({
          onEvent: (event) => this.handleEvent(event),
          onClose: (err) => this.onStreamClosed(err),
        });
        this.streamUp = true;
        // Events before the subscription were not seen: resync once.
        this.needsFullSync = true;
        this.backoffMs = this.minBackoffMs;
        this.logger.info({ endpoint: this.engine.endpoint }, "docker events stream connected");
      } catch (err) {
        this.streamUp = false;
        this.lastError = errorMessage(err);
        this.scheduleReconnect();
      } finally {
        this.connecting = null;
      }
    })();
    return this.connecting;
  }

  private onStreamClosed(err: Error | null): void {
    this.streamUp = false;
    this.stream = null;
    this.needsFullSync = true;
    if (this.stopped) return;
    this.logger.warn({ err: err ?? undefined }, "docker events stream closed; reconnecting");
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.maxBackoffMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.connect();
    }, delay);
    this.reconnectTimer.unref();
  }
}
