// The loop: non-overlapping cycles of observe → decide → reap → publish, at pollInterval.
import type { Logger } from "pino";
import { errorMessage } from "../errors.js";
import { containersOverShare, decide, ptysPerDevpts, type ClockStepHold } from "../domain/policy.js";
import type { ContainerOverShare } from "../domain/snapshot.js";
import type { PolicyConfig } from "../config/types.js";
import { dockerStatusOf, type Snapshot } from "../domain/snapshot.js";
import { containerCapacity, type ExecSession, type PtyLimits } from "../domain/types.js";
import type { Reaper } from "../reaper/reaper.js";
import { CollectError, type Observation } from "./collect.js";
import type { PollStage } from "./stages.js";
import type { RuntimeName } from "../domain/attribution.js";
import type { RuntimeView } from "../domain/runtime.js";

/** What the loop reports to metrics (PtyreaperMetrics implements it). */
export interface PollMetrics {
  observeSnapshot(snapshot: Snapshot): void;
  pollSucceeded(durationSeconds: number, atMs: number): void;
  pollFailed(stage: PollStage): void;
  /** null when Docker is disabled in the config. */
  setDockerUp(up: boolean | null): void;
  /** Each runtime besides Docker in use: whether it answered this cycle. */
  setRuntimeUp?(runtime: RuntimeName, up: boolean | null): void;
  /** A wall-clock step was seen between two cycles. */
  clockStepped(): void;
}

export interface PollerSettings {
  intervalMs: number;
  policy: PolicyConfig;
  maxPerCycle: number;
}

export interface PollerOptions {
  collect: () => Promise<Observation>;
  reaper: Reaper;
  metrics: PollMetrics;
  logger: Logger;
  /** Wall clock, ms since epoch: tty times and process starts are on it. */
  now: () => number;
  /** A clock that never steps (ms); defaults to performance.now. Measures intervals and detects wall-clock steps. */
  monotonicNow?: () => number;
  settings: PollerSettings;
  /** Called after every complete cycle (systemd watchdog, readiness). */
  onCycle?: (snapshot: Snapshot) => void;
}

/** What /healthz and /readyz report. */
export interface Health {
  ok: boolean;
  reason: string;
}

/** The loop counts as stuck when no cycle completed for this many intervals. */
export const STUCK_AFTER_INTERVALS = 3;

/**
 * Wall time may drift from monotonic time by NTP slewing (at most 0.5 ms/s), never by seconds
 * between two cycles: a larger difference is a step (settimeofday, NTP step, VM resume).
 */
export const CLOCK_STEP_TOLERANCE_MS = 5_000;

/** Both clocks read at one moment. */
export interface ClockReading {
  wallMs: number;
  monotonicMs: number;
}

/** How far the wall clock jumped between two readings beyond the time that passed; 0 within the tolerance. */
export function clockStepMs(previous: ClockReading, current: ClockReading, toleranceMs = CLOCK_STEP_TOLERANCE_MS): number {
  const step = current.wallMs - previous.wallMs - (current.monotonicMs - previous.monotonicMs);
  return Math.abs(step) > toleranceMs ? step : 0;
}

/**
 * How long idle and age reaping are held after a step: one idle window. Once it has passed, a
 * session still idle has been idle that long on the new clock, whatever the step was.
 */
export function clockStepHoldMs(policy: PolicyConfig): number {
  return policy.idleTimeout ?? policy.pressure.minIdle;
}

export class Poller {
  private readonly options: PollerOptions;
  private readonly monotonicNow: () => number;
  private settings: PollerSettings;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = true;
  /** Monotonic times: a wall-clock step must not make the loop look stuck. */
  private startedAtMono = 0;
  private lastCompleteMono: number | null = null;
  private lastError: string | null = null;
  private snapshot: Snapshot | null = null;
  /** Docker's state in the last cycle, to log its changes once rather than every cycle. */
  private dockerWasAvailable: boolean | null = null;
  /** The clocks as the last cycle read them, to detect a step. */
  private lastClock: ClockReading | null = null;
  /** Other runtimes' execs /proc did not confirm, already logged (once each, while they last). */
  private unconfirmedLogged = new Set<string>();
  /** Containers over policy.pressure.containerShare already named in the log. */
  private overShareLogged = new Set<string>();
  /** After a clock step: the step and the monotonic time until which time-based reaping is held. */
  private clockHold: { stepMs: number; untilMono: number } | null = null;

  constructor(options: PollerOptions) {
    this.options = options;
    this.settings = options.settings;
    this.monotonicNow = options.monotonicNow ?? (() => performance.now());
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
    this.startedAtMono = this.monotonicNow();
    this.schedule(0);
  }

  /** Waits for a cycle in progress, then stops. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  /**
   * One full cycle; used by start() and by `run --once`. A failed collect ends the cycle early; each
   * later step runs in its own guard, so one that throws is counted and logged and the rest still run.
   */
  async runOnce(): Promise<Snapshot | null> {
    const { logger, metrics, now } = this.options;
    const startedMono = this.monotonicNow();
    // Wall time the inventory's reading began: the reaper judges a release only by a read after it.
    const readFromMs = now();
    const settings = this.settings;
    let observation: Observation;
    try {
      observation = await this.options.collect();
    } catch (err) {
      const stage = err instanceof CollectError ? err.stage : "scan";
      this.lastError = errorMessage(err);
      logger.error({ err, stage }, "poll failed");
      metrics.pollFailed(stage);
      return null;
    }
    const { inventory, runtimes } = observation;
    const docker = runtimes.find((view) => view.runtime === "docker");
    // Docker down is not a failed cycle: ptys are still counted and published; docker_up says it.
    this.guard("docker", () => {
      metrics.setDockerUp(docker ? docker.available : null);
      if (docker) this.logDockerChange(docker);
      for (const view of runtimes) if (view !== docker) metrics.setRuntimeUp?.(view.runtime, view.available);
    });
    this.guard("docker", () => this.logUnconfirmed(observation));
    // A session may be reaped only while the runtime that started it answers.
    const runtimeUp = new Map<string, boolean>(runtimes.map((v): [string, boolean] => [v.runtime, v.available]));

    let decisions: Snapshot["decisions"] = [];
    this.guard("policy", () => {
      const clock = { wallMs: now(), monotonicMs: this.monotonicNow() };
      const hold = this.clockStepHold(clock, settings.policy);
      decisions = decide(
        {
          sessions: inventory.sessions,
          limits: inventory.limits,
          clockStepHold: hold,
          answered: (runtime) => runtimeUp.get(runtime) ?? false,
          ptysPerDevpts: ptysPerDevpts(inventory.ptys),
        },
        settings.policy,
        settings.maxPerCycle,
        clock.wallMs,
      );
    });
    const overShare = containersOverShare(inventory.ptys, inventory.limits, settings.policy.pressure.containerShare);
    this.guard("policy", () => this.logOverShare(overShare, inventory.limits));
    const snapshot: Snapshot = { takenAtMs: now(), inventory, docker: dockerStatusOf(runtimes), runtimes, decisions, overShare };
    // The reaper confirms in each inventory that the ptys of sessions it ended were released.
    this.guard("release", () => this.options.reaper.observe(inventory, readFromMs));
    this.guard("reap", () => {
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
    });
    this.snapshot = snapshot;
    this.guard("publish", () => metrics.observeSnapshot(snapshot));
    const finishedMono = this.monotonicNow();
    this.lastCompleteMono = finishedMono;
    this.lastError = null;
    this.guard("record", () => metrics.pollSucceeded((finishedMono - startedMono) / 1000, now()));
    if (inventory.discrepancy.explanation) {
      logger.debug(
        { found: inventory.discrepancy.found, allocated: inventory.discrepancy.allocated, why: inventory.discrepancy.explanation },
        "inventory differs from pty/nr",
      );
    }
    this.guard("notify", () => this.options.onCycle?.(snapshot));
    return snapshot;
  }

  /** Liveness: a cycle completed within STUCK_AFTER_INTERVALS intervals. */
  liveness(): Health {
    const limit = STUCK_AFTER_INTERVALS * this.settings.intervalMs;
    const since = this.lastCompleteMono ?? this.startedAtMono;
    const age = this.monotonicNow() - since;
    if (age <= limit) return { ok: true, reason: "ok" };
    const last = this.lastCompleteMono === null ? "no cycle has completed" : `last cycle completed ${Math.round(age / 1000)}s ago`;
    return { ok: false, reason: `poll loop stuck: ${last} (limit ${limit / 1000}s)${this.lastError ? `; last error: ${this.lastError}` : ""}` };
  }

  /** Readiness: the first cycle completed, with Docker reachable or not in use. */
  readiness(): Health {
    if (this.snapshot === null) return { ok: false, reason: this.lastError ? `first cycle failed: ${this.lastError}` : "first cycle not complete" };
    const docker = this.snapshot.runtimes.find((view) => view.runtime === "docker");
    if (docker && !docker.available) {
      return { ok: false, reason: `docker unavailable: ${docker.error ?? "unknown"}` };
    }
    return { ok: true, reason: "ok" };
  }

  /** One line when Docker goes away and one when it is back, however many cycles it stays so. */
  private logDockerChange(docker: Pick<RuntimeView, "available" | "error">): void {
    const was = this.dockerWasAvailable;
    this.dockerWasAvailable = docker.available;
    if (was === docker.available) return;
    if (!docker.available) {
      this.options.logger.warn({ error: docker.error }, "docker unreachable: ptys are still counted, but no session is reaped until it answers");
    } else if (was === false) {
      this.options.logger.info("docker reachable again: reaping resumes");
    }
  }

  /** One line per exec (of any runtime) that /proc does not confirm: why its pty is shown unowned and never reaped. */
  private logUnconfirmed(observation: Observation): void {
    const now = new Set<string>();
    for (const { exec, runtime, refusal } of observation.runtimeVerdicts ?? []) {
      if (refusal === null) continue;
      const key = `${runtime} ${exec.id}`;
      now.add(key);
      if (!this.unconfirmedLogged.has(key)) {
        this.options.logger.warn(
          { runtime, execId: exec.id, containerId: exec.container.id, pid: exec.pid, why: refusal },
          "exec not confirmed from /proc: its pty is counted but it is never reaped",
        );
      }
    }
    this.unconfirmedLogged = now;
  }

  /** One line when a container goes over policy.pressure.containerShare (and one when it is back under). */
  private logOverShare(over: readonly ContainerOverShare[], limits: PtyLimits): void {
    const now = new Set(over.map((c) => c.containerId));
    for (const c of over) {
      if (this.overShareLogged.has(c.containerId)) continue;
      this.options.logger.warn(
        {
          containerId: c.containerId,
          containerName: c.containerName,
          runtime: c.runtime,
          ptys: c.ptys,
          capacity: containerCapacity(limits),
          share: Number(c.share.toFixed(4)),
        },
        "container holds more than policy.pressure.containerShare of the container ptys: under pressure its exec sessions are reaped first; its other ptys never are",
      );
    }
    for (const id of this.overShareLogged)
      if (!now.has(id)) this.options.logger.info({ containerId: id }, "container back under policy.pressure.containerShare");
    this.overShareLogged = now;
  }

  /** Runs one step of a cycle; a throw is counted under its stage and logged, and the cycle goes on. */
  private guard(stage: PollStage, step: () => void): void {
    try {
      step();
    } catch (err) {
      this.options.logger.error({ err, stage }, "poll step failed");
      this.options.metrics.pollFailed(stage);
    }
  }

  /**
   * Detects a wall-clock step since the last cycle and says whether idle and age reaping are held.
   * tty times were written on the old clock, so after a forward step every quiet session would look
   * idle at once; after a backward one, ages and idle times are short. Either way: wait one idle window.
   */
  private clockStepHold(clock: ClockReading, policy: PolicyConfig): ClockStepHold | null {
    const previous = this.lastClock;
    this.lastClock = clock;
    const stepMs = previous === null ? 0 : clockStepMs(previous, clock);
    if (stepMs !== 0) {
      const holdMs = clockStepHoldMs(policy);
      this.clockHold = { stepMs, untilMono: clock.monotonicMs + holdMs };
      this.options.logger.warn(
        { stepMs: Math.round(stepMs), holdMs },
        "wall clock stepped: idle and age reaping held for one idle window (pressure reaping goes on)",
      );
      this.options.metrics.clockStepped();
    }
    if (this.clockHold === null) return null;
    const remainingMs = this.clockHold.untilMono - clock.monotonicMs;
    if (remainingMs > 0) return { stepMs: this.clockHold.stepMs, remainingMs };
    this.clockHold = null;
    this.options.logger.info("clock step hold over: idle and age reaping resume");
    return null;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      const cycleStart = this.monotonicNow();
      // The next cycle is scheduled whatever this one did: the loop must outlive any error.
      this.running = this.runOnce()
        .then(
          () => undefined,
          (err: unknown) => {
            this.options.logger.error({ err }, "poll cycle failed");
            this.options.metrics.pollFailed("cycle");
          },
        )
        .finally(() => {
          this.running = null;
          const elapsed = this.monotonicNow() - cycleStart;
          this.schedule(Math.max(0, this.settings.intervalMs - elapsed));
        });
    }, delayMs);
  }
}
