// `npm run bench`: builds a synthetic busy host, measures ptyreaper on it and prints a table; it asserts nothing about time.
import { spawn, spawnSync } from "node:child_process";
import http from "node:http";
import { cpus, loadavg, release } from "node:os";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { ProcScan } from "../src/domain/types.js";
import { ProcFs } from "../src/procfs/procfs.js";
import { IncrementalScanner, scanProc } from "../src/procfs/scan.js";
import { loadNativeFdLinks } from "../src/procfs/native.js";
import { ScanWorker } from "../src/procfs/worker.js";
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from "../src/systemd/install.js";
import { measureCli } from "./cli.js";
import { costRows, measureCost } from "./cost.js";
import { SyntheticHost, type LoadSpec } from "./load.js";
import { median, ms, percentile, thousands, timeAsync, timeSync } from "./stats.js";

const USAGE = `usage: npm run bench -- [--procs N] [--fds N] [--ptys N] [--namespaces N] [--runs N] [--cycles N]
                        [--full-cycles N] [--lsof-runs N] [--threads N] [--quick] [--hold] [--json]
                        [--cost-only] [--window S] [--warmup S] [--scale N] [--baseline REV]
  --procs N        fd-holder processes (default 4075)          env PTYREAPER_BENCH_PROCS
  --fds N          open fds per holder, 0-2 included (39)       env PTYREAPER_BENCH_FDS
  --ptys N         ptys over all namespaces (501)               env PTYREAPER_BENCH_PTYS
  --namespaces N   PID + mount namespaces with their own devpts (22)  env PTYREAPER_BENCH_NAMESPACES
  --runs N         full scans per measure, median reported (5)
  --cycles N       steady-state daemon cycles (10)
  --full-cycles N  full daemon cycles while /metrics is polled (4)
  --lsof-runs N    lsof runs, median reported (3)
  --threads N      also measure a ScanWorker with N threads (2)
  --quick          a small load and few runs: a smoke run for tests
  --hold           build the load, print its pids and keep it until Ctrl-C (for measuring by hand)
  --json           also print every figure as one JSON line at the end
  --cost-only      only the deployed daemons' CPU and RSS over minutes (quiet and with churn, 1× and 4×)
  --window S       seconds measured per cost phase (180)          env PTYREAPER_BENCH_WINDOW
  --warmup S       seconds after start or growth before measuring (60)  env PTYREAPER_BENCH_WARMUP
                   PTYREAPER_BENCH_SHORT=1: window 60, warm-up 20 (the cost part takes about 8 minutes)
  --scale N        the larger load, N times the first (4)
  --baseline REV   the previous daemon, built from this git revision (main); "none" to skip
                                                               env PTYREAPER_BENCH_BASELINE`;

interface BenchOptions extends LoadSpec {
  runs: number;
  cycles: number;
  fullCycles: number;
  lsofRuns: number;
  threads: number;
  hold: boolean;
  json: boolean;
  cost: { only: boolean; run: boolean; windowSeconds: number; warmupSeconds: number; scale: number; baseline: string | null };
}

function parseOptions(argv: string[], env: NodeJS.ProcessEnv): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      procs: { type: "string" },
      fds: { type: "string" },
      ptys: { type: "string" },
      namespaces: { type: "string" },
      runs: { type: "string" },
      cycles: { type: "string" },
      "full-cycles": { type: "string" },
      "lsof-runs": { type: "string" },
      threads: { type: "string" },
      quick: { type: "boolean", default: false },
      hold: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      "cost-only": { type: "boolean", default: false },
      window: { type: "string" },
      warmup: { type: "string" },
      scale: { type: "string" },
      baseline: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const quick = values.quick ?? false;
  const int = (name: string, flag: string | undefined, envName: string | null, normal: number, small: number): number => {
    const text = flag ?? (envName ? env[envName] : undefined);
    if (text === undefined) return quick ? small : normal;
    const value = Number(text);
    if (!Number.isInteger(value) || value < 0) throw new Error(`--${name}: expected a whole number, got ${JSON.stringify(text)}`);
    return value;
  };
  return {
    procs: int("procs", values.procs, "PTYREAPER_BENCH_PROCS", 4075, 40),
    fds: int("fds", values.fds, "PTYREAPER_BENCH_FDS", 39, 8),
    ptys: int("ptys", values.ptys, "PTYREAPER_BENCH_PTYS", 501, 4),
    namespaces: int("namespaces", values.namespaces, "PTYREAPER_BENCH_NAMESPACES", 22, 2),
    runs: Math.max(1, int("runs", values.runs, null, 5, 2)),
    cycles: Math.max(1, int("cycles", values.cycles, null, 10, 3)),
    fullCycles: Math.max(1, int("full-cycles", values["full-cycles"], null, 4, 2)),
    lsofRuns: int("lsof-runs", values["lsof-runs"], null, 3, 1),
    threads: Math.max(1, int("threads", values.threads, null, 2, 2)),
    hold: values.hold ?? false,
    json: values.json ?? false,
    cost: costOptions(values, env, quick, int),
  };
}

/** The cost part: run by a full bench and by --cost-only; short windows with PTYREAPER_BENCH_SHORT=1 or --quick. */
function costOptions(
  values: { "cost-only"?: boolean; window?: string; warmup?: string; scale?: string; baseline?: string },
  env: NodeJS.ProcessEnv,
  quick: boolean,
  int: (name: string, flag: string | undefined, envName: string | null, normal: number, small: number) => number,
): BenchOptions["cost"] {
  const short = quick || env.PTYREAPER_BENCH_SHORT === "1";
  const only = values["cost-only"] ?? false;
  const baseline = values.baseline ?? env.PTYREAPER_BENCH_BASELINE ?? "main";
  return {
    only,
    run: only || !quick,
    windowSeconds: Math.max(10, int("window", values.window, "PTYREAPER_BENCH_WINDOW", short ? 60 : 180, 10)),
    warmupSeconds: int("warmup", values.warmup, "PTYREAPER_BENCH_WARMUP", short ? 20 : 60, 5),
    scale: Math.max(1, int("scale", values.scale, null, 4, 2)),
    baseline: baseline === "none" ? null : baseline,
  };
}

const log = (line: string): void => {
  process.stderr.write(`bench: ${line}\n`);
};

/** Every open fd on the host, from the fd directories' sizes (Linux ≥ 6.2) or their listings. */
function countHost(procfs: ProcFs): { processes: number; fds: number } {
  let fds = 0;
  let processes = 0;
  for (const pid of procfs.pids()) {
    try {
      fds += procfs.fdCount(pid) || procfs.fds(pid).length;
      processes++;
    } catch {
      // exited, or unreadable: not counted
    }
  }
  return { processes, fds };
}

/** How many of the load's ptys the scan found with their master and slave holders on their own devpts instance. */
function loadPtysFound(scan: ProcScan, load: SyntheticHost): number {
  const held = new Set(scan.ptyFds.map((fd) => `${fd.role} ${fd.pid} ${fd.devptsDev}:${fd.index}`));
  let found = 0;
  for (const ns of load.namespaces) {
    for (const pty of ns.ptys) {
      const key = `${ns.devptsDev}:${pty.index}`;
      if (held.has(`master ${ns.pid} ${key}`) && held.has(`slave ${pty.slavePid} ${key}`)) found++;
    }
  }
  return found;
}

function runLsof(): { wallMs: number; lines: number } | { error: string } {
  if (spawnSync("sh", ["-c", "command -v lsof"]).status !== 0) return { error: "lsof is not installed (apt-get install -y lsof)" };
  const start = performance.now();
  const result = spawnSync("sh", ["-c", "lsof -n -w | grep -E 'pts|ptmx' | wc -l"], { encoding: "utf8", maxBuffer: 1 << 20 });
  const wallMs = performance.now() - start;
  if (result.error) return { error: result.error.message };
  return { wallMs, lines: Number(result.stdout.trim()) };
}

/**
 * Requests /metrics every `everyMs` until `stop.done`, without waiting for earlier answers (open
 * loop): a stalled event loop then shows in every request it holds up, not in one only.
 */
async function pollMetrics(url: string, everyMs: number, stop: { done: boolean }): Promise<{ latencies: number[]; errors: string[] }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const latencies: number[] = [];
  const errors: string[] = [];
  const inFlight = new Set<Promise<void>>();
  const one = (): Promise<void> => {
    const start = performance.now();
    return new Promise<void>((resolve) => {
      http
        .get(url, { agent }, (res) => {
          res.resume();
          res.on("end", () => {
            if (res.statusCode === 200) latencies.push(performance.now() - start);
            else errors.push(`HTTP ${res.statusCode}`);
            resolve();
          });
        })
        .on("error", (err) => {
          errors.push(err.message);
          resolve();
        });
    });
  };
  let next = performance.now();
  while (!stop.done) {
    const request = one();
    inFlight.add(request);
    void request.then(() => inFlight.delete(request));
    next += everyMs;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - performance.now())));
  }
  await Promise.all(inFlight);
  agent.destroy();
  return { latencies, errors };
}

const DEPLOYED_ENV_TEXT = Object.entries(DAEMON_ENV)
  .map(([key, value]) => `${key}=${value}`)
  .join(" ");

interface ProbeResult {
  ready: { firstCycleMs: number; docker: { available: boolean; error: string | null } | null; ptys: number; sessions: number };
  steady: { wallMs: number; cpuMs: number; dockerCalls: number; ok: boolean }[];
  full: { wallMs: number; cpuMs: number }[];
  metrics: { latencies: number[]; errors: string[] };
  rssPeakMb: number;
  rssAfterMb: number;
}

/** Runs bench/daemon-probe in a child process and polls its /metrics during its full cycles. */
async function probeDaemon(
  options: { cycles: number; fullCycles: number; threads: number; inProcess: boolean; emptyScan?: boolean },
  nodeFlags: string[] = [],
  env: Record<string, string> = {},
): Promise<ProbeResult> {
  const script = fileURLToPath(new URL("./daemon-probe.js", import.meta.url));
  const child = spawn(process.execPath, [...nodeFlags, script, JSON.stringify(options)], {
    stdio: ["pipe", "pipe", "inherit"],
    env: { ...process.env, ...env },
  });
  const result: Partial<ProbeResult> = {};
  const stop = { done: false };
  let polling: Promise<{ latencies: number[]; errors: string[] }> | null = null;
  let address = "";
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  for await (const line of createInterface({ input: child.stdout })) {
    const message = JSON.parse(line) as Record<string, unknown> & { event: string };
    if (message.event === "ready") {
      address = String(message.address);
      result.ready = message as unknown as ProbeResult["ready"];
    } else if (message.event === "steady") result.steady = message.cycles as ProbeResult["steady"];
    else if (message.event === "full-start") {
      polling = pollMetrics(`${address}/metrics`, 10, stop);
      await new Promise((resolve) => setTimeout(resolve, 100)); // the first scrapes land before the scans start
      child.stdin.write("go\n");
    } else if (message.event === "full-end") {
      stop.done = true;
      result.full = message.cycles as ProbeResult["full"];
      result.metrics = polling ? await polling : { latencies: [], errors: [] };
      child.stdin.end("stop\n");
    } else if (message.event === "done") {
      result.rssPeakMb = Number(message.rssPeakMb);
      result.rssAfterMb = Number(message.rssAfterMb);
    } else if (message.event === "error") {
      stop.done = true;
      throw new Error(`daemon probe: ${String(message.message)}`);
    }
  }
  const code = await exited;
  if (code !== 0 || !result.steady || !result.full || !result.ready) throw new Error(`daemon probe exited with ${code} before reporting everything`);
  return result as ProbeResult;
}

interface Row {
  measure: string;
  value: string;
  target: string;
  met: string;
}

function printTable(rows: Row[]): void {
  const widths = (["measure", "value", "target", "met"] as const).map((key) => Math.max(key.length, ...rows.map((row) => row[key].length)));
  const line = (cells: string[]): string => `| ${cells.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  process.stdout.write(`${line(["measure", "value", "target", "met"])}\n`);
  process.stdout.write(`${line(widths.map((w) => "-".repeat(w)))}\n`);
  for (const row of rows) process.stdout.write(`${line([row.measure, row.value, row.target, row.met])}\n`);
}

const verdict = (ok: boolean): string => (ok ? "yes" : "NO");

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2), process.env);
  const spec: LoadSpec = { procs: options.procs, fds: options.fds, ptys: options.ptys, namespaces: options.namespaces };
  const procfs = new ProcFs("/proc");
  const loadBefore = loadavg()
    .map((value) => value.toFixed(2))
    .join(" ");
  log(`building the load: ${options.procs} processes × ${options.fds} fds, ${options.ptys} ptys over ${options.namespaces} devpts namespaces`);
  const built = await timeAsync(() => SyntheticHost.create(spec));
  const load = built.value;
  let closing: Promise<void> | null = null;
  const teardown = (): Promise<void> => (closing ??= load.close());
  const onSignal = (signal: NodeJS.Signals): void => {
    log(`${signal}: tearing the load down`);
    void teardown().then(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    log(`load ready in ${ms(built.wallMs)}`);
    if (options.hold) {
      process.stdout.write(
        `${JSON.stringify({ holders: load.holderPids.length, namespaces: load.namespaces.map((ns) => ({ pid: ns.pid, devptsDev: ns.devptsDev, ptys: ns.ptys.length })) })}\n`,
      );
      log("holding the load; Ctrl-C tears it down");
      await new Promise(() => undefined);
    }
    await measure(options, load, procfs, loadBefore);
  } finally {
    await teardown();
  }
}

async function measure(options: BenchOptions, load: SyntheticHost, procfs: ProcFs, loadBefore: string): Promise<void> {
  const host = countHost(procfs);
  const rows: Row[] = [];
  const figures: Record<string, unknown> = { spec: options, host, cpus: cpus().length, kernel: release(), loadavgBefore: loadBefore };
  if (!options.cost.only) await measureOnce(options, load, procfs, host, rows, figures);
  if (options.cost.run) {
    // Last: it grows the load to 4×, which the measures above must not see.
    const cost = await measureCost(load, { ...options.cost, log, hostSize: () => countHost(procfs) });
    rows.push(...costRows(cost));
    figures.cost = cost;
  }

  const loadAfter = loadavg()
    .map((value) => value.toFixed(2))
    .join(" ");
  process.stdout.write(
    `\nptyreaper bench: ${options.procs} processes × ${options.fds} fds, ${load.ptyCount} ptys over ${options.namespaces} devpts namespaces\n` +
      `host: ${thousands(host.fds)} fds in ${thousands(host.processes)} processes; ${cpus().length} cpus; Linux ${release()}; ` +
      `load average ${loadBefore} before, ${loadAfter} after\n\n`,
  );
  printTable(rows);
  figures.loadavgAfter = loadAfter;
  if (options.json) process.stdout.write(`${JSON.stringify(figures)}\n`);
}

/** The measures of one moment: full scans, lsof, the CLI, incremental passes, the daemon driven cycle by cycle. */
async function measureOnce(
  options: BenchOptions,
  load: SyntheticHost,
  procfs: ProcFs,
  host: { processes: number; fds: number },
  rows: Row[],
  figures: Record<string, unknown>,
): Promise<void> {
  const per160k = (wallMs: number): number => (wallMs * 160_000) / host.fds;

  // 1. Full inventory in this thread: what `ptyreaper sessions` does.
  log("full scans (scanProc)");
  const cold = timeSync(() => scanProc(procfs));
  const warm = Array.from({ length: options.runs }, () => timeSync(() => scanProc(procfs)));
  const fullMs = median(warm.map((run) => run.wallMs));
  const fullCpu = median(warm.map((run) => run.cpuMs));
  const found = loadPtysFound(warm.at(-1)?.value ?? cold.value, load);
  rows.push({
    measure: `full inventory, scanProc (median of ${options.runs}; first ${ms(cold.wallMs)})`,
    value: `${ms(fullMs)} = ${ms(per160k(fullMs))} per 160k fds, ${thousands(host.fds / (fullMs / 1000))} fds/s, cpu ${ms(fullCpu)}`,
    target: "≤ 900 ms per 160k fds",
    met: verdict(per160k(fullMs) <= 900),
  });
  rows.push({
    measure: "load ptys found, master + slave on their own devpts",
    value: `${found} of ${load.ptyCount}`,
    target: "all",
    met: verdict(found === load.ptyCount),
  });
  figures.scanProc = { coldMs: cold.wallMs, medianMs: fullMs, cpuMs: fullCpu, per160kMs: per160k(fullMs), loadPtysFound: found };
  const nativeLoad = loadNativeFdLinks();
  rows.push({
    measure: "fd links read by",
    value: nativeLoad.reader ? "the native helper (readlinkat, 2 threads)" : `JS readlink (${nativeLoad.reason})`,
    target: "",
    met: "",
  });
  figures.native = nativeLoad.reader !== null;
  if (procfs.native) {
    // The fallback on the same load, for comparison: what a host without the built helper gets.
    const jsProcfs = new ProcFs("/proc", { native: null });
    const jsRuns = Array.from({ length: options.runs }, () => timeSync(() => scanProc(jsProcfs)));
    const jsMs = median(jsRuns.map((run) => run.wallMs));
    rows.push({
      measure: `full inventory, scanProc with JS reads (fallback; median of ${options.runs})`,
      value: `${ms(jsMs)} = ${ms(per160k(jsMs))} per 160k fds, cpu ${ms(median(jsRuns.map((run) => run.cpuMs)))}`,
      target: "",
      met: "",
    });
    figures.scanProcJs = { medianMs: jsMs };
  }

  // 2. The same full pass in worker threads, as the daemon runs it.
  const workerFull: Record<number, number> = {};
  for (const threads of [...new Set([1, options.threads])]) {
    log(`full passes in a ScanWorker with ${threads} thread(s)`);
    // No pass budget: this times whole passes (the daemon's own budget is 2 s, far above them on a quiet host).
    const worker = new ScanWorker({ procRoot: "/proc", threads, passBudgetMs: Number.POSITIVE_INFINITY });
    try {
      // Starts the threads and warms them: by the time the daemon's periodic full pass runs, its
      // thread has run many passes (the first one or two here take 250-300 ms, then ~200 ms).
      for (let n = 0; n < 3; n++) {
        worker.requestFullPass();
        await worker.scan({ ptyAllocated: 0 });
      }
      const runs = [];
      for (let n = 0; n < options.runs; n++) {
        worker.requestFullPass();
        runs.push(await timeAsync(() => worker.scan({ ptyAllocated: procfs.ptyLimits().allocated })));
      }
      workerFull[threads] = median(runs.map((run) => run.wallMs));
      rows.push({
        measure: `full inventory, ScanWorker ${threads} thread(s) (median of ${options.runs})`,
        value: `${ms(workerFull[threads] ?? NaN)} = ${ms(per160k(workerFull[threads] ?? NaN))} per 160k fds, cpu ${ms(median(runs.map((run) => run.cpuMs)))}`,
        target: threads === 1 ? "≤ 900 ms per 160k fds" : "",
        met: threads === 1 ? verdict(per160k(workerFull[threads] ?? Infinity) <= 900) : "",
      });
    } finally {
      await worker.close();
    }
  }
  figures.scanWorkerFullMs = workerFull;

  // 3. lsof on the same load.
  log(`lsof -n -w (${options.lsofRuns} run(s))`);
  const lsofRuns = Array.from({ length: options.lsofRuns }, () => runLsof());
  const lsofOk = lsofRuns.filter((run): run is { wallMs: number; lines: number } => "wallMs" in run);
  if (lsofOk.length > 0) {
    const lsofMs = median(lsofOk.map((run) => run.wallMs));
    rows.push({
      measure: "lsof -n -w | grep -E 'pts|ptmx' (same load)",
      value: `${ms(lsofMs)}, ${lsofOk[0]?.lines ?? 0} lines (no devpts instance)`,
      target: "",
      met: "",
    });
    rows.push({ measure: "lsof ÷ scanProc", value: `${(lsofMs / fullMs).toFixed(1)}×`, target: "≥ 8×", met: verdict(lsofMs / fullMs >= 8) });
    // The target is the inventory's (scanProc, also what `ptyreaper sessions` runs). The daemon's own
    // full pass (one scan thread, src/main.ts) also reads what its incremental passes compare: shown beside it.
    for (const [threads, wallMs] of Object.entries(workerFull)) {
      rows.push({
        measure:
          threads === "1"
            ? "for reference: lsof ÷ the daemon's own full pass (ScanWorker, 1 thread: the inventory plus incremental signatures)"
            : `for reference: lsof ÷ ScanWorker ${threads} threads`,
        value: `${(lsofMs / wallMs).toFixed(1)}×`,
        target: "",
        met: "",
      });
    }
    figures.lsofMs = lsofMs;
  } else if (options.lsofRuns > 0) {
    const error = lsofRuns[0] && "error" in lsofRuns[0] ? lsofRuns[0].error : "failed";
    rows.push({ measure: "lsof -n -w", value: `not measured: ${error}`, target: "", met: "" });
  }

  // 3b. The CLI as a user runs it, against the C floor and lsof of the same load.
  const cli = await measureCli({ runs: options.runs, lsofMs: typeof figures.lsofMs === "number" ? figures.lsofMs : null, log });
  rows.push(...cli.rows);
  figures.cli = cli.figures;

  // 4. Steady-state passes of the incremental scanner, in this thread.
  log("incremental passes");
  const scanner = new IncrementalScanner(procfs, { now: () => 0 });
  scanner.pass({}, "full");
  const passes = Array.from({ length: options.cycles }, () => timeSync(() => scanner.pass({}, "incremental")));
  const passMs = median(passes.map((run) => run.wallMs));
  rows.push({
    measure: `steady-state scan, IncrementalScanner (median of ${options.cycles})`,
    value: `${ms(passMs)}, cpu ${ms(median(passes.map((run) => run.cpuMs)))}`,
    target: "",
    met: "",
  });
  figures.incrementalPassMs = passMs;

  // 5. The daemon itself: cycles, CPU, Docker calls, RSS, and /metrics while it runs full passes.
  log("daemon cycles (ScanWorker, 1 thread) with /metrics requested every 10 ms during full passes");
  const daemon = await probeDaemon({ cycles: options.cycles, fullCycles: options.fullCycles, threads: 1, inProcess: false });
  const cycleMs = median(daemon.steady.map((cycle) => cycle.wallMs));
  const cycleCpu = median(daemon.steady.map((cycle) => cycle.cpuMs));
  const maxCalls = Math.max(...daemon.steady.map((cycle) => cycle.dockerCalls));
  rows.push({
    measure: `steady-state daemon cycle: scan + correlate + policy + metrics (median of ${options.cycles}, max ${ms(Math.max(...daemon.steady.map((c) => c.wallMs)))})`,
    value: ms(cycleMs),
    target: "≤ 300 ms",
    met: verdict(cycleMs <= 300),
  });
  rows.push({ measure: "CPU per steady-state cycle (all threads)", value: ms(cycleCpu), target: "", met: "" });
  const dockerUp = daemon.ready.docker?.available === true;
  rows.push({
    measure: "Docker API requests per steady-state cycle",
    value: dockerUp
      ? `${maxCalls} at most (${daemon.steady.map((cycle) => cycle.dockerCalls).join(" ")}); ${daemon.ready.sessions} exec sessions seen`
      : `not measured: Docker unavailable (${daemon.ready.docker?.error ?? "?"})`,
    target: "0",
    met: dockerUp ? verdict(maxCalls === 0) : "",
  });
  const latency = (result: ProbeResult): string => {
    const { latencies, errors } = result.metrics;
    const tail = errors.length > 0 ? `, ${errors.length} errors (${[...new Set(errors)].join("; ")})` : "";
    return `p50 ${ms(percentile(latencies, 50))}, p99 ${ms(percentile(latencies, 99))}, max ${ms(Math.max(...latencies))}${tail}`;
  };
  const p99 = percentile(daemon.metrics.latencies, 99);
  rows.push({
    measure: `/metrics during ${options.fullCycles} full daemon cycles (${ms(median(daemon.full.map((c) => c.wallMs)))} each), ${daemon.metrics.latencies.length} requests`,
    value: latency(daemon),
    target: "p99 ≤ 50 ms",
    met: verdict(p99 <= 50 && daemon.metrics.errors.length === 0),
  });
  rows.push({
    measure: "for reference: daemon RSS, peak / after the cycles, with node's defaults",
    value: `${daemon.rssPeakMb.toFixed(0)} MB / ${daemon.rssAfterMb.toFixed(0)} MB`,
    target: "",
    met: "",
  });
  figures.daemon = {
    cycleMs,
    cycleCpuMs: cycleCpu,
    maxDockerCalls: dockerUp ? maxCalls : null,
    metricsP50Ms: percentile(daemon.metrics.latencies, 50),
    metricsP99Ms: p99,
    rssPeakMb: daemon.rssPeakMb,
    rssAfterMb: daemon.rssAfterMb,
    steady: daemon.steady,
    full: daemon.full,
  };

  // As deployed (systemd/ptyreaper.service, npm start): the main thread's nursery grows to 32 MB by
  // default, and glibc gives each thread that mallocs an arena of its own; both are capped there.
  const flags = DAEMON_NODE_FLAGS.join(" ");
  log(`daemon again as deployed: node ${flags}, ${DEPLOYED_ENV_TEXT}`);
  const small = await probeDaemon(
    { cycles: options.cycles, fullCycles: options.fullCycles, threads: 1, inProcess: false },
    [...DAEMON_NODE_FLAGS],
    DAEMON_ENV,
  );
  rows.push({
    measure: `daemon RSS, peak / after, as deployed: ${flags}, ${DEPLOYED_ENV_TEXT} (cycle ${ms(median(small.steady.map((c) => c.wallMs)))})`,
    value: `${small.rssPeakMb.toFixed(0)} MB / ${small.rssAfterMb.toFixed(0)} MB`,
    target: "≤ 120 MB",
    met: verdict(small.rssPeakMb <= 120),
  });
  rows.push({
    measure: "/metrics as deployed",
    value: latency(small),
    target: "p99 ≤ 50 ms",
    met: verdict(percentile(small.metrics.latencies, 99) <= 50),
  });
  figures.daemonSmallNursery = {
    rssPeakMb: small.rssPeakMb,
    rssAfterMb: small.rssAfterMb,
    cycleMs: median(small.steady.map((c) => c.wallMs)),
    metricsP99Ms: percentile(small.metrics.latencies, 99),
  };

  // Where the rest goes: the same daemon with no /proc scan at all.
  log("daemon with no /proc scan (its floor)");
  const floor = await probeDaemon({ cycles: 2, fullCycles: 1, threads: 1, inProcess: true, emptyScan: true });
  rows.push({
    measure: "for reference: daemon RSS with no /proc scan, peak (node defaults)",
    value: `${floor.rssPeakMb.toFixed(0)} MB`,
    target: "",
    met: "",
  });
  figures.daemonFloorRssMb = floor.rssPeakMb;

  // For contrast: the same daemon scanning in its own event loop.
  log("contrast: daemon with the scan in its event loop");
  const inline = await probeDaemon({ cycles: 1, fullCycles: Math.min(2, options.fullCycles), threads: 1, inProcess: true });
  rows.push({ measure: "contrast: /metrics while an in-process scan blocks the loop", value: latency(inline), target: "", met: "" });
  figures.inlineMetricsP99Ms = percentile(inline.metrics.latencies, 99);
  rows.push({
    measure: "contrast: daemon RSS with the scan in its event loop, peak (node defaults)",
    value: `${inline.rssPeakMb.toFixed(0)} MB`,
    target: "",
    met: "",
  });
  figures.inlineRssPeakMb = inline.rssPeakMb;
}

main().catch((err: unknown) => {
  log(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exitCode = 1;
});
