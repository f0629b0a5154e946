// Scrape storm: wrk with 200 connections hammers /metrics and /sessions on loopback for 30 s. No socket error,
// no non-2xx answer, and the poll loop keeps its cadence meanwhile (last-success timestamps, /healthz).
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { nsPty, sleep, startContainer, testContainerName, type NsPty } from "./support/index.js";
import { trackProcess } from "./support/track.js";
import { readMetric } from "./support/daemon.js";
import { execDetached } from "./support/dockerd.js";
import { usePrivateEngine } from "./support/private-engine.js";

const POLL_MS = 1_000;
const CONFIG = `
pollInterval: 1s
policy:
  idleTimeout: "off"
`;

// Alternates the two paths on every connection; prints one JSON line of totals at the end.
const STORM_LUA = `
local paths = { "/metrics", "/sessions" }
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % 2) + 1])
end
done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"durationUs":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50Us":%d,"p99Us":%d,"maxUs":%d}\\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
`;

interface WrkTotals {
  requests: number;
  durationUs: number;
  bytes: number;
  connect: number;
  read: number;
  write: number;
  /** Responses with a status outside 2xx/3xx. */
  status: number;
  timeout: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
}

/** Runs wrk to the end; fails loudly when it is not installed. */
function runWrk(args: string[]): Promise<{ totals: WrkTotals; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("wrk", args, { stdio: ["ignore", "pipe", "pipe"] });
    child.once("error", (err) =>
      reject(new Error(`wrk could not be run (${err.message}): install Debian's "wrk" (scripts/provision-test-host.sh does)`)),
    );
    if (child.pid !== undefined) trackProcess(child.pid, "wrk", child);
    let output = "";
    child.stdout.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr.on("data", (c: Buffer) => (output += c.toString()));
    child.once("exit", (code) => {
      const line = output.split("\n").find((l) => l.startsWith('{"requests"'));
      if (code !== 0 || !line) reject(new Error(`wrk exited ${code}: ${output}`));
      else resolve({ totals: JSON.parse(line) as WrkTotals, output });
    });
  });
}

describe("scrape storm on loopback (wrk, private dockerd)", () => {
  let ptys: NsPty | null = null;
  const testbed = usePrivateEngine("storm", {
    cleanup: async () => {
      await ptys?.close();
    },
  });

  it("answers 200 connections on /metrics and /sessions for 30 s without an error while the loop keeps its cadence", async () => {
    const name = testContainerName("storm");
    await startContainer({ name });
    for (let i = 0; i < 3; i++) await execDetached(testbed.engine.socket, name, ["sh"]);
    // A busy host's worth of ptys, whatever this host runs: /sessions lists each of them.
    ptys = await nsPty({ count: 300 });
    const d = await testbed.startDaemon(CONFIG);
    await d.cycles(2);
    const sessionsBytes = (await d.get("/sessions")).body.length;
    const cyclesBefore = (await d.metric("ptyreaper_poll_duration_seconds_count")) ?? 0;

    const script = join(mkdtempSync(join(tmpdir(), "ptyr-storm-")), "storm.lua");
    writeFileSync(script, STORM_LUA);
    const storm = runWrk(["-t2", "-c200", "-d30s", "--timeout", "10s", "-s", script, d.baseUrl]);
    // Meanwhile, what a monitoring system would watch: last-success timestamps and /healthz, once a second.
    const watched: { lastSuccess: number | null; health: number }[] = [];
    let done = false;
    void storm.finally(() => (done = true)).catch(() => undefined);
    while (!done) {
      const metrics = await d.get("/metrics");
      watched.push({
        lastSuccess: readMetric(metrics.body, "ptyreaper_last_poll_success_timestamp_seconds"),
        health: (await d.get("/healthz")).status,
      });
      await sleep(1_000); // a monitoring system's pace: the gap between last-success stamps is read in time
    }
    const { totals } = await storm;
    const cycles = ((await d.metric("ptyreaper_poll_duration_seconds_count")) ?? 0) - cyclesBefore;
    const stamps = [...new Set(watched.map((w) => w.lastSuccess).filter((v): v is number => v !== null))].sort((a, b) => a - b);
    let gapMs = 0;
    for (let i = 1; i < stamps.length; i++) gapMs = Math.max(gapMs, ((stamps[i] as number) - (stamps[i - 1] as number)) * 1000);
    const seconds = totals.durationUs / 1e6;
    console.log(
      `scrape storm: ${totals.requests} requests in ${seconds.toFixed(1)} s (${Math.round(totals.requests / seconds)}/s, ` +
        `${Math.round(totals.bytes / seconds / 1024)} KiB/s; /sessions is ${Math.round(sessionsBytes / 1024)} KiB), latency p50 ${(totals.p50Us / 1000).toFixed(1)} ms, ` +
        `p99 ${(totals.p99Us / 1000).toFixed(1)} ms, max ${(totals.maxUs / 1000).toFixed(1)} ms; errors connect ${totals.connect} read ${totals.read} ` +
        `write ${totals.write} timeout ${totals.timeout}, non-2xx ${totals.status}; ${cycles} poll cycles, longest gap between successes ${Math.round(gapMs)} ms`,
    );

    expect(totals.requests).toBeGreaterThan(1_000);
    expect({ connect: totals.connect, read: totals.read, write: totals.write, timeout: totals.timeout, status: totals.status }).toEqual({
      connect: 0,
      read: 0,
      write: 0,
      timeout: 0,
      status: 0,
    });
    expect(watched.every((w) => w.health === 200)).toBe(true);
    expect(cycles).toBeGreaterThanOrEqual(15); // 30 s at a 1 s interval, with slack for slow scans
    expect(gapMs).toBeLessThanOrEqual(3 * POLL_MS);
    expect(d.child.exitCode).toBeNull();
  }, 120_000);
});
