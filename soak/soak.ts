// The soak: thousands of fast daemon cycles while containers and exec sessions come and go on a private
// Docker engine; reports RSS, heap, open fds, active handles and metric series at the start and the end.
import { readdirSync } from "node:fs";
import { pino } from "pino";
import { createDaemon, type Daemon } from "../src/app.js";
import { parseConfig } from "../src/config/load.js";
import { ScanWorker } from "../src/procfs/worker.js";
import { TEST_IMAGE } from "../test/integration/support/docker.js";
import { engineApi, execDetached } from "../test/integration/support/dockerd.js";

export interface SoakOptions {
  cycles: number;
  /** Keep cycling past `cycles` until this much time has passed, so the churn has time to act (default 0). */
  minSeconds?: number;
  /** The private engine's API socket: the soak reaps for real, so never the host's engine. */
  socket: string;
  /** Cycles run before the start figures are taken (JIT, caches, first containers). */
  warmupCycles?: number;
  /** Called every `progressEvery` cycles. */
  onProgress?: (done: number, usage: Usage) => void;
  progressEvery?: number;
}

export interface Usage {
  rssMb: number;
  heapUsedMb: number;
  fds: number;
  /** Series (sample lines) in the /metrics exposition, all of them. */
  series: number;
  /** Of which ptyreaper's own (the rest are prom-client's process and Node.js metrics). */
  ptyreaperSeries: number;
  /** Of which nodejs_gc_duration_seconds: a {kind} label set appears the first time V8 runs that kind of GC. */
  gcSeries: number;
  /** prom-client's nodejs_active_handles, summed over types. */
  activeHandles: number;
  /** Running containers and live exec sessions the churn had made at that moment. */
  containers: number;
  sessions: number;
}

export interface SoakFigures {
  cycles: number;
  failedCycles: number;
  seconds: number;
  start: Usage;
  /** Half-way through the cycles: memory must not grow from here on (the start is early in the heaps' warm-up). */
  mid: Usage;
  end: Usage;
  peakRssMb: number;
  churn: { containersStarted: number; containersRemoved: number; sessionsStarted: number; shortExecs: number; errors: number };
  reaped: number;
}

const CONTAINER_PREFIX = "ptyr-test-soak-";

/** Metric sample lines in an exposition (all, ptyreaper's, GC's), the sum of nodejs_active_handles, reaps. */
export function countExposition(text: string): { series: number; ptyreaperSeries: number; gcSeries: number; activeHandles: number; reaped: number } {
  let series = 0;
  let ptyreaperSeries = 0;
  let gcSeries = 0;
  let activeHandles = 0;
  let reaped = 0;
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    series++;
    if (line.startsWith("ptyreaper_")) ptyreaperSeries++;
    if (line.startsWith("nodejs_gc_duration_seconds")) gcSeries++;
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (line.startsWith("nodejs_active_handles{")) activeHandles += value;
    if (line.startsWith("ptyreaper_reaped_sessions_total{")) reaped += value;
  }
  return { series, ptyreaperSeries, gcSeries, activeHandles, reaped };
}

/** Containers and exec sessions coming and going on the engine, one action every `everyMs`, until stop(). */
class Churn {
  readonly counts = { containersStarted: 0, containersRemoved: 0, sessionsStarted: 0, shortExecs: 0, errors: 0 };
  readonly containers: string[] = [];
  private stopped = false;
  private loop: Promise<void> | null = null;
  private serial = 0;

  constructor(
    private readonly socket: string,
    private readonly everyMs: number,
  ) {}

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  async removeAll(): Promise<void> {
    const res = await engineApi(this.socket, "GET", "/containers/json?all=true");
    for (const c of res.json as { Id: string; Names: string[] }[]) {
      if (c.Names.some((n) => n.startsWith(`/${CONTAINER_PREFIX}`))) await engineApi(this.socket, "DELETE", `/containers/${c.Id}?force=true`);
    }
    this.containers.length = 0;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.step();
      } catch {
        this.counts.errors++; // a container removed under an exec being started: expected now and then
      }
      await new Promise((resolve) => setTimeout(resolve, this.everyMs));
    }
  }

  private async step(): Promise<void> {
    const roll = Math.random();
    if (this.containers.length < 2 || (this.containers.length < 5 && roll < 0.08)) {
      const name = `${CONTAINER_PREFIX}${process.pid}-${this.serial++}`;
      const created = await engineApi(this.socket, "POST", `/containers/create?name=${name}`, {
        Image: TEST_IMAGE,
        Cmd: ["sleep", "1000000"],
        HostConfig: { NetworkMode: "none" },
      });
      if (created.status !== 201) throw new Error(`create ${name}: ${created.status}`);
      await engineApi(this.socket, "POST", `/containers/${name}/start`);
      this.containers.push(name);
      this.counts.containersStarted++;
    } else if (this.containers.length > 3 && roll < 0.15) {
      const name = this.containers.shift() as string;
      await engineApi(this.socket, "DELETE", `/containers/${name}?force=true`);
      this.counts.containersRemoved++;
    } else if (roll < 0.6) {
      const name = this.containers[Math.floor(Math.random() * this.containers.length)] as string;
      await execDetached(this.socket, name, ["sh"]);
      this.counts.sessionsStarted++;
    } else {
      // An exec that ends by itself: exec_start/exec_die events, a pty that comes and goes.
      const name = this.containers[Math.floor(Math.random() * this.containers.length)] as string;
      await execDetached(this.socket, name, ["sleep", "1"]).catch(() => undefined);
      this.counts.shortExecs++;
    }
  }
}

function usage(daemon: Daemon, exposition: string, churn: Churn): Usage {
  const mem = process.memoryUsage();
  const counted = countExposition(exposition);
  return {
    rssMb: Math.round((mem.rss / 2 ** 20) * 10) / 10,
    heapUsedMb: Math.round((mem.heapUsed / 2 ** 20) * 10) / 10,
    fds: readdirSync("/proc/self/fd").length,
    series: counted.series,
    ptyreaperSeries: counted.ptyreaperSeries,
    gcSeries: counted.gcSeries,
    activeHandles: counted.activeHandles,
    containers: churn.containers.length,
    sessions: daemon.poller.lastSnapshot?.inventory.sessions.length ?? 0,
  };
}

/** Collects garbage first when node runs with --expose-gc, so heap figures compare like with like. */
function settle(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/**
 * Runs the daemon (HTTP on 127.0.0.1, events stream, scan thread, real reaper) but drives its cycles back to back
 * with the poller's runOnce() (a full cycle with the reaper in force, unlike the decision-only `run --once`); the churn runs meanwhile. Sessions idle 10 s are reaped, so they come and go too.
 */
export async function runSoak(options: SoakOptions): Promise<SoakFigures> {
  const config = parseConfig(
    [
      `pollInterval: 1h`, // the soak drives the cycles
      `listen: "127.0.0.1:0"`,
      `docker:`,
      `  socket: ${options.socket}`,
      `  timeout: 2s`,
      `policy:`,
      `  idleTimeout: 10s`,
      `  minAge: 0s`,
      `reaper:`,
      `  grace: 100ms`,
      `  maxPerCycle: 20`,
    ].join("\n"),
    "soak config",
    {},
  );
  // The scanner the real daemon uses (src/main.ts): a worker thread, with its full passes and incremental ones.
  const scanner = new ScanWorker({ procRoot: config.procRoot });
  const daemon = createDaemon({ config, logger: pino({ level: "silent" }), version: "soak", scanner });
  const churn = new Churn(options.socket, 150);
  await churn.removeAll();
  const address = await daemon.start();
  const scrape = async (): Promise<string> => (await fetch(`${address}/metrics`)).text();
  const warmup = options.warmupCycles ?? Math.min(500, Math.floor(options.cycles / 10));
  const progressEvery = options.progressEvery ?? 1000;
  let failed = 0;
  let peakRssMb = 0;
  let start: Usage | null = null;
  let mid: Usage | null = null;
  const half = Math.max(warmup, Math.floor(options.cycles / 2));
  const began = performance.now();
  churn.start();
  try {
    while (daemon.poller.lastSnapshot === null) await new Promise((resolve) => setTimeout(resolve, 20));
    const minMs = (options.minSeconds ?? 0) * 1000;
    let n = 0;
    while (n < options.cycles || performance.now() - began < minMs) {
      n++;
      if ((await daemon.poller.runOnce()) === null) failed++;
      // Let the reaper's timers and the events stream run between cycles.
      await new Promise((resolve) => setImmediate(resolve));
      if (n === warmup) {
        settle();
        start = usage(daemon, await scrape(), churn);
      }
      if (n === half) {
        settle();
        mid = usage(daemon, await scrape(), churn);
      }
      if (n % 50 === 0) peakRssMb = Math.max(peakRssMb, process.memoryUsage().rss / 2 ** 20);
      if (options.onProgress && n % progressEvery === 0) options.onProgress(n, usage(daemon, await scrape(), churn));
    }
    settle();
    const endText = await scrape();
    const end = usage(daemon, endText, churn);
    return {
      cycles: n,
      failedCycles: failed,
      seconds: (performance.now() - began) / 1000,
      start: start ?? end,
      mid: mid ?? end,
      end,
      peakRssMb: Math.round(peakRssMb * 10) / 10,
      churn: { ...churn.counts },
      reaped: countExposition(endText).reaped,
    };
  } finally {
    await churn.stop();
    await daemon.stop();
    await churn.removeAll().catch(() => undefined);
  }
}

/**
 * The verdict on a soak: one line per figure that did not stay flat; [] when all did. Memory is judged
 * only when asked (the default): it needs a long run and node's --expose-gc to compare like with like.
 */
export function notFlat(figures: SoakFigures, judge: { memory: boolean } = { memory: true }): string[] {
  const { start, end } = figures;
  const problems: string[] = [];
  if (figures.failedCycles > 0) problems.push(`${figures.failedCycles} cycles failed`);
  if (end.fds > start.fds + 5) problems.push(`open fds grew from ${start.fds} to ${end.fds}`);
  if (end.activeHandles > start.activeHandles + 5) problems.push(`active handles grew from ${start.activeHandles} to ${end.activeHandles}`);
  // Each container with a pty adds one ptyreaper_container_ptys series; the churn keeps at most 5.
  if (end.ptyreaperSeries > start.ptyreaperSeries + 5) problems.push(`ptyreaper series grew from ${start.ptyreaperSeries} to ${end.ptyreaperSeries}`);
  // Beyond those, only a GC kind seen for the first time may add series (a histogram of 10 lines per kind, 4 kinds).
  const otherStart = start.series - start.ptyreaperSeries - start.gcSeries;
  const otherEnd = end.series - end.ptyreaperSeries - end.gcSeries;
  if (otherEnd > otherStart) problems.push(`process and Node.js series grew from ${otherStart} to ${otherEnd}`);
  if (end.gcSeries > 40) problems.push(`GC series reached ${end.gcSeries}`);
  if (!judge.memory) return problems;
  if (end.heapUsedMb > start.heapUsedMb * 1.5 + 10) problems.push(`heap grew from ${start.heapUsedMb} MiB to ${end.heapUsedMb} MiB`);
  if (end.rssMb > start.rssMb * 1.5 + 20) problems.push(`RSS grew from ${start.rssMb} MiB to ${end.rssMb} MiB`);
  // Past the warm-up, flat means flat: at most 5% more (and 2 MiB of page-level noise) over the second half.
  const { mid } = figures;
  if (end.rssMb > mid.rssMb * 1.05 + 2) problems.push(`RSS still grew over the second half, from ${mid.rssMb} MiB to ${end.rssMb} MiB`);
  return problems;
}
