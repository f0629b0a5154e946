// Runs the built `ptyreaper run` as a child process on loopback and reads its metrics and logs.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { get as httpGet } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SessionsReport } from "../../../src/domain/report.js";
import { killAndWait, waitFor } from "./index.js";
import { trackProcess } from "./track.js";

export const MAIN = new URL("../../../dist/main.js", import.meta.url).pathname;

export interface RunningDaemon {
  pid: number;
  baseUrl: string;
  child: ChildProcess;
  /** Every JSON log line so far. */
  logs(): Record<string, unknown>[];
  metric(name: string, labels?: Record<string, string>): Promise<number | null>;
  get(path: string): Promise<{ status: number; body: string }>;
  /** GET /sessions: every exec session of the last snapshot, by exec id (throws on a status other than 200). */
  sessions(): Promise<Map<string, SessionsReport["sessions"][number]>>;
  /** Resolves once `n` more poll cycles have completed (ptyreaper_poll_duration_seconds_count), with the new count. */
  cycles(n: number, timeoutMs?: number): Promise<number>;
  /** SIGTERM, then wait; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** The orphan tests' settings: 2 s cycles, orphanGrace 15 s, idleTimeout 4 h (never reached), minAge 5 s, reaper.grace 2 s. */
/** The orphan tests' timings, written once (ORPHAN_TEST_YAML is made from them). */
export const ORPHAN_TEST = (() => {
  const POLL_MS = 2_000;
  const GRACE_MS = 15_000;
  return {
    POLL_MS,
    /** policy.orphanGrace */
    GRACE_MS,
    /** reaper.grace */
    REAPER_GRACE_MS: 2_000,
    /** The tracker pairs a client with its exec this long after the exec started (PAIRING_DELAY_MS, 10 s), with a margin. */
    PAIRING_MS: 20_000,
    /** orphanGrace (wall time) and 4 cycles past it: cycles start at least an interval apart, so these take ≥ GRACE_MS + 4 intervals. */
    GRACE_AND_4_CYCLES: Math.ceil(GRACE_MS / POLL_MS) + 5,
    /** How long the reaper waits for the shim to close a pty master after the exec's processes ended, plus a margin. */
    RELEASE_WAIT_MS: 75_000,
  } as const;
})();

export const ORPHAN_TEST_YAML = `
pollInterval: ${ORPHAN_TEST.POLL_MS / 1000}s
policy:
  idleTimeout: 4h
  orphanGrace: ${ORPHAN_TEST.GRACE_MS / 1000}s
  minAge: 5s
reaper:
  grace: ${ORPHAN_TEST.REAPER_GRACE_MS / 1000}s
log:
  level: info
`;

/** Writes `yaml` to a temp config file and starts the daemon on 127.0.0.1 with a free port. */
export async function startDaemon(yaml: string, extraArgs: string[] = [], env: Record<string, string> = {}): Promise<RunningDaemon> {
  const dir = mkdtempSync(join(tmpdir(), "ptyreaper-test-"));
  const configPath = join(dir, "config.yaml");
  // Each daemon its own state directory unless the test names one: daemons never share a client state file.
  writeFileSync(configPath, /^stateDir:/m.test(yaml) ? yaml : `${yaml}\nstateDir: ${join(dir, "state")}\n`);
  return launchDaemon(process.execPath, [MAIN, "run", "--config", configPath, "--listen", "127.0.0.1:0", ...extraArgs], env);
}

/**
 * Starts a daemon by any command line (an installed launcher, the unit's ExecStart) and waits for its
 * "ptyreaper started" line; the command must log JSON and listen where that line says.
 */
export async function launchDaemon(file: string, args: readonly string[], env: Record<string, string> = {}): Promise<RunningDaemon> {
  const child = spawn(file, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env, NOTIFY_SOCKET: "" },
  });
  if (child.pid === undefined) throw new Error("could not start ptyreaper");
  trackProcess(child.pid, "ptyreaper daemon", child);
  const lines: Record<string, unknown>[] = [];
  let stderr = "";
  let pending = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    pending += chunk.toString();
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push({ msg: line, unparsed: true });
      }
    }
  });
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const started = await waitFor(
    () => {
      if (child.exitCode !== null) throw new Error(`ptyreaper exited ${child.exitCode}: ${stderr}`);
      return lines.find((l) => l.msg === "ptyreaper started");
    },
    30_000,
    "ptyreaper to start",
  );
  const baseUrl = `http://${String(started.address).replace(/^http:\/\//, "")}`;
  const get = async (path: string) => {
    const response = await fetch(`${baseUrl}${path}`);
    return { status: response.status, body: await response.text() };
  };
  return {
    pid: child.pid,
    baseUrl,
    child,
    logs: () => lines,
    get,
    async metric(name, labels = {}) {
      const { body } = await get("/metrics");
      return readMetric(body, name, labels);
    },
    async sessions() {
      const { status, body } = await get("/sessions");
      if (status !== 200) throw new Error(`/sessions: HTTP ${status} ${body}`);
      return new Map((JSON.parse(body) as SessionsReport).sessions.map((s) => [s.execId, s]));
    },
    async cycles(n, timeoutMs = 60_000) {
      const count = async (): Promise<number> => readMetric(await getClosed(`${baseUrl}/metrics`), "ptyreaper_poll_duration_seconds_count") ?? 0;
      const target = (await count()) + n;
      return waitFor(
        async () => {
          if (child.exitCode !== null) throw new Error(`ptyreaper exited ${child.exitCode}: ${stderr}`);
          const now = await count();
          return now >= target ? now : undefined;
        },
        timeoutMs,
        `${n} more poll cycle(s)`,
        200,
      );
    },
    async stop() {
      child.kill("SIGTERM");
      const code = await Promise.race([exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), 10_000))]);
      await killAndWait(child.pid as number, child);
      return code;
    },
  };
}

/**
 * Waits until the daemon reports the client of each exec in `execIds` in `state`, and returns that listing.
 * On a timeout it throws with the last /sessions, the daemon's log tail and its poll metrics.
 */
export async function waitForClients(
  daemon: RunningDaemon,
  execIds: readonly string[],
  state: string,
  timeoutMs: number,
): Promise<Map<string, SessionsReport["sessions"][number]>> {
  let last = "";
  try {
    return await waitFor(
      async () => {
        const listed = await daemon.sessions();
        last = JSON.stringify([...listed.values()].map((s) => [s.runtime, s.execId.slice(0, 12), s.state, s.client]));
        return execIds.every((id) => listed.get(id)?.client.state === state) ? listed : null;
      },
      timeoutMs,
      `clients of ${execIds.map((id) => id.slice(0, 12)).join(", ")} to be ${state}`,
      250,
    );
  } catch (err) {
    const { body } = await daemon.get("/metrics").catch(() => ({ body: "" }));
    const polls = body
      .split("\n")
      .filter((l) => /^ptyreaper_(poll_duration_seconds_(count|sum)|poll_errors_total|runtime_up|docker_up|last_poll)/.test(l));
    throw new Error(
      `${(err as Error).message}; last /sessions: ${last}; daemon log tail and poll metrics: ${JSON.stringify([...daemon.logs().slice(-12), ...polls])}`,
    );
  }
}

/**
 * GET on a connection of its own that the daemon closes once it has answered (Connection: close): counting
 * cycles leaves no kept-alive socket in the daemon, so a test's fd baseline taken right after is not raised.
 */
function getClosed(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { agent: false, headers: { connection: "close" } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET ${url}: ${res.statusCode}`))));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`GET ${url}: no answer in 10 s`)));
  });
}

/**
 * The sum of the series of one metric whose labels include `labels`, as PromQL's sum() over that selector
 * (per-session metrics have one series per runtime: `{reason: "idle"}` counts every runtime's), or null when
 * no series matches.
 */
export function readMetric(exposition: string, name: string, labels: Record<string, string> = {}): number | null {
  let sum: number | null = null;
  for (const line of exposition.split("\n")) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const text = match[3] ?? "";
    const ok = Object.entries(labels).every(([k, v]) => text.includes(`${k}="${v}"`));
    if (ok) sum = (sum ?? 0) + Number(match[4]);
  }
  return sum;
}
