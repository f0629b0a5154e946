// The daemon as deployed, over minutes: its CPU (share of one core, from /proc/PID/stat, not wall time) and RSS on the
// synthetic host, quiet and with churn, at 1× and 4× the load; beside it the previous main's daemon and the C floor.
//
// Churn: 10 short-lived processes a second (4 on the host with the holders' fds, 3 in the load's devpts
// namespaces, 3 in a Docker container of their own), and one `docker exec -it` session under a real tty (script(1))
// opened and closed every 30 s. Both daemons run side by side on the same load in the same minutes, in dry-run.
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CLOCK_TICKS_PER_SECOND } from "../src/domain/inventory.js";
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from "../src/systemd/install.js";
import { measureCFloor } from "./cli.js";
import type { SyntheticHost } from "./load.js";
import { ms, thousands } from "./stats.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CHURN_IMAGE = "ptyreaper-test/busybox:latest";
/** Churn per second, by where it runs: 10 in all. */
const HOST_PER_SECOND = 4;
const NAMESPACE_PER_SECOND = 3;
/** The container's own loop starts three `sleep 0.1` a second. */
const CONTAINER_LOOP = "while :; do sleep 0.1 & sleep 0.1 & sleep 0.1 & wait; sleep 0.7; done";
const EXEC_EVERY_MS = 30_000;
/** How long each `docker exec -it` session stays open. */
const EXEC_HOLD_SECONDS = 10;
const BLIP_SECONDS = 0.2;

export interface CostOptions {
  /** Seconds measured per phase (the issue's 180). */
  windowSeconds: number;
  /** Seconds after a daemon's first cycle, or after the load grows, before measuring (the issue's 60). */
  warmupSeconds: number;
  /** The previous daemon: a git revision of this repository, or null for none. */
  baseline: string | null;
  /** The larger load, as a multiple of the first (4). */
  scale: number;
  log: (line: string) => void;
  /** Every process and open fd on the host now: on a shared machine the daemons read more than the load. */
  hostSize: () => { processes: number; fds: number };
}

export interface DaemonWindow {
  /** CPU of every thread over the window, as a share of one core (%). */
  cpuPercent: number;
  cpuSecondsPerMinute: number;
  rssPeakMb: number;
  rssLastMb: number;
  /** Poll cycles that completed in the window, from ptyreaper_poll_duration_seconds_count. */
  cycles: number | null;
  /**
   * Of those, cycles whose scan was a full pass (ptyreaper_scans_total{pass="full"}; null for a daemon without it): one
   * costs about what the C floor's scan does, so a window with one and a window without are not comparable.
   */
  fullScans: number | null;
}

export interface PhaseResult {
  name: string;
  scale: number;
  churn: boolean;
  windowSeconds: number;
  /** The whole host as the window began. */
  host: { processes: number; fds: number };
  daemons: Record<string, DaemonWindow>;
  /** Churn done in the window: short-lived processes started, exec sessions opened, requests that failed. */
  churned?: { processes: number; execs: number; failures: number };
}

export interface CostFigures {
  phases: PhaseResult[];
  /** Each daemon's BPF finder, as its ptyreaper_scan_info said after its first cycle. */
  finders: Record<string, string>;
  cFloor: Record<string, { wallMs: number; cpuMs: number } | { error: string }>;
  baseline: string;
}

const sleep = (millis: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, millis));

/** utime + stime of every thread of `pid`, in clock ticks; null when it is gone. */
function cpuTicks(pid: number): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    // After "pid (comm) ", state is field 3: utime (14) and stime (15) are at 11 and 12.
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return null;
  }
}

function rssMb(pid: number): number | null {
  try {
    const line = readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmRSS:\s+(\d+) kB$/m);
    return line ? Number(line[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/**
 * The capabilities systemd leaves the daemon with these unit files (their CapabilityBoundingSet= lines,
 * read so the bench follows them), as setpriv's --bounding-set argument: root keeps exactly these across exec.
 */
function boundingSet(...files: string[]): string {
  const caps = files.flatMap((file) =>
    [...readFileSync(join(ROOT, file), "utf8").matchAll(/^CapabilityBoundingSet=(.*)$/gm)].flatMap((m) => (m[1] ?? "").trim().split(/\s+/)),
  );
  if (caps.length === 0) throw new Error(`no CapabilityBoundingSet= in ${files.join(", ")}`);
  return ["-all", ...caps.map((cap) => `+${cap.replace(/^CAP_/, "").toLowerCase()}`)].join(",");
}

const UNIT = "systemd/ptyreaper.service";
/** The drop-in that grants the BPF finder's capabilities. */
const BPF_DROP_IN = "systemd/bpf-finder.conf";

/**
 * A daemon started as the unit starts it: the launcher's node flags, the unit's environment and
 * capability bounding set, the default interval.
 */
class DeployedDaemon {
  private url = "";

  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly logPath: string,
  ) {}

  static async start(name: string, mainJs: string, workdir: string, unitFiles: readonly string[]): Promise<DeployedDaemon> {
    const config = join(workdir, `${name}.yaml`);
    // Everything else is the shipped default: 10 s interval, Docker and the other runtimes on `auto`.
    writeFileSync(config, "reaper:\n  mode: dry-run\n");
    const logPath = join(workdir, `${name}.log`);
    const log = openSync(logPath, "w");
    const argv = [
      "--bounding-set",
      boundingSet(...unitFiles),
      "--",
      process.execPath,
      ...DAEMON_NODE_FLAGS,
      mainJs,
      "run",
      "--config",
      config,
      "--listen",
      "127.0.0.1:0",
    ];
    const child = spawn("setpriv", argv, {
      env: { ...process.env, ...DAEMON_ENV },
      stdio: ["ignore", log, log],
    });
    closeSync(log);
    const daemon = new DeployedDaemon(name, child, logPath);
    await daemon.ready();
    return daemon;
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** Where it listens, from its "ptyreaper started" log line, then until /readyz answers 200: its first cycle is done. */
  private async ready(): Promise<void> {
    const deadline = performance.now() + 300_000;
    while (performance.now() < deadline) {
      if (this.child.exitCode !== null) throw new Error(`${this.name} exited with ${this.child.exitCode}: see ${this.logPath}`);
      if (this.url === "") this.url = this.listening();
      else if (await this.answersReady()) return;
      await sleep(500);
    }
    throw new Error(`${this.name} not ready after 300 s: see ${this.logPath}`);
  }

  /** Its address, once its log says where it listens ("" before: it was started on port 0). */
  private listening(): string {
    const started = readFileSync(this.logPath, "utf8")
      .split("\n")
      .find((line) => line.includes('"msg":"ptyreaper started"'));
    const address = started ? (JSON.parse(started) as { address?: string }).address : undefined;
    return address ? `http://${address.replace(/^http:\/\//, "")}` : "";
  }

  private async answersReady(): Promise<boolean> {
    try {
      return (await fetch(`${this.url}/readyz`)).status === 200;
    } catch {
      return false; // not answering yet
    }
  }

  /** ptyreaper_scan_info's finder label ("bpf" or "none"), or "?" where the daemon has none (older ones). */
  async finder(): Promise<string> {
    try {
      const text = await (await fetch(`${this.url}/metrics`)).text();
      return /^ptyreaper_scan_info\{.*finder="([^"]*)"/m.exec(text)?.[1] ?? "?";
    } catch {
      return "?";
    }
  }

  /** Completed poll cycles so far, and how many scanned with a full pass; null where /metrics does not say. */
  async cycles(): Promise<{ cycles: number | null; fullScans: number | null }> {
    try {
      const text = await (await fetch(`${this.url}/metrics`)).text();
      const line = text.match(/^ptyreaper_poll_duration_seconds_count(?:\{[^}]*\})? (\d+)/m);
      const full = text.match(/^ptyreaper_scans_total\{pass="full"\} (\d+)/m);
      return { cycles: line ? Number(line[1]) : null, fullScans: full ? Number(full[1]) : null };
    } catch {
      return { cycles: null, fullScans: null };
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 20_000);
    await exited;
    clearTimeout(timer);
  }
}

/** CPU and RSS of each daemon over `seconds`, RSS sampled every second. */
async function measureWindow(daemons: readonly DeployedDaemon[], seconds: number): Promise<Record<string, DaemonWindow>> {
  const startTicks = daemons.map((daemon) => cpuTicks(daemon.pid));
  const startCycles = await Promise.all(daemons.map((daemon) => daemon.cycles()));
  const started = performance.now();
  const peaks = daemons.map(() => 0);
  while (performance.now() - started < seconds * 1000) {
    await sleep(Math.min(1000, seconds * 1000 - (performance.now() - started)));
    daemons.forEach((daemon, i) => {
      peaks[i] = Math.max(peaks[i] ?? 0, rssMb(daemon.pid) ?? 0);
    });
  }
  const elapsed = (performance.now() - started) / 1000;
  const endCycles = await Promise.all(daemons.map((daemon) => daemon.cycles()));
  const result: Record<string, DaemonWindow> = {};
  daemons.forEach((daemon, i) => {
    const before = startTicks[i];
    const after = cpuTicks(daemon.pid);
    if (before === null || before === undefined || after === null) throw new Error(`${daemon.name} exited during the window: see ${daemon.logPath}`);
    const cpuSeconds = (after - before) / CLOCK_TICKS_PER_SECOND;
    const first = startCycles[i]?.cycles;
    const last = endCycles[i]?.cycles;
    const fullFirst = startCycles[i]?.fullScans;
    const fullLast = endCycles[i]?.fullScans;
    result[daemon.name] = {
      cpuPercent: (cpuSeconds / elapsed) * 100,
      cpuSecondsPerMinute: (cpuSeconds / elapsed) * 60,
      rssPeakMb: peaks[i] ?? 0,
      rssLastMb: rssMb(daemon.pid) ?? 0,
      cycles: first === null || first === undefined || last === null || last === undefined ? null : last - first,
      fullScans: fullFirst === null || fullFirst === undefined || fullLast === null || fullLast === undefined ? null : fullLast - fullFirst,
    };
  });
  return result;
}

/** The churn: started, then stopped; counts what it did. */
class Churn {
  private timers: NodeJS.Timeout[] = [];
  private readonly container: string;
  private readonly clients = new Set<ChildProcess>();
  private nextNs = 0;
  processes = 0;
  execs = 0;
  failures = 0;

  constructor(private readonly load: SyntheticHost) {
    this.container = `ptyreaper-bench-churn-${process.pid}`;
  }

  /** The container (its own loop of short-lived processes), the blips on the host and in namespaces, the exec sessions. */
  start(): void {
    const run = spawnSync(
      "docker",
      ["run", "-d", "--rm", "--init", "--network", "none", "--name", this.container, CHURN_IMAGE, "sh", "-c", CONTAINER_LOOP],
      { encoding: "utf8" },
    );
    if (run.status !== 0) throw new Error(`docker run ${CHURN_IMAGE}: ${run.stderr.trim() || run.error?.message || `exit ${run.status}`}`);
    const blip = (where: "host" | number): void => {
      this.processes++;
      this.load.blip(where, BLIP_SECONDS).catch(() => this.failures++);
    };
    this.timers.push(setInterval(() => blip("host"), 1000 / HOST_PER_SECOND));
    this.timers.push(
      setInterval(() => {
        blip(this.nextNs);
        this.nextNs = (this.nextNs + 1) % this.load.namespaces.length;
      }, 1000 / NAMESPACE_PER_SECOND),
    );
    this.timers.push(setInterval(() => this.exec(), EXEC_EVERY_MS));
    this.exec();
  }

  /** Counts started since `since` (the container's loop counts by its rate). */
  snapshot(): { processes: number; execs: number; failures: number } {
    return { processes: this.processes, execs: this.execs, failures: this.failures };
  }

  /** One `docker exec -it` with its client under a real tty; the shell ends by itself, which closes the session. */
  private exec(): void {
    const command = `docker exec -it ${this.container} sh -c 'sleep ${EXEC_HOLD_SECONDS}'`;
    const client = spawn("script", ["-qfc", command, "/dev/null"], { stdio: ["pipe", "ignore", "ignore"] });
    this.clients.add(client);
    this.execs++;
    client.once("exit", (code) => {
      this.clients.delete(client);
      if (code !== 0) this.failures++;
    });
  }

  async stop(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    // Each client ends with its session (EXEC_HOLD_SECONDS); the container goes with --rm.
    await Promise.all(
      [...this.clients].map((client) => new Promise((resolve) => (client.exitCode !== null ? resolve(null) : client.once("exit", resolve)))),
    );
    spawnSync("docker", ["rm", "-f", this.container], { encoding: "utf8" });
  }
}

const git = (...args: string[]): string => execFileSync("git", ["-C", ROOT, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();

/**
 * The previous daemon, built once per revision under .bench/: its files from git, this checkout's
 * node_modules (the same dependencies), its own build and native outputs. null when it is this tree.
 */
function buildBaseline(revision: string, log: (line: string) => void): { mainJs: string; label: string } | null {
  const commit = git("rev-parse", `${revision}^{commit}`);
  const label = `${revision} ${commit.slice(0, 12)}`;
  if (git("rev-parse", `${commit}^{tree}`) === git("rev-parse", "HEAD^{tree}") && git("status", "--porcelain", "--", "src", "native").length === 0)
    return null;
  const dir = join(ROOT, ".bench", `baseline-${commit.slice(0, 12)}`);
  const mainJs = join(dir, "dist", "main.js");
  if (existsSync(join(dir, ".built"))) return { mainJs, label };
  log(`building the previous daemon (${label}) in ${dir}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  execFileSync("sh", ["-c", `git -C "${ROOT}" archive ${commit} | tar -x -C "${dir}"`], { stdio: ["ignore", "ignore", "inherit"] });
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
  for (const script of ["build", "install"]) {
    const built = spawnSync("npm", ["run", script], { cwd: dir, encoding: "utf8" });
    if (built.status !== 0) throw new Error(`baseline npm run ${script}: ${built.stderr.trim().split("\n").slice(-3).join(" ")}`);
  }
  writeFileSync(join(dir, ".built"), `${commit}\n`);
  return { mainJs, label };
}

export async function measureCost(load: SyntheticHost, options: CostOptions): Promise<CostFigures> {
  const { log } = options;
  const workdir = mkdtempSync(join(tmpdir(), "ptyreaper-bench-cost-"));
  const baseline = options.baseline === null ? null : buildBaseline(options.baseline, log);
  const figures: CostFigures = {
    phases: [],
    finders: {},
    cFloor: {},
    baseline: baseline?.label ?? (options.baseline === null ? "none" : "the same tree as this one"),
  };
  const daemons: DeployedDaemon[] = [];
  const churn = new Churn(load);
  try {
    log("starting the daemon as deployed" + (baseline ? ` and the previous one (${baseline.label})` : ""));
    const mainJs = join(ROOT, "dist", "main.js");
    daemons.push(await DeployedDaemon.start("this", mainJs, workdir, [UNIT]));
    if (existsSync(join(ROOT, BPF_DROP_IN))) daemons.push(await DeployedDaemon.start("this+bpf", mainJs, workdir, [UNIT, BPF_DROP_IN]));
    if (baseline) daemons.push(await DeployedDaemon.start("previous", baseline.mainJs, workdir, [UNIT]));
    for (const daemon of daemons) figures.finders[daemon.name] = await daemon.finder();
    for (const scale of [...new Set([1, options.scale])]) {
      if (scale !== 1) {
        log(`growing the load to ${scale}×`);
        await load.scale(scale);
      }
      log(`C floor at ${scale}×`);
      figures.cFloor[`${scale}x`] = measureCFloor(3);
      log(`warm-up: ${options.warmupSeconds} s`);
      await sleep(options.warmupSeconds * 1000);
      for (const withChurn of [false, true]) {
        const name = `${scale}× ${withChurn ? "with churn" : "quiet"}`;
        if (withChurn) {
          churn.start();
          await sleep(10_000); // the churn's container and first exec settle (one poll interval)
        }
        const host = options.hostSize();
        const before = churn.snapshot();
        log(`${name}: measuring ${options.windowSeconds} s`);
        const measured = await measureWindow(daemons, options.windowSeconds);
        const after = churn.snapshot();
        const phase: PhaseResult = { name, scale, churn: withChurn, windowSeconds: options.windowSeconds, host, daemons: measured };
        if (withChurn) {
          // The container's loop adds three a second to what this process started.
          const seconds = options.windowSeconds;
          phase.churned = {
            processes: after.processes - before.processes + 3 * seconds,
            execs: after.execs - before.execs,
            failures: after.failures - before.failures,
          };
          await churn.stop();
        }
        figures.phases.push(phase);
        const summary = Object.entries(measured).map(
          ([who, w]) =>
            `${who} ${w.cpuPercent.toFixed(2)} % (${w.cycles ?? "?"} cycles, ${w.fullScans ?? "?"} full, RSS peak ${w.rssPeakMb.toFixed(0)} MB)`,
        );
        log(`${name}: ${summary.join("; ")}`);
      }
    }
  } finally {
    await churn.stop().catch(() => undefined);
    await Promise.all(daemons.map((daemon) => daemon.stop()));
    rmSync(workdir, { recursive: true, force: true });
  }
  return figures;
}

/** The table rows: one per phase and daemon, then the C floor anchors. */
export function costRows(figures: CostFigures): { measure: string; value: string; target: string; met: string }[] {
  const rows: { measure: string; value: string; target: string; met: string }[] = [];
  for (const phase of figures.phases) {
    const churned = phase.churned
      ? `; churn ${(phase.churned.processes / phase.windowSeconds).toFixed(1)} processes/s, ${phase.churned.execs} exec -it, ${phase.churned.failures} failed`
      : "";
    for (const [who, w] of Object.entries(phase.daemons)) {
      const label = { this: "daemon as deployed", "this+bpf": `the same with ${BPF_DROP_IN}` }[who] ?? `previous daemon (${figures.baseline})`;
      const target = who === "this" && phase.churn && phase.scale === 1 ? "≤ 0.5 %" : "";
      rows.push({
        measure: `${label} (finder ${figures.finders[who] ?? "?"}), ${phase.name} (host ${thousands(phase.host.processes)} processes, ${thousands(phase.host.fds)} fds): CPU of one core over ${phase.windowSeconds} s (${w.cycles ?? "?"} cycles, ${w.fullScans ?? "?"} with a full pass${churned})`,
        value: `${w.cpuPercent.toFixed(2)} % = ${w.cpuSecondsPerMinute.toFixed(2)} s/min; RSS peak ${w.rssPeakMb.toFixed(0)} MB, last ${w.rssLastMb.toFixed(0)} MB`,
        target,
        met: target ? (w.cpuPercent <= 0.5 ? "yes" : "NO") : "",
      });
    }
  }
  const rssPeak = Math.max(0, ...figures.phases.filter((p) => p.scale === 1).map((p) => p.daemons.this?.rssPeakMb ?? 0));
  rows.push({
    measure: "daemon as deployed, RSS peak at 1× over every window",
    value: `${rssPeak.toFixed(0)} MB`,
    target: "≤ 100 MB",
    met: rssPeak <= 100 ? "yes" : "NO",
  });
  for (const [scale, floor] of Object.entries(figures.cFloor)) {
    rows.push({
      measure: `C floor at ${scale}: one single-threaded full scan (median of 3)`,
      value: "error" in floor ? `not measured: ${floor.error}` : `${ms(floor.wallMs)}, cpu ${ms(floor.cpuMs)}`,
      target: "",
      met: "",
    });
  }
  return rows;
}
