// Composition root: builds every part from the config and wires them; no I/O of its own.
import type { Logger } from "pino";
import type { FastifyInstance } from "fastify";
import type { Config } from "./config/types.js";
import { DockerCache } from "./docker/cache.js";
import { DockerodePort } from "./docker/dockerode.js";
import type { DockerPort } from "./docker/port.js";
import { sessionsReport } from "./cli/render.js";
import { buildServer, listen } from "./http/server.js";
import type { WebConfig, WebConfigReloader } from "./http/webconfig.js";
import { PtyreaperMetrics } from "./metrics/metrics.js";
import { collect } from "./poller/collect.js";
import { Poller, type PollerSettings } from "./poller/poller.js";
import { ProcFs } from "./procfs/procfs.js";
import { scanProc, type ScanOptions } from "./procfs/scan.js";
import type { ProcScan } from "./domain/types.js";
import { Reaper, type SendSignal } from "./reaper/reaper.js";
import type { Snapshot } from "./domain/snapshot.js";

/** systemd's notify protocol as the daemon uses it; a no-op outside systemd. */
export interface LifecycleNotifier {
  ready(status?: string): void;
  watchdog(): void;
  stopping(): void;
  status(text: string): void;
  /** Half of systemd's WatchdogSec when the watchdog is on: the loop must ping at least this often. */
  readonly watchdogIntervalMs?: number | null;
}

/** Runs scans somewhere (a worker thread in the daemon); close() frees it. */
export interface Scanner {
  scan(options: ScanOptions & { ptyAllocated: number }): ProcScan | Promise<ProcScan>;
  close(): Promise<void>;
}

export interface DaemonDeps {
  config: Config;
  logger: Logger;
  version: string;
  now?: () => number;
  sendSignal?: SendSignal;
  notifier?: LifecycleNotifier;
  /** Defaults to an in-process scan. */
  scanner?: Scanner;
  /** Tests may inject a Docker port; by default dockerode on config.docker.socket. */
  dockerPort?: DockerPort;
  /** TLS and basic auth, read from config.webConfigFile by the caller, and what notices its changes. */
  web?: WebConfig;
  webReload?: WebConfigReloader;
}

export interface Daemon {
  readonly metrics: PtyreaperMetrics;
  readonly poller: Poller;
  readonly server: FastifyInstance;
  /** Listens, starts the Docker events stream and the loop; returns the listen address. */
  start(): Promise<string>;
  stop(): Promise<void>;
  /** One cycle without the loop or the HTTP listener (`run --once`). */
  runOnce(): Promise<Snapshot | null>;
  /** Applies a new config's policy, reaper and log settings; the rest needs a restart (logged). */
  reload(config: Config): void;
}

/** How long one /metrics text may be served again under a burst of scrapes. */
const METRICS_REUSE_MS = 1_000;

function pollerSettings(config: Config): PollerSettings {
  return {
    intervalMs: config.pollInterval,
    policy: config.policy,
    maxPerCycle: config.reaper.maxPerCycle,
    dockerEnabled: config.docker.enabled,
  };
}

export function inProcessScanner(procfs: ProcFs): Scanner {
  return { scan: (options) => scanProc(procfs, options), close: () => Promise.resolve() };
}

export function createDaemon(deps: DaemonDeps): Daemon {
  let config = deps.config;
  const { logger } = deps;
  // pino children keep the level they were made with: keep them to apply a reloaded log.level.
  const children: Logger[] = [];
  const child = (component: string): Logger => {
    const made = logger.child({ component });
    children.push(made);
    return made;
  };
  const now = deps.now ?? Date.now;
  const procfs = new ProcFs(config.procRoot);
  const scanner = deps.scanner ?? inProcessScanner(procfs);
  const metrics = new PtyreaperMetrics({ version: deps.version });
  const dockerPort = config.docker.enabled ? (deps.dockerPort ?? new DockerodePort(config.docker.socket, config.docker.timeout)) : null;
  const dockerCache = dockerPort
    ? new DockerCache({
        port: dockerPort,
        logger: child("docker"),
        maxBackoffMs: Math.min(config.pollInterval, 10_000),
        livenessMs: config.pollInterval,
        now,
      })
    : null;
  const reaper = new Reaper({
    procfs,
    docker: dockerPort,
    sendSignal: deps.sendSignal ?? ((pid, signal) => process.kill(pid, signal)),
    metrics,
    logger: child("reaper"),
    now,
    mode: config.reaper.mode,
    graceMs: config.reaper.grace,
  });
  let readySent = false;
  const poller = new Poller({
    collect: () => collect({ procfs, scan: (options) => scanner.scan(options), docker: dockerCache }),
    reaper,
    metrics,
    logger: child("poller"),
    now,
    settings: pollerSettings(config),
    onCycle: () => {
      deps.notifier?.watchdog();
      if (!readySent && poller.readiness().ok) {
        readySent = true;
        deps.notifier?.ready("first cycle complete");
      }
    },
  });
  // A scrape storm must not rebuild and re-serialize the report per request: once per snapshot.
  let serialized: { snapshot: Snapshot; json: string } | null = null;
  const sessionsJson = (snapshot: Snapshot | null): string | null => {
    if (snapshot === null) return null;
    if (serialized?.snapshot !== snapshot) {
      serialized = { snapshot, json: JSON.stringify(sessionsReport(snapshot.inventory, snapshot.docker, snapshot.takenAtMs, snapshot.decisions)) };
    }
    return serialized.json;
  };
  // The same for /metrics: a text made less than a second ago, for the same snapshot, is served again
  // (concurrent scrapes share one). Prometheus scrapes every few seconds and always gets a fresh one.
  let exposed: { snapshot: Snapshot | null; atMs: number; text: Promise<{ contentType: string; body: string }> } | null = null;
  const exposition = (): Promise<{ contentType: string; body: string }> => {
    const at = performance.now();
    if (exposed === null || exposed.snapshot !== poller.lastSnapshot || at - exposed.atMs >= METRICS_REUSE_MS) {
      const made = { snapshot: poller.lastSnapshot, atMs: at, text: metrics.exposition() };
      made.text.catch(() => {
        if (exposed === made) exposed = null;
      });
      exposed = made;
    }
    return exposed.text;
  };
  const server = buildServer({
    exposition,
    sessions: () => sessionsJson(poller.lastSnapshot),
    liveness: () => poller.liveness(),
    readiness: () => poller.readiness(),
    logger: child("http"),
    web: deps.web,
    webReload: deps.webReload,
  });

  return {
    metrics,
    poller,
    server,
    async start() {
      const address = await listen(server, config.listen.host, config.listen.port);
      if (dockerCache) void dockerCache.start();
      poller.start();
      logger.info({ address, mode: config.reaper.mode, pollInterval: config.pollInterval }, "ptyreaper started");
      const watchdogMs = deps.notifier?.watchdogIntervalMs;
      if (watchdogMs && config.pollInterval > watchdogMs) {
        // The loop pings the watchdog once per cycle, so systemd would kill a healthy daemon.
        logger.warn({ pollInterval: config.pollInterval, watchdogSec: (2 * watchdogMs) / 1000 }, "pollInterval is longer than half of WatchdogSec: raise WatchdogSec in the unit");
      }
      return address;
    },
    async stop() {
      deps.notifier?.stopping();
      reaper.stop();
      await poller.stop();
      dockerCache?.stop();
      await server.close();
      await scanner.close();
      logger.info("ptyreaper stopped");
    },
    runOnce: async () => {
      const snapshot = await poller.runOnce();
      return snapshot;
    },
    reload(next: Config) {
      const needsRestart = (["listen", "procRoot", "docker", "webConfigFile"] as const).filter((key) => JSON.stringify(next[key]) !== JSON.stringify(config[key]));
      if (needsRestart.length > 0) logger.warn({ keys: needsRestart }, "config reload: these keys need a restart to take effect");
      config = next;
      poller.reconfigure(pollerSettings(next));
      reaper.configure(next.reaper.mode, next.reaper.grace);
      logger.level = next.log.level;
      for (const made of children) made.level = next.log.level;
      logger.info({ mode: next.reaper.mode }, "config reloaded");
    },
  };
}
