// The loop: non-overlapping cycles of observe → decide → reap → publish, at pollInterval.
import type { Logger } from "pino";
import { errorMessage } from "../errors.js";
import { decide } from "../domain/policy.js";
import type { PolicyConfig } from "../config/types.js";
import type { Snapshot } from "../domain/snapshot.js";
import type { ExecSession } from "../domain/types.js";
import type { Reaper } from "../reaper/reaper.js";
import { CollectError, type Observation } from "./collect.js";

/** What the loop reports to metrics (PtyreaperMetrics implements it). */
export interface PollMetrics {
  observeSnapshot(snapshot: Snapshot): void;
  pollSucceeded(durationSeconds: number, atMs: number): void;
  pollFailed(stage: "limits" | "scan" | "docker" | "policy" | "reap"): void;
  setDockerUp(up: boolean): void;
}

export interface PollerSettings {
  intervalMs: number;
  policy: PolicyConfig;
  maxPerCycle: number;
  dockerEnabled: boolean;
}

export interface PollerOptions {
  collect: () => Promise<Observation>;
  reaper: Reaper;
  metrics: PollMetrics;
  logger: Logger;
  now: () => number;
  settings: PollerSettings;
  /** Called after every complete cycle (systemd watchdog, readiness). */
  onCycle?: (snapshot: Snapshot) => void;
}

export interface Health {
  ok: boolean;
  reason: string;
}

/** The loop counts as stuck when no cycle completed for this many intervals. */
export const STUCK_AFTER_INTERVALS = 3;

export class Poller {
  private readonly options: PollerOptions;
  private settings: PollerSettings;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = true;
  private startedAtMs = 0;
  private lastCompleteMs: number | null = null;
  private lastError: string | null = null;
  private snapshot: Snapshot | null = null;

  constructor(options: PollerOptions) {
    this.options = options;
    this.settings = options.settings;
  }

  get lastSnapshot(): Snapshot | null {
    return this.snapshot;
  }

  /** Applies a reloaded config; the next cycle uses it. */
  reconfigure(settings: PollerSettings): void {
    this.settings = settings;
  }

  start(): void {
    this.stopped = false;
    this.startedAtMs = this.options.now();
    this.schedule(0);
  }

  /** Waits for a cycle in progress, then stops. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  /** One full cycle; used by start() and by `run --once`. Never throws. */
  async runOnce(): Promise<Snapshot | null> {
    const { logger, metrics, now } = this.options;
    const started = now();
    const settings = this.settings;
    let observation: Observation;
    try {
      observation = await this.options.collect();
    } catch (err) {
      const stage = err instanceof CollectError ? err.stage : "scan";
      metrics.pollFailed(stage);
      this.lastError = errorMessage(err);
      logger.error({ err, stage }, "poll failed");
      return null;
    }
    const { inventory, docker } = observation;
    if (settings.dockerEnabled) {
      metrics.setDockerUp(docker.available);
      if (!docker.available) metrics.pollFailed("docker");
    } else metrics.setDockerUp(false);

    let decisions: Snapshot["decisions"] = [];
    try {
      decisions = decide({ sessions: inventory.sessions, limits: inventory.limits, dockerAvailable: docker.available }, settings.policy, settings.maxPerCycle, now());
    } catch (err) {
      metrics.pollFailed("policy");
      logger.error({ err }, "policy failed");
    }
    const snapshot: Snapshot = { takenAtMs: now(), inventory, docker, decisions };
    const readFromMs = started;
    try {
      this.options.reaper.observe(inventory, readFromMs);
      const sessions = new Map(inventory.sessions.map((s) => [s.execId, s]));
      const stale = decisions
        .filter((d) => d.state === "stale")
        .map((decision) => ({ decision, session: sessions.get(decision.execId) as ExecSession }))
        .filter((entry) => entry.session !== undefined);
      this.options.reaper.prune(new Set(sessions.keys()));
      const started = this.options.reaper.reap(stale);
      if (stale.length > 0) {
        // One line per cycle that acted: shows maxPerCycle at work (started ≤ maxPerCycle, the rest deferred).
        const deferred = decisions.filter((d) => d.detail.startsWith("deferred:")).length;
        logger[started > 0 ? "info" : "debug"]({ stale: stale.length, started, deferred, inFlight: this.options.reaper.pendingCount }, "reap cycle");
      }
    } catch (err) {
      metrics.pollFailed("reap");
      logger.error({ err }, "reaper failed");
    }
    this.snapshot = snapshot;
    metrics.observeSnapshot(snapshot);
    const finished = now();
    metrics.pollSucceeded((finished - started) / 1000, finished);
    this.lastCompleteMs = finished;
    this.lastError = null;
    if (inventory.discrepancy.explanation) {
      logger.debug({ found: inventory.discrepancy.found, allocated: inventory.discrepancy.allocated, why: inventory.discrepancy.explanation }, "inventory differs from pty/nr");
    }
    this.options.onCycle?.(snapshot);
    return snapshot;
  }

  /** Liveness: a cycle completed within STUCK_AFTER_INTERVALS intervals. */
  liveness(): Health {
    const limit = STUCK_AFTER_INTERVALS * this.settings.intervalMs;
    const since = this.lastCompleteMs ?? this.startedAtMs;
    const age = this.options.now() - since;
    if (age <= limit) return { ok: true, reason: "ok" };
    const last = this.lastCompleteMs === null ? "no cycle has completed" : `last cycle completed ${Math.round(age / 1000)}s ago`;
    return { ok: false, reason: `poll loop stuck: ${last} (limit ${limit / 1000}s)${this.lastError ? `; last error: ${this.lastError}` : ""}` };
  }

  /** Readiness: the first cycle completed, with Docker reachable or disabled. */
  readiness(): Health {
    if (this.snapshot === null) return { ok: false, reason: this.lastError ? `first cycle failed: ${this.lastError}` : "first cycle not complete" };
    if (this.settings.dockerEnabled && !this.snapshot.docker.available) {
      return { ok: false, reason: `docker unavailable: ${this.snapshot.docker.error ?? "unknown"}` };
    }
    return { ok: true, reason: "ok" };
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      const cycleStart = this.options.now();
      this.running = this.runOnce().then(() => {
        this.running = null;
        const elapsed = this.options.now() - cycleStart;
        this.schedule(Math.max(0, this.settings.intervalMs - elapsed));
      });
    }, delayMs);
  }
}
