// Poller: non-overlapping cycles, failures counted by stage, liveness and readiness from its own progress.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { pino } from "pino";
import { Poller, STUCK_AFTER_INTERVALS, type PollMetrics } from "../../../src/poller/poller.js";
import { CollectError, type Observation } from "../../../src/poller/collect.js";
import { Reaper } from "../../../src/reaper/reaper.js";
import { ProcRootTable } from "../../../src/reaper/identity.js";
import { KillSignaller } from "../../../src/reaper/signaller.js";
import { defaultConfig } from "../../../src/config/load.js";
import type { PolicyConfig } from "../../../src/config/types.js";
import type { ProcScan } from "../../../src/domain/types.js";

const policy: PolicyConfig = defaultConfig().policy;

function observation(available = true): Observation {
  return {
    inventory: { limits: { allocated: 0, max: 4096, reserve: 1024 }, ptys: [], sessions: [], discrepancy: { found: 0, allocated: 0, explanation: null }, unreadablePids: [] },
    docker: { available, error: available ? null : "down" },
    dockerApiCalls: 0,
    scan: {} as ProcScan,
  };
}

function recorder(): PollMetrics & { events: string[] } {
  const events: string[] = [];
  return {
    events,
    observeSnapshot: () => events.push("snapshot"),
    pollSucceeded: () => events.push("ok"),
    pollFailed: (stage) => events.push(`failed:${stage}`),
    setDockerUp: (up) => events.push(`docker:${up ? 1 : 0}`),
  };
}

function makePoller(collect: () => Promise<Observation>, metrics = recorder(), dockerEnabled = true) {
  const logger = pino({ enabled: false });
  const reaper = new Reaper({
    processes: new ProcRootTable("/nonexistent"),
    signaller: new KillSignaller(() => undefined),
    docker: null,
    metrics: { reaped() {}, wouldReap() {}, reapFailed() {} },
    logger,
    now: Date.now,
    selfPid: process.pid,
    mode: "dry-run",
    graceMs: 1000,
    maxInFlight: 20,
  });
  return new Poller({ collect, reaper, metrics, logger, now: Date.now, settings: { intervalMs: 10_000, policy, maxPerCycle: 20, dockerEnabled } });
}

describe("Poller", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("never overlaps cycles: a slow cycle delays the next one", async () => {
    let active = 0;
    let maxActive = 0;
    let calls = 0;
    const poller = makePoller(async () => {
      calls++;
      active++;
      maxActive = Math.max(maxActive, active);
      await new Promise((resolve) => setTimeout(resolve, 25_000)); // longer than two intervals
      active--;
      return observation();
    });
    poller.start();
    await vi.advanceTimersByTimeAsync(99_000);
    const stopping = poller.stop();
    await vi.advanceTimersByTimeAsync(30_000);
    await stopping;
    expect(maxActive).toBe(1);
    expect(calls).toBe(4); // at 0, 25s, 50s, 75s, each right after the previous one ended
  });

  it("counts a failed collect by its stage and keeps looping", async () => {
    const metrics = recorder();
    let n = 0;
    const poller = makePoller(() => (++n === 1 ? Promise.reject(new CollectError("limits", { cause: new Error("EACCES") })) : Promise.resolve(observation())), metrics);
    poller.start();
    await vi.advanceTimersByTimeAsync(10_001);
    await poller.stop();
    expect(metrics.events[0]).toBe("failed:limits");
    expect(metrics.events).toContain("ok");
  });

  it("reports docker down as a docker-stage error and docker_up 0, still publishing the snapshot", async () => {
    const metrics = recorder();
    const poller = makePoller(() => Promise.resolve(observation(false)), metrics);
    await poller.runOnce();
    expect(metrics.events).toEqual(["docker:0", "failed:docker", "snapshot", "ok"]);
    expect(poller.readiness()).toEqual({ ok: false, reason: "docker unavailable: down" });
  });

  it("is ready after the first complete cycle when docker is disabled", async () => {
    const poller = makePoller(() => Promise.resolve(observation(false)), recorder(), false);
    expect(poller.readiness().ok).toBe(false);
    await poller.runOnce();
    expect(poller.readiness()).toEqual({ ok: true, reason: "ok" });
  });

  it(`turns unhealthy when no cycle completes for ${STUCK_AFTER_INTERVALS} intervals`, async () => {
    const pending: (() => void)[] = [];
    let n = 0;
    const poller = makePoller(() => (++n === 1 ? Promise.resolve(observation()) : new Promise((resolve) => pending.push(() => resolve(observation())))));
    poller.start();
    await vi.advanceTimersByTimeAsync(1);
    expect(poller.liveness().ok).toBe(true);
    await vi.advanceTimersByTimeAsync(STUCK_AFTER_INTERVALS * 10_000 + 1);
    const stuck = poller.liveness();
    expect(stuck.ok).toBe(false);
    expect(stuck.reason).toMatch(/^poll loop stuck: last cycle completed 3\ds ago \(limit 30s\)/);
    pending.shift()?.();
    await vi.advanceTimersByTimeAsync(1);
    expect(poller.liveness().ok).toBe(true);
    const stopping = poller.stop();
    await vi.advanceTimersByTimeAsync(10_000);
    for (const release of pending) release();
    await stopping;
  });
});
