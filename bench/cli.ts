// The command a user runs, timed as a process: `ptyreaper --help`, and `ptyreaper sessions --json`
// against a single-threaded C scan of the same /proc (bench/cfloor.c) and lsof, on the same load;
// and `sessions --json` again with the BPF finder off (PTYREAPER_BPF_FINDER=0), reading every fd link.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { WANT_LINKS, bpfFinderFor, loadNativeFdLinks } from "../src/procfs/native.js";
import { median, ms } from "./stats.js";

export interface CliRow {
  measure: string;
  value: string;
  target: string;
  met: string;
}

export interface CliFigures {
  helpMs: number | null;
  sessionsMs: number | null;
  /** sessions --json with PTYREAPER_BPF_FINDER=0: every fd link read, as without the finder. */
  sessionsEveryLinkMs: number | null;
  /** "bpf" when the finder ran in this bench's process, else why not. */
  finder: string;
  cFloorMs: number | null;
  sessionsOverCFloor: number | null;
  lsofOverSessions: number | null;
}

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const MAIN = `${ROOT}dist/main.js`;
const CFLOOR_SOURCE = `${ROOT}bench/cfloor.c`;
const CFLOOR = `${ROOT}.bench/cfloor`;

const verdict = (ok: boolean): string => (ok ? "yes" : "NO");

/** CPU time of this process's waited-for children so far, ms (cutime + cstime of /proc/self/stat). */
function childrenCpuMs(): number {
  const fields = readFileSync("/proc/self/stat", "utf8").split(") ")[1]?.split(" ") ?? [];
  // After "pid (comm) ": state is field 3, so cutime (16) and cstime (17) are at 13 and 14. USER_HZ is 100.
  return (Number(fields[13]) + Number(fields[14])) * 10;
}

/** Wall and CPU time of one run of a program to completion, and what it printed. */
function timeProcess(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): { wallMs: number; cpuMs: number; stdout: string } | { error: string } {
  const cpuBefore = childrenCpuMs();
  const start = performance.now();
  const result = spawnSync(command, args, { encoding: "utf8", maxBuffer: 256 << 20, env: { ...process.env, ...env } });
  const wallMs = performance.now() - start;
  if (result.error) return { error: result.error.message };
  if (result.status !== 0) return { error: `exit ${result.status}: ${(result.stderr || "").trim().split("\n")[0] ?? ""}` };
  return { wallMs, cpuMs: childrenCpuMs() - cpuBefore, stdout: result.stdout };
}

/** Whether the BPF finder runs here (as the command would, as this user): "bpf", or why not. */
async function finderOutcome(): Promise<string> {
  const path = bpfFinderFor("/proc");
  if (path === null) return "not used (not built, switched off, not root, or not the host's pid namespace)";
  const reader = loadNativeFdLinks().reader;
  const answer = reader?.readBatchAsync("/proc", [process.pid], 1, WANT_LINKS, path);
  return answer ? ((await answer).finder ?? "no answer") : "no native reader";
}

/**
 * What two runs over the same load must agree on: the pty counts, every pty with its holders, and the
 * sessions, clock readings dropped. Not unreadableProcesses: with the finder, a process /proc denies is
 * unreadable only when the kernel names a pty fd in it (the sandbox's own init is denied here).
 */
function withoutTimes(json: string): string {
  const { pty, ptys, sessions } = JSON.parse(json) as Record<string, unknown>;
  return JSON.stringify({ pty, ptys, sessions }, (key, value: unknown) => (key.endsWith("Seconds") ? undefined : value));
}

function buildCFloor(): string | null {
  mkdirSync(`${ROOT}.bench`, { recursive: true });
  const built = spawnSync("cc", ["-O2", "-o", CFLOOR, CFLOOR_SOURCE], { encoding: "utf8" });
  if (built.error) return `cc: ${built.error.message} (apt-get install -y gcc)`;
  return built.status === 0 ? null : `cc failed: ${built.stderr.trim().split("\n")[0] ?? ""}`;
}

/** The C floor alone, median of `runs` after a warm-up: the cost bench's anchor at each load size. */
export function measureCFloor(runs: number): { wallMs: number; cpuMs: number } | { error: string } {
  const built = buildCFloor();
  if (built !== null) return { error: built };
  const done: { wallMs: number; cpuMs: number }[] = [];
  for (let n = 0; n <= runs; n++) {
    const run = timeProcess(CFLOOR, ["/proc"]);
    if (!("wallMs" in run)) return { error: run.error };
    if (n > 0) done.push(run); // the first warms the page cache and dentries
  }
  return { wallMs: median(done.map((run) => run.wallMs)), cpuMs: median(done.map((run) => run.cpuMs)) };
}

/**
 * Runs the C floor and `sessions --json` alternately, so that a change in the machine's load meets
 * both alike, and reports medians. `lsofMs` is lsof's median on the same load, measured just before.
 */
export async function measureCli(options: {
  runs: number;
  lsofMs: number | null;
  log: (line: string) => void;
}): Promise<{ rows: CliRow[]; figures: CliFigures }> {
  const finder = await finderOutcome();
  const figures: CliFigures = {
    helpMs: null,
    sessionsMs: null,
    sessionsEveryLinkMs: null,
    finder,
    cFloorMs: null,
    sessionsOverCFloor: null,
    lsofOverSessions: null,
  };
  const rows: CliRow[] = [];
  if (!existsSync(MAIN)) {
    rows.push({ measure: "ptyreaper CLI", value: "not measured: dist/main.js is missing (npm run build)", target: "", met: "" });
    return { rows, figures };
  }
  options.log(`ptyreaper --help (${options.runs + 1} runs)`);
  const help = Array.from({ length: options.runs + 1 }, () => timeProcess(process.execPath, [MAIN, "--help"])).slice(1);
  const helpOk = help.filter((run): run is { wallMs: number; cpuMs: number; stdout: string } => "wallMs" in run);
  if (helpOk.length > 0) {
    figures.helpMs = median(helpOk.map((run) => run.wallMs));
    rows.push({
      measure: `ptyreaper --help, as a process (median of ${helpOk.length})`,
      value: `${ms(figures.helpMs)}, cpu ${ms(median(helpOk.map((run) => run.cpuMs)))}`,
      target: "< 120 ms",
      met: verdict(figures.helpMs < 120),
    });
  }

  const cFloorError = buildCFloor();
  options.log(`sessions --json, the same with every fd link read, and the C floor, in turn (${options.runs} runs each after a warm-up)`);
  const sessions: number[] = [];
  const floor: number[] = [];
  const sessionsCpu: number[] = [];
  const floorCpu: number[] = [];
  const everyLink: number[] = [];
  const everyLinkCpu: number[] = [];
  let sessionsError: string | null = null;
  let sameReport: boolean | null = null;
  for (let n = 0; n <= options.runs; n++) {
    const s = timeProcess(process.execPath, [MAIN, "sessions", "--json"]);
    const e = timeProcess(process.execPath, [MAIN, "sessions", "--json"], { PTYREAPER_BPF_FINDER: "0" });
    const c = cFloorError ? null : timeProcess(CFLOOR, ["/proc"]);
    if ("stdout" in s && "stdout" in e) sameReport = (sameReport ?? true) && withoutTimes(s.stdout) === withoutTimes(e.stdout);
    if (n === 0) continue; // warm-up: page cache and dentries for all
    if ("wallMs" in s) {
      sessions.push(s.wallMs);
      sessionsCpu.push(s.cpuMs);
    } else sessionsError = s.error;
    if ("wallMs" in e) {
      everyLink.push(e.wallMs);
      everyLinkCpu.push(e.cpuMs);
    }
    if (c && "wallMs" in c) {
      floor.push(c.wallMs);
      floorCpu.push(c.cpuMs);
    }
  }
  if (sessions.length === 0) {
    rows.push({ measure: "ptyreaper sessions --json", value: `not measured: ${sessionsError ?? "no run"}`, target: "", met: "" });
    return { rows, figures };
  }
  figures.sessionsMs = median(sessions);
  rows.push({
    measure: `ptyreaper sessions --json, as a process (median of ${sessions.length}); BPF finder: ${finder}`,
    value: `${ms(figures.sessionsMs)}, cpu ${ms(median(sessionsCpu))}`,
    target: "",
    met: "",
  });
  if (everyLink.length > 0) {
    figures.sessionsEveryLinkMs = median(everyLink);
    rows.push({
      measure: `  the same with PTYREAPER_BPF_FINDER=0, every fd link read (median of ${everyLink.length})`,
      value: `${ms(figures.sessionsEveryLinkMs)}, cpu ${ms(median(everyLinkCpu))}`,
      target: "",
      met: "",
    });
  }
  // The load does not change between runs, so the two reads must report the same ptys and holders.
  if (sameReport !== null)
    rows.push({
      measure: "  both report the same ptys, holders and sessions (times aside), every run",
      value: sameReport ? "yes" : "NO",
      target: "yes",
      met: verdict(sameReport),
    });
  if (floor.length > 0) {
    figures.cFloorMs = median(floor);
    figures.sessionsOverCFloor = figures.sessionsMs / figures.cFloorMs;
    rows.push({
      measure: `C floor: one single-threaded C scan of /proc for pty fds (bench/cfloor.c; median of ${floor.length})`,
      value: `${ms(figures.cFloorMs)}, cpu ${ms(median(floorCpu))}`,
      target: "",
      met: "",
    });
    rows.push({
      measure: "sessions --json ÷ C floor",
      value: `${figures.sessionsOverCFloor.toFixed(2)}×`,
      target: "≤ 1.2×",
      met: verdict(figures.sessionsOverCFloor <= 1.2),
    });
  } else {
    rows.push({ measure: "C floor", value: `not measured: ${cFloorError ?? "every run failed"}`, target: "", met: "" });
  }
  if (options.lsofMs !== null) {
    figures.lsofOverSessions = options.lsofMs / figures.sessionsMs;
    rows.push({
      measure: "lsof ÷ sessions --json",
      value: `${figures.lsofOverSessions.toFixed(1)}×`,
      target: "≥ 8×",
      met: verdict(figures.lsofOverSessions >= 8),
    });
  }
  return { rows, figures };
}
