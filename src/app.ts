// Composition root: builds every part from the config and wires them; its only I/O is choosing runtimes by their sockets.
import type { Logger } from "pino";
import type { FastifyInstance } from "fastify";
import type { Config } from "./config/types.js";
import { formatDurationExact } from "./config/duration.js";
import { policySummary } from "./config/summary.js";
import { DockerodeEngine } from "./runtimes/docker/dockerode.js";
import type { DockerEngine } from "./runtimes/docker/engine.js";
import { buildHealthServer, buildServer, listen } from "./http/server.js";
import type { WebConfig, WebConfigReloader } from "./http/webconfig.js";
import { PtyreaperMetrics } from "./metrics/metrics.js";
import { collect } from "./poller/collect.js";
import { InventoryReuse } from "./poller/reuse.js";
import { Poller, type PollerSettings } from "./poller/poller.js";
import type { ScanMode } from "./procfs/incremental.js";
import { ProcFs } from "./procfs/procfs.js";
import { scanProc, type ScanOptions } from "./procfs/scan.js";
import type { ProcScan } from "./domain/types.js";
import { Reaper, type ReaperSettings, type SendSignal } from "./reaper/reaper.js";
import type { Notifier } from "./systemd/notify.js";
import { processTableOf } from "./reaper/identity.js";
import { KillSignaller, PidfdSignaller, loadPidfdAddon, type PidfdFallbackReason, type Signaller } from "./reaper/signaller.js";
import { exemptionOf } from "./domain/policy.js";
import type { Snapshot } from "./domain/snapshot.js";
import { sessionsReport } from "./domain/report.js";
import { dockerClientEvidence } from "./runtimes/docker/client-evidence.js";
import { DockerRuntime } from "./runtimes/docker/docker.js";
import { EvidenceReachReporter, runtimeClientEvidence } from "./runtimes/client-evidence.js";
import { ClientStateStore } from "./runtimes/client-store.js";
import { existsSync } from "node:fs";
import { ConfigError } from "./errors.js";
import { chooseDocker, chooseRuntimes, openRuntimes } from "./runtimes/open.js";
import type { RuntimePort } from "./runtimes/port.js";
import { MasterOnlyTracker } from "./domain/master-only.js";

/** Runs scans somewhere (a worker thread in the daemon); close() frees it. */
export interface Scanner {
  /** `mode`: the pass the answer came from (the daemon's scanners say; absent counts as steady). */
  scan(options: ScanOptions & { ptyAllocated: number }): (ProcScan & { mode?: ScanMode }) | Promise<ProcScan & { mode?: ScanMode }>;
  close(): Promise<void>;
}

export interface DaemonDeps {
  config: Config;
  logger: Logger;
  version: string;
  now?: () => number;
  sendSignal?: SendSignal;
  /** systemd's notify protocol; none outside systemd. */
  notifier?: Notifier;
  /** Defaults to an in-process scan. */
  scanner?: Scanner;
  /** Tests and the bench may inject the Docker Engine client; by default dockerode on config.docker.socket. */
  dockerEngine?: DockerEngine;
  /** Tests may inject the other runtimes' ports; by default chosen from config.runtimes and the sockets present. */
  runtimePorts?: RuntimePort[];
  /** The config file in force, for the startup line and ptyreaper_config_info; null for the defaults. */
  configPath?: string | null;
  /** TLS and basic auth, read from config.webConfigFile by the caller, and what notices its changes. */
  web?: WebConfig;
  webReload?: WebConfigReloader;
}

export interface Daemon {
  readonly metrics: PtyreaperMetrics;
  readonly poller: Poller;
  readonly server: FastifyInstance;
  /** The probes' loopback listener (config http.healthListen), or null. */
  readonly healthServer: FastifyInstance | null;
  /** Listens, starts the Docker events stream and the loop; returns the listen address. */
  start(): Promise<string>;
  stop(): Promise<void>;
  /** One cycle without the loop or the HTTP listener (`run --once`): decision-only, it switches the reaper to dry-run. */
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
  };
}

function reaperSettings(config: Config): ReaperSettings {
  return {
    mode: config.reaper.mode,
    graceMs: config.reaper.grace,
    maxInFlight: config.reaper.maxPerCycle,
    idleIncludesOutput: config.policy.idleIncludesOutput,
  };
}

/**
 * pidfds when the addon is built and the kernel has them; else kill(2) after the start-time check (said once
 * at startup), with why as one of PIDFD_FALLBACK_REASONS for the metric.
 */
function makeSignaller(injected: SendSignal | undefined, logger: Logger): { signaller: Signaller; fallback: PidfdFallbackReason | null } {
  if (injected) return { signaller: new KillSignaller(injected), fallback: null };
  const load = loadPidfdAddon();
  if (load.addon) {
    logger.info({ signalMethod: "pidfd" }, "signals go through pidfds: a pid reused after the identity check cannot be signalled");
    return { signaller: new PidfdSignaller(load.addon), fallback: null };
  }
  logger.warn(
    { signalMethod: "kill", fallback: load.fallback, why: load.reason },
    "pidfds unavailable: signals use kill(2) after a start-time check, which leaves a short PID-reuse window",
  );
  return { signaller: new KillSignaller((pid, signal) => process.kill(pid, signal)), fallback: load.fallback };
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
  const configFile = deps.configPath ?? "";
  // Decided once, at start, like the other runtimes' `auto`: Docker settings need a restart anyway.
  const docker = chooseDocker(config.docker, existsSync);
  if (docker.skipped !== null) logger.info(`runtime not used: ${docker.skipped}`);
  metrics.setRuntimeEnabled("docker", docker.used);
  metrics.configLoaded({ mode: config.reaper.mode, file: configFile }, now());
  const dockerEngine = docker.used ? (deps.dockerEngine ?? new DockerodeEngine(config.docker.socket, config.docker.timeout)) : null;
  const dockerRuntime = dockerEngine
    ? new DockerRuntime(dockerEngine, {
        logger: child("docker"),
        maxBackoffMs: Math.min(config.pollInterval, 10_000),
        livenessMs: config.pollInterval,
        now,
      })
    : null;
  // Other runtimes are opened once, before the first cycle (containerd's gRPC is imported only when chosen).
  let runtimesOpened: Promise<RuntimePort[]> | null = null;
  // The reaper's: every runtime in use, Docker's first (the others join once opened).
  const reaperPorts: RuntimePort[] = dockerRuntime ? [dockerRuntime] : [];
  const openChosenRuntimes = (): Promise<RuntimePort[]> => {
    runtimesOpened ??= (async () => {
      if (deps.runtimePorts) return deps.runtimePorts;
      const choices = chooseRuntimes(config.runtimes, existsSync);
      if (choices.problems.length > 0) throw new ConfigError("runtimes", choices.problems);
      for (const skipped of choices.skipped) logger.info(`runtime not used: ${skipped}`);
      return openRuntimes(config.runtimes, choices.chosen);
    })().then((ports) => {
      reaperPorts.push(...ports);
      for (const port of ports) {
        metrics.setRuntimeEnabled(port.runtime, true);
        logger.info({ runtime: port.runtime, endpoint: port.endpoint }, `runtime ${port.runtime} used`);
      }
      return ports;
    });
    return runtimesOpened;
  };
  // Docker's own containerd namespace is read through Docker: reading it again would count each session twice.
  const skipNamespaces = new Set(docker.used ? ["moby"] : []);
  const { signaller, fallback } = makeSignaller(deps.sendSignal, logger);
  metrics.setSignalMethod(signaller.method, fallback);
  // What the clients' evidence knew when the last run stopped, given back at the first look (config stateDir).
  const clientStore = new ClientStateStore({ dir: config.stateDir, logger: child("state"), nowMs: now() });
  const clients = docker.used
    ? clientStore.remembering(
        "docker",
        dockerClientEvidence(procfs, config.docker.socket, logger, (reason) => metrics.processReadsCut(reason)),
      )
    : null;
  // Made once, with the runtimes: each keeps what it saw of its sessions' clients from cycle to cycle.
  let runtimeClients: ReturnType<typeof runtimeClientEvidence> | null = null;
  const openRuntimeClients = async (): Promise<ReturnType<typeof runtimeClientEvidence>> =>
    (runtimeClients ??= new Map(
      [...runtimeClientEvidence(await openChosenRuntimes(), procfs, logger, (reason) => metrics.processReadsCut(reason))].map(
        ([runtime, evidence]) => [runtime, clientStore.remembering(runtime, evidence)],
      ),
    ));
  const reaper = new Reaper({
    processes: processTableOf(procfs),
    signaller,
    runtimes: reaperPorts,
    metrics,
    logger: child("reaper"),
    now,
    selfPid: process.pid,
    exemption: (session) => exemptionOf(session, config.policy),
    ...reaperSettings(config),
  });
  // Scan threads build the same ProcFs over the same root and environment: this reader is theirs.
  metrics.setScanReader(procfs.reader.reader, procfs.reader.reason);
  const scanLog = child("scan");
  let cutEpisode = false;
  let lastFinder: string | undefined;
  let lastListing: string | undefined;
  const scan = async (options: ScanOptions & { ptyAllocated: number }): Promise<ProcScan> => {
    const result = await scanner.scan(options);
    metrics.scanned(result.mode === "full" ? "full" : "steady");
    if (result.cut) metrics.scanPassCut();
    if (result.finder !== undefined && result.finder !== lastFinder) {
      lastFinder = result.finder;
      metrics.setScanFinder(result.finder);
      if (result.finder === "bpf") scanLog.info("full passes let the kernel name the pty fds (BPF finder)");
      else scanLog.info({ reason: result.finder }, "full passes read every fd link: BPF finder not used");
    }
    if (result.pidListing !== undefined && result.pidListing !== lastListing) {
      lastListing = result.pidListing;
      metrics.setScanListing(result.pidListing);
      if (result.pidListing === "new_pids") scanLog.info("steady passes list only the pids given out since the last pass");
      else scanLog.info({ reason: result.pidListing }, "steady passes list every pid");
    }
    if (result.argvBudgetCuts) metrics.processReadsCut("argv_budget", result.argvBudgetCuts);
    // Logged once per episode: a host that keeps every pass over budget would otherwise log every cycle.
    if (result.cut && !cutEpisode)
      scanLog.warn(
        { unread: result.cut.unread },
        "/proc pass cut by its time budget: unread processes keep their last known state until a later pass",
      );
    else if (!result.cut && cutEpisode) scanLog.info("/proc passes complete within their budget again");
    cutEpisode = result.cut !== undefined;
    return result;
  };
  const reach = new EvidenceReachReporter({ logger, setAvailable: (runtime, available) => metrics.setClientEvidenceAvailable(runtime, available) });
  let readySent = false;
  // Kept from cycle to cycle: a pty is master-only once it has stayed so for masterOnlyGrace (read at each cycle, so a reload applies).
  const masterOnlyTracker = new MasterOnlyTracker();
  // Kept from cycle to cycle: a steady cycle where nothing the inventory is built from changed takes the last one again.
  const inventoryReuse = new InventoryReuse();
  const poller = new Poller({
    collect: async () =>
      collect({
        procfs,
        scan,
        runtimes: [...(dockerRuntime ? [dockerRuntime] : []), ...(await openChosenRuntimes())],
        clients: new Map([...(clients ? [["docker", clients] as const] : []), ...(await openRuntimeClients())]),
        skipNamespaces,
        masterOnly: { tracker: masterOnlyTracker, graceMs: config.masterOnlyGrace },
        now,
        reuse: inventoryReuse,
      }),
    reaper,
    metrics,
    logger: child("poller"),
    now,
    settings: pollerSettings(config),
    onCycle: () => {
      deps.notifier?.watchdog();
      clientStore.save(now());
      reach.report([...(clients ? [["docker", clients] as const] : []), ...(runtimeClients ?? [])]);
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
      serialized = {
        snapshot,
        json: JSON.stringify(
          sessionsReport(snapshot.inventory, snapshot.docker, snapshot.takenAtMs, { decisions: snapshot.decisions, commandLine: config.commandLine }),
        ),
      };
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
    sessionsEnabled: () => config.http.sessions,
    liveness: () => poller.liveness(),
    readiness: () => poller.readiness(),
    logger: child("http"),
    web: deps.web,
    webReload: deps.webReload,
    events: {
      authRefused: (reason) => metrics.authRefused(reason),
      webConfigReloadFailed: (reason) => metrics.webConfigReloadFailed(reason),
    },
  });

  const healthListen = config.http.healthListen;
  const healthServer = healthListen
    ? buildHealthServer({ liveness: () => poller.liveness(), readiness: () => poller.readiness(), logger: child("http-health") })
    : null;

  return {
    metrics,
    poller,
    server,
    healthServer,
    async start() {
      await openChosenRuntimes();
      const address = await listen(server, config.listen.host, config.listen.port);
      const healthAddress = healthServer && healthListen ? await listen(healthServer, healthListen.host, healthListen.port) : null;
      if (dockerRuntime) void dockerRuntime.start();
      poller.start();
      logger.info(
        {
          version: deps.version,
          config: deps.configPath ?? "(built-in defaults)",
          address,
          ...(healthAddress ? { healthAddress } : {}),
          mode: config.reaper.mode,
          pollInterval: formatDurationExact(config.pollInterval),
          docker: docker.used ? config.docker.socket : "disabled",
          policy: policySummary(config),
        },
        "ptyreaper started",
      );
      logger.info(procfs.reader, `/proc reader: ${procfs.reader.reader}`);
      const watchdogMs = deps.notifier?.watchdogIntervalMs;
      if (watchdogMs && config.pollInterval > watchdogMs) {
        // The loop pings the watchdog once per cycle, so systemd would kill a healthy daemon.
        logger.warn(
          { pollInterval: formatDurationExact(config.pollInterval), watchdog: formatDurationExact(2 * watchdogMs) },
          "pollInterval is longer than half of WatchdogSec: raise WatchdogSec in the unit",
        );
      }
      return address;
    },
    async stop() {
      deps.notifier?.stopping();
      reaper.stop();
      // First: closing the scanner fails a pass in progress, so the loop stops without waiting for it.
      const scannerClosed = scanner.close();
      await poller.stop();
      for (const port of reaperPorts) port.close();
      await server.close();
      await healthServer?.close();
      await scannerClosed;
      // Dated now, so a client that dies during the downtime is gone from here at the latest.
      clientStore.save(now(), true);
      logger.info("ptyreaper stopped");
    },
    runOnce: async () => {
      await openChosenRuntimes(); // a required runtime without a socket is a config error here too
      // Decision-only: one cycle cannot see a pty released, and stop() would abandon an escalation half-way.
      reaper.configure({ ...reaperSettings(config), mode: "dry-run" });
      if (config.reaper.mode === "enforce") logger.info("run --once decides only: nothing is signalled; the report shows what the daemon would reap");
      const snapshot = await poller.runOnce();
      return snapshot;
    },
    reload(next: Config) {
      const needsRestart: string[] = (["listen", "procRoot", "fullScanInterval", "stateDir", "docker", "runtimes", "webConfigFile"] as const).filter(
        (key) => JSON.stringify(next[key]) !== JSON.stringify(config[key]),
      );
      if (JSON.stringify(next.http.healthListen) !== JSON.stringify(config.http.healthListen)) needsRestart.push("http.healthListen");
      if (needsRestart.length > 0) logger.warn({ keys: needsRestart }, "config reload: these keys need a restart to take effect");
      config = next;
      poller.reconfigure(pollerSettings(next));
      reaper.configure(reaperSettings(next));
      logger.level = next.log.level;
      for (const made of children) made.level = next.log.level;
      metrics.configLoaded({ mode: next.reaper.mode, file: configFile }, now());
      logger.info({ mode: next.reaper.mode, policy: policySummary(next) }, "config reloaded");
    },
  };
}
