// Password storm on the real daemon over loopback: 100 keep-alive clients send wrong passwords (bcrypt cost 10) for 20 s
// while polls keep completing and an authorised scrape keeps answering within 2 s.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import bcrypt from "bcryptjs";
import { afterAll, describe, expect, it } from "vitest";
import { readMetric, startDaemon, type RunningDaemon } from "./support/daemon.js";

const POLL_MS = 1_000;
const STORM_MS = 20_000;
const CLIENTS = 100;
/** Each client's loop also ends after this many requests, whatever the clock says. */
const MAX_REQUESTS_PER_CLIENT = 20_000;
/** How often the authorised scraper scrapes during the storm. */
const SCRAPE_EVERY_MS = 500;
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const RIGHT = basic("prometheus", "scrape-me");

interface Answer {
  status: number;
  body: string;
  ms: number;
}

/** One GET to the daemon on 127.0.0.1, from `localAddress` (any address of 127/8 is loopback on Linux). */
function get(port: number, path: string, agent: Agent, authorization: string, timeoutMs = 10_000): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port, path, agent, headers: { authorization }, timeout: timeoutMs }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, ms: performance.now() - started }));
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", () => resolve({ status: 0, body: "", ms: performance.now() - started }));
    req.end();
  });
}

describe("password storm (real daemon, loopback)", () => {
  let daemon: RunningDaemon | null = null;
  const dir = mkdtempSync(join(tmpdir(), "ptyreaper-authstorm-"));
  const agents: Agent[] = [];
  afterAll(async () => {
    for (const agent of agents) agent.destroy();
    await daemon?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("keeps polls completing and an authorised scrape answering within 2 s while 100 clients send wrong passwords for 20 s", async () => {
    writeFileSync(join(dir, "web.yml"), `basic_auth_users:\n  prometheus: "${bcrypt.hashSync("scrape-me", 10)}"\n`);
    // Nothing to reap: no runtime, dry-run.
    daemon = await startDaemon(
      [
        "pollInterval: 1s",
        "docker:\n  enabled: false",
        "runtimes:\n  containerd:\n    enabled: false\n  podman:\n    enabled: false",
        "reaper:\n  mode: dry-run",
        `webConfigFile: ${join(dir, "web.yml")}`,
        "",
      ].join("\n"),
    );
    const port = Number(new URL(daemon.baseUrl).port);
    const scraper = new Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(scraper);
    const scrape = (): Promise<Answer> => get(port, "/metrics", scraper, RIGHT);
    const first = await scrape(); // checked once by bcrypt, then cached
    expect(first.status).toBe(200);
    const cyclesBefore = readMetric(first.body, "ptyreaper_poll_duration_seconds_count") ?? 0;

    // Half the clients come from 50 addresses of their own, half from 127.0.0.1, the scraper's address.
    const counts = new Map<number, number>();
    const deadline = performance.now() + STORM_MS;
    const stormStarted = performance.now();
    const storm = Array.from({ length: CLIENTS }, async (_, i) => {
      const localAddress = i < CLIENTS / 2 ? `127.0.1.${i + 1}` : "127.0.0.1";
      const agent = new Agent({ keepAlive: true, maxSockets: 1, localAddress });
      agents.push(agent);
      for (let n = 0; n < MAX_REQUESTS_PER_CLIENT && performance.now() < deadline; n++) {
        // Known user with a wrong password, or a user that does not exist: each password new, so never cached.
        const user = n % 2 === 0 ? "prometheus" : `nobody-${i}-${n}`;
        const { status } = await get(port, "/metrics", agent, basic(user, randomBytes(12).toString("base64")));
        counts.set(status, (counts.get(status) ?? 0) + 1);
      }
    });
    const scrapes: Answer[] = [];
    const lagMaxSeconds: number[] = [];
    const watching = (async () => {
      while (performance.now() < deadline) {
        const answer = await scrape();
        scrapes.push(answer);
        const lag = readMetric(answer.body, "nodejs_eventloop_lag_max_seconds");
        if (lag !== null) lagMaxSeconds.push(lag);
        await new Promise((resolve) => setTimeout(resolve, SCRAPE_EVERY_MS)); // a scraper's pace during a storm of fixed length
      }
    })();
    await Promise.all([...storm, watching]);
    const stormSeconds = (performance.now() - stormStarted) / 1000;
    const last = await scrape();
    const cycles = (readMetric(last.body, "ptyreaper_poll_duration_seconds_count") ?? 0) - cyclesBefore;
    const refusals = Object.fromEntries(
      ["wrong", "limited", "busy", "error"].map((reason) => [reason, readMetric(last.body, "ptyreaper_http_auth_refusals_total", { reason }) ?? 0]),
    );
    const requests = [...counts.values()].reduce((a, b) => a + b, 0);
    const slowest = Math.max(...scrapes.map((s) => s.ms));
    const expectedCycles = Math.floor((stormSeconds * 1000) / POLL_MS);
    console.log(
      `password storm: ${requests} requests in ${stormSeconds.toFixed(1)} s from ${CLIENTS} clients (${Math.round(requests / stormSeconds)}/s), ` +
        `statuses ${JSON.stringify(Object.fromEntries(counts))}; refusals ${JSON.stringify(refusals)}; ` +
        `${cycles} poll cycles of ${expectedCycles} expected; authorised scrapes ${scrapes.length}, slowest ${slowest.toFixed(0)} ms; ` +
        `event-loop lag max per scrape interval ${Math.max(0, ...lagMaxSeconds).toFixed(3)} s`,
    );

    expect(scrapes.length).toBeGreaterThan(10);
    expect(scrapes.map((s) => s.status).filter((s) => s !== 200)).toEqual([]);
    expect(slowest).toBeLessThan(2_000);
    expect(cycles).toBeGreaterThanOrEqual(Math.floor(0.7 * expectedCycles));
    // Only refusals: 401 from a bcrypt check, 429 when the check was not run (cap or per-address limit).
    expect([...counts.keys()].sort()).toEqual([401, 429]);
    expect(refusals.busy).toBeGreaterThan(0);
    expect(refusals.limited).toBeGreaterThan(0);
    expect(refusals.error).toBe(0);
    expect(daemon.child.exitCode).toBeNull();
  }, 120_000);
});
