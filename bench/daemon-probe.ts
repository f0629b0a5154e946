// The bench's daemon, in its own process so its RSS is its own: real createDaemon cycles over /proc, reported as JSON lines.
//
// Usage: node daemon-probe.js '{"cycles":10,"fullCycles":4,"threads":1,"inProcess":false,"emptyScan":false}'
// Prints {"event":"ready",...}, {"event":"steady",...}, then {"event":"full-start"} and waits for a
// line on stdin (the bench's /metrics client has started) before the full cycles, then
// {"event":"full-end",...}, waits for a second line (every request answered) and stops, printing
// {"event":"done",...}.
import { createInterface } from "node:readline";
import { getHeapSpaceStatistics } from "node:v8";
import { pino } from "pino";
import { createDaemon, inProcessScanner, type Scanner } from "../src/app.js";
import { defaultConfig } from "../src/config/load.js";
import type { Config } from "../src/config/types.js";
import { DockerodeEngine } from "../src/runtimes/docker/dockerode.js";
import type { DockerEngine } from "../src/runtimes/docker/engine.js";
import { ProcFs } from "../src/procfs/procfs.js";
import { ScanWorker } from "../src/procfs/worker.js";
import { timeAsync } from "./stats.js";

interface ProbeOptions {
  cycles: number;
  fullCycles: number;
  threads: number;
  inProcess: boolean;
  /** No /proc scan at all: the daemon's own floor of memory and time. */
  emptyScan?: boolean;
}

const EMPTY_SCANNER: Scanner = {
  scan: () => ({
    processes: new Map(),
    ppids: new Map(),
    ptyFds: [],
    ttyTimes: new Map(),
    initDevpts: new Map(),
    unreadablePids: [],
    vanished: 0,
    parseErrors: {},
    bootTimeSec: 0,
  }),
  close: () => Promise.resolve(),
};

const say = (event: string, data: Record<string, unknown> = {}): void => {
  process.stdout.write(`${JSON.stringify({ event, ...data })}\n`);
};

/** Counts every request the daemon makes to the engine, whatever the cache says it did. */
function countingPort(port: DockerEngine, counter: { calls: number }): DockerEngine {
  return new Proxy(port, {
    get(target, key, receiver) {
      const value: unknown = Reflect.get(target, key, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        counter.calls++;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? "{}") as ProbeOptions;
  const base = defaultConfig();
  const config: Config = {
    ...base,
    procRoot: "/proc",
    listen: { host: "127.0.0.1", port: 0 },
    pollInterval: 3_600_000, // the bench drives the cycles itself
    reaper: { ...base.reaper, mode: "dry-run" },
    log: { level: "fatal" }, // the logger below is silent anyway
  };
  const calls = { calls: 0 };
  const worker =
    options.inProcess || options.emptyScan
      ? null
      : new ScanWorker({ procRoot: config.procRoot, threads: options.threads, fullRescanEveryMs: 3_600_000 });
  const scanner: Scanner = options.emptyScan ? EMPTY_SCANNER : (worker ?? inProcessScanner(new ProcFs(config.procRoot)));
  const daemon = createDaemon({
    config,
    logger: pino({ level: "silent" }),
    version: "bench",
    scanner,
    dockerEngine: countingPort(new DockerodeEngine(config.docker.socket, config.docker.timeout), calls),
  });
  const address = await daemon.start(); // its first cycle, a full pass, starts now
  const firstStart = performance.now();
  while (daemon.poller.lastSnapshot === null && performance.now() - firstStart < 120_000) await new Promise((resolve) => setTimeout(resolve, 20));
  const first = daemon.poller.lastSnapshot;
  say("ready", {
    address,
    firstCycleMs: performance.now() - firstStart,
    docker: first?.docker ?? null,
    ptys: first?.inventory.ptys.length ?? 0,
    sessions: first?.inventory.sessions.length ?? 0,
  });

  // A second cycle lets the Docker cache settle (events stream up, every exec seen once).
  await daemon.poller.runOnce();
  const steady: { wallMs: number; cpuMs: number; dockerCalls: number; ok: boolean }[] = [];
  for (let n = 0; n < options.cycles; n++) {
    const before = calls.calls;
    const { value, wallMs, cpuMs } = await timeAsync(() => daemon.poller.runOnce());
    steady.push({ wallMs, cpuMs, dockerCalls: calls.calls - before, ok: value !== null });
  }
  say("steady", { cycles: steady, rssMb: process.memoryUsage().rss / 2 ** 20 });

  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  say("full-start");
  await lines.next(); // the bench's /metrics requests have started
  const full: { wallMs: number; cpuMs: number }[] = [];
  for (let n = 0; n < options.fullCycles; n++) {
    worker?.requestFullPass(); // the in-process scanner is always full
    const { wallMs, cpuMs } = await timeAsync(() => daemon.poller.runOnce());
    full.push({ wallMs, cpuMs });
  }
  say("full-end", { cycles: full });
  await lines.next(); // every request answered: stopping now would reset the late ones
  process.stdin.destroy(); // an open stdin would keep this process alive

  const usage = process.memoryUsage();
  const rssAfterMb = usage.rss / 2 ** 20;
  // Where the main thread's memory is (the scan thread's own heap is the rest of RSS with native code and stacks).
  const mb = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;
  const spaces = Object.fromEntries(getHeapSpaceStatistics().map((space) => [space.space_name, mb(space.space_size)]));
  await daemon.stop();
  say("done", {
    rssPeakMb: process.resourceUsage().maxRSS / 1024,
    rssAfterMb,
    heapTotalMb: mb(usage.heapTotal),
    externalMb: mb(usage.external),
    spaces,
  });
}

main().catch((err: unknown) => {
  say("error", { message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  process.exitCode = 1;
});
