// Poller: non-overlapping cycles, failures counted by stage, liveness and readiness from its own progress.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { pino } from "pino";
import {
  CLOCK_STEP_TOLERANCE_MS,
  clockStepMs,
  Poller,
  STUCK_AFTER_INTERVALS,
  type PollerOptions,
  type PollMetrics,
} from "../../../src/poller/poller.js";
import type { PollStage } from "../../../src/poller/stages.js";
import { CollectError, type Observation } from "../../../src/poller/collect.js";
import { Reaper } from "../../../src/reaper/reaper.js";
import { processTableOf } from "../../../src/reaper/identity.js";
import { ProcFs } from "../../../src/procfs/procfs.js";
import { KillSignaller } from "../../../src/reaper/signaller.js";
import { defaultConfig } from "../../../src/config/load.js";
import type { PolicyConfig } from "../../../src/config/types.js";
import type { ExecSession, ProcScan } from "../../../src/domain/types.js";

const policy: PolicyConfig = defaultConfig().policy;

/** `available` null: Docker not in use (no view of it). */
function observation(available: boolean | null = true, sessions: ExecSession[] = []): Observation {
  return {
    inventory: {
      limits: { allocated: 0, max: 4096, reserve: 1024 },
      ptys: [],
      sessions,
      discrepancy: { found: 0, allocated: 0, explanation: null },
      unreadablePids: [],
    },
    runtimes: available === null ? [] : [{ runtime: "docker", available, error: available ? null : "down", containers: [], execs: [] }],
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
    setDockerUp: (up) => events.push(`docker:${up === null ? "disabled" : up ? 1 : 0}`),
    clockStepped: () => events.push("clock-step"),
  };
}

function makeReaper(): Reaper {
  const logger = pino({ enabled: false });
  return new Reaper({
    processes: processTableOf(new ProcFs("/nonexistent")),
    signaller: new KillSignaller(() => undefined),
    runtimes: [],
    metrics: { reaped() {}, wouldReap() {}, reapFailed() {} },
    logger,
    now: Date.now,
    selfPid: process.pid,
    mode: "dry-run",
    graceMs: 1000,
    maxInFlight: 20,
  });
}

function makePoller(collect: () => Promise<Observation>, metrics = recorder(), extra: Partial<PollerOptions> = {}) {
  const logger = pino({ enabled: false });
  return new Poller({
    collect,
    reaper: makeReaper(),
    metrics,
    logger,
    now: Date.now,
    settings: { intervalMs: 10_000, policy, maxPerCycle: 20 },
    ...extra,
  });
}

/** An exec session idle for `idleMs` at `nowMs`: stale under the default 4h idleTimeout when idle longer. */
function execSession(nowMs: number, idleMs: number, n = 1): ExecSession {
  return {
    execId: `exec-${n}`,
    runtime: "docker",
    containerId: `c${n}`.padEnd(64, "0"),
    containerName: "web-1",
    containerLabels: {},
    pid: 1000 + n,
    startTicks: 5000 + n,
    pidNs: "4026532000",
    nsPid: 7,
    exemptByEnv: false,
    ptyKey: `0:50:${n}`,
    devptsDev: "0:50",
    index: n,
    holderPids: [1000 + n],
    startedAtMs: nowMs - 2 * 86_400_000,
    atimeMs: nowMs - idleMs,
    mtimeMs: nowMs - idleMs,
    command: "sh",
  };
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
    const poller = makePoller(
      () => (++n === 1 ? Promise.reject(new CollectError("limits", { cause: new Error("EACCES") })) : Promise.resolve(observation())),
      metrics,
    );
    poller.start();
    await vi.advanceTimersByTimeAsync(10_001);
    await poller.stop();
    expect(metrics.events[0]).toBe("failed:limits");
    expect(metrics.events).toContain("ok");
  });

  it("reports docker down as docker_up 0 and a completed cycle, not also as a failed one", async () => {
    const metrics = recorder();
    const poller = makePoller(() => Promise.resolve(observation(false)), metrics);
    await poller.runOnce();
    expect(metrics.events).toEqual(["docker:0", "snapshot", "ok"]);
    expect(poller.readiness()).toEqual({ ok: false, reason: "docker unavailable: down" });
  });

  it("docker disabled is neither up nor down", async () => {
    const metrics = recorder();
    await makePoller(() => Promise.resolve(observation(null)), metrics).runOnce();
    expect(metrics.events).toEqual(["docker:disabled", "snapshot", "ok"]);
  });

  it("logs docker going down and coming back once per change, not once per cycle", async () => {
    const lines: { level: number; msg: string }[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) });
    const states = [false, false, false, true, true, false, false];
    let n = 0;
    const poller = makePoller(() => Promise.resolve(observation(states[n++] ?? false)), recorder(), { logger });
    for (let i = 0; i < states.length; i++) await poller.runOnce();
    const docker = lines.filter((l) => l.msg.startsWith("docker "));
    expect(docker.map((l) => [l.level, l.msg.split(":")[0]])).toEqual([
      [40, "docker unreachable"],
      [30, "docker reachable again"],
      [40, "docker unreachable"],
    ]);
  });

  it("is ready after the first complete cycle when docker is disabled", async () => {
    const poller = makePoller(() => Promise.resolve(observation(null)), recorder());
    expect(poller.readiness().ok).toBe(false);
    await poller.runOnce();
    expect(poller.readiness()).toEqual({ ok: true, reason: "ok" });
  });

  it(`turns unhealthy when no cycle completes for ${STUCK_AFTER_INTERVALS} intervals`, async () => {
    const pending: (() => void)[] = [];
    let n = 0;
    const poller = makePoller(() =>
      ++n === 1 ? Promise.resolve(observation()) : new Promise((resolve) => pending.push(() => resolve(observation()))),
    );
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

/** Wraps fn so that its first call throws. */
function throwsOnce<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
  let armed = true;
  return (...args) => {
    if (armed) {
      armed = false;
      throw new Error("injected failure");
    }
    return fn(...args);
  };
}

/** An observation whose inventory field throws on its first read. */
function throwingOnFirstRead(obs: Observation, field: "sessions" | "ptys"): Observation {
  const value = obs.inventory[field];
  let armed = true;
  Object.defineProperty(obs.inventory, field, {
    get() {
      if (armed) {
        armed = false;
        throw new Error("injected failure");
      }
      return value;
    },
  });
  return obs;
}

describe("Poller: the loop survives a throw from any step", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  interface Rig {
    metrics: PollMetrics & { events: string[] };
    reaper: Reaper;
    /** The n-th collect (1-based) returns this. */
    observe: (n: number) => Observation;
    onCycle: () => void;
  }
  const cases: [PollStage, (rig: Rig) => void][] = [
    ["docker", (rig) => void (rig.metrics.setDockerUp = throwsOnce(rig.metrics.setDockerUp.bind(rig.metrics)))],
    ["policy", (rig) => void (rig.observe = (n) => (n === 1 ? throwingOnFirstRead(observation(), "sessions") : observation()))],
    // The reaper's check of released ptys throws (the policy reads the ptys first, so a throwing field would fail there).
    [
      "release",
      (rig) =>
        void vi.spyOn(rig.reaper, "observe").mockImplementationOnce(() => {
          throw new Error("injected failure");
        }),
    ],
    [
      "reap",
      (rig) =>
        void vi.spyOn(rig.reaper, "reap").mockImplementationOnce(() => {
          throw new Error("injected failure");
        }),
    ],
    ["publish", (rig) => void (rig.metrics.observeSnapshot = throwsOnce(rig.metrics.observeSnapshot.bind(rig.metrics)))],
    ["record", (rig) => void (rig.metrics.pollSucceeded = throwsOnce(rig.metrics.pollSucceeded.bind(rig.metrics)))],
    ["notify", (rig) => void (rig.onCycle = throwsOnce(rig.onCycle))],
  ];

  it.each(cases)("%s: counted under its stage, the cycle finishes, the next cycles run", async (stage, arm) => {
    let cycles = 0;
    let collects = 0;
    const rig: Rig = { metrics: recorder(), reaper: makeReaper(), observe: () => observation(), onCycle: () => cycles++ };
    arm(rig);
    const logs: { stage?: string; msg: string }[] = [];
    const logger = pino({ level: "error" }, { write: (line: string) => logs.push(JSON.parse(line) as { stage?: string; msg: string }) });
    const poller = new Poller({
      collect: () => Promise.resolve(rig.observe(++collects)),
      reaper: rig.reaper,
      metrics: rig.metrics,
      logger,
      now: Date.now,
      settings: { intervalMs: 10_000, policy, maxPerCycle: 20 },
      onCycle: () => rig.onCycle(),
    });
    poller.start();
    await vi.advanceTimersByTimeAsync(25_000); // cycles at 0, 10s and 20s
    await poller.stop();
    expect(collects).toBe(3);
    expect(rig.metrics.events.filter((e) => e.startsWith("failed:"))).toEqual([`failed:${stage}`]);
    expect(logs.map((l) => [l.msg, l.stage])).toEqual([["poll step failed", stage]]);
    // Every cycle reached its end (onCycle), the failing one included unless onCycle itself threw.
    expect(cycles).toBe(stage === "notify" ? 2 : 3);
    expect(poller.liveness().ok).toBe(true);
  });

  it("an error that escapes the cycle itself is counted as stage cycle and the loop goes on", async () => {
    const metrics = recorder();
    // The collect failure is reported through pollFailed, which throws: runOnce rejects.
    metrics.pollFailed = throwsOnce(metrics.pollFailed.bind(metrics));
    let collects = 0;
    const poller = makePoller(
      () => (++collects === 1 ? Promise.reject(new CollectError("scan", { cause: new Error("EIO") })) : Promise.resolve(observation())),
      metrics,
    );
    poller.start();
    await vi.advanceTimersByTimeAsync(25_000);
    await poller.stop();
    expect(collects).toBe(3);
    expect(metrics.events.filter((e) => e.startsWith("failed:"))).toEqual(["failed:cycle"]);
    expect(metrics.events.filter((e) => e === "ok")).toHaveLength(2);
  });
});

describe("Poller: wall-clock steps", () => {
  const H = 3_600_000;
  const T0 = Date.UTC(2026, 0, 15, 12, 0, 0);

  /** A poller over hand-driven clocks; every collect returns one session that last had input at `lastInputWallMs`. */
  function clockRig(lastInputWallMs: number) {
    const clocks = { wall: T0, mono: 1_000 };
    const metrics = recorder();
    const logs: { msg: string; stepMs?: number; holdMs?: number }[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => logs.push(JSON.parse(line) as { msg: string }) });
    const poller = new Poller({
      collect: () => Promise.resolve(observation(true, [{ ...execSession(lastInputWallMs, 0), startedAtMs: lastInputWallMs - H }])),
      reaper: makeReaper(),
      metrics,
      logger,
      now: () => clocks.wall,
      monotonicNow: () => clocks.mono,
      settings: { intervalMs: 10_000, policy, maxPerCycle: 20 },
    });
    const advance = (ms: number, wallStepMs = 0): void => {
      clocks.mono += ms;
      clocks.wall += ms + wallStepMs;
    };
    const state = async (): Promise<string> => {
      const snapshot = await poller.runOnce();
      const d = snapshot?.decisions[0];
      return `${d?.state}: ${d?.detail}`;
    };
    return { poller, metrics, logs, advance, state };
  }

  it("clockStepMs: the wall delta beyond the monotonic delta, 0 within the tolerance", () => {
    const a = { wallMs: T0, monotonicMs: 500 };
    expect(clockStepMs(a, { wallMs: T0 + 10_000, monotonicMs: 10_500 })).toBe(0);
    expect(clockStepMs(a, { wallMs: T0 + 10_000 + CLOCK_STEP_TOLERANCE_MS, monotonicMs: 10_500 })).toBe(0);
    expect(clockStepMs(a, { wallMs: T0 + 10_001 + CLOCK_STEP_TOLERANCE_MS, monotonicMs: 10_500 })).toBe(CLOCK_STEP_TOLERANCE_MS + 1);
    expect(clockStepMs(a, { wallMs: T0 - 3_600_000, monotonicMs: 10_500 })).toBe(-3_600_000 - 10_000);
  });

  it("a forward step holds idle reaping for one idle window (idleTimeout), counted and logged once", async () => {
    // Last input 3h before T0: under the 4h idleTimeout, until the clock jumps 2h forward.
    const rig = clockRig(T0 - 3 * H);
    expect(await rig.state()).toMatch(/^idle: idle 3h < idleTimeout 4h/);
    rig.advance(10_000, 2 * H);
    expect(await rig.state()).toMatch(/^idle: clock stepped \+2h, idle and age reaping held 4h more; idle 5h ≥ idleTimeout 4h$/);
    expect(rig.metrics.events.filter((e) => e === "clock-step")).toHaveLength(1);
    expect(rig.logs.filter((l) => l.msg.startsWith("wall clock stepped"))).toEqual([expect.objectContaining({ stepMs: 2 * H, holdMs: 4 * H })]);
    rig.advance(4 * H - 10_000);
    expect(await rig.state()).toMatch(/^idle: clock stepped \+2h, idle and age reaping held 10s more/);
    rig.advance(10_000);
    expect(await rig.state()).toMatch(/^stale: idle 9h/);
    expect(rig.logs.filter((l) => l.msg.startsWith("clock step hold over"))).toHaveLength(1);
    expect(rig.metrics.events.filter((e) => e === "clock-step")).toHaveLength(1);
  });

  it("a backward step holds too; ordinary drift does not", async () => {
    const rig = clockRig(T0 - 5 * H);
    expect(await rig.state()).toMatch(/^stale: idle 5h/);
    rig.advance(10_000, CLOCK_STEP_TOLERANCE_MS); // slew within the tolerance
    expect(await rig.state()).toMatch(/^stale:/);
    rig.advance(10_000, -30 * 60_000);
    expect(await rig.state()).toMatch(/^idle: clock stepped -30m, idle and age reaping held 4h more/);
    expect(rig.metrics.events.filter((e) => e === "clock-step")).toHaveLength(1);
  });

  it("liveness follows monotonic time: a forward step does not make the loop look stuck", async () => {
    const rig = clockRig(T0);
    await rig.state();
    rig.advance(1_000, 24 * H);
    expect(rig.poller.liveness()).toEqual({ ok: true, reason: "ok" });
    rig.advance(STUCK_AFTER_INTERVALS * 10_000);
    expect(rig.poller.liveness().ok).toBe(false);
  });
});

describe("Poller and other runtimes", () => {
  it("logs an exec /proc did not confirm once while it lasts, and again if it comes back", async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: "warn" }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const exec = { id: "e".repeat(64), container: { namespace: "k8s.io", id: "c".repeat(64) }, pid: 4242, running: true, tty: true };
    const verdicts = [
      [{ exec, runtime: "containerd" as const, refusal: "/proc attributes it to unknown" }],
      [{ exec, runtime: "containerd" as const, refusal: "/proc attributes it to unknown" }],
      [],
      [{ exec, runtime: "containerd" as const, refusal: "again" }],
    ];
    let cycle = 0;
    const poller = makePoller(() => Promise.resolve({ ...observation(), runtimeVerdicts: verdicts[cycle++] ?? [] }), recorder(), { logger });
    for (let i = 0; i < 4; i++) await poller.runOnce();
    const logged = lines.filter((l) => l.msg === "exec not confirmed from /proc: its pty is counted but it is never reaped");
    expect(logged.map((l) => [l.runtime, l.pid, l.why])).toEqual([
      ["containerd", 4242, "/proc attributes it to unknown"],
      ["containerd", 4242, "again"],
    ]);
  });
});
