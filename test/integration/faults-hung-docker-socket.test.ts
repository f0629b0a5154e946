// A Docker socket that accepts and never answers: every call gives up at docker.timeout, the loop keeps its
// cadence, /metrics keeps answering, docker_up is 0 and nothing is reaped; no connection or fd piles up.
// Then a real engine (private dockerd) behind a proxy that hangs mid-run, with a session going stale meanwhile.
import { readdirSync } from "node:fs";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { cleanupAll, isAlive, sleep, startContainer, testContainerName, waitFor } from "./support/index.js";
import { readMetric, startDaemon, type RunningDaemon } from "./support/daemon.js";
import { execDetached, startPrivateDockerd, type PrivateDockerd } from "./support/dockerd.js";
import { startFakeDockerSocket, type FakeDockerSocket } from "./support/fake-docker-socket.js";

const POLL_MS = 1_000;
const CONFIG = `
pollInterval: 1s
docker:
  timeout: 500ms
policy:
  idleTimeout: 10s
  minAge: 0s
reaper:
  grace: 200ms
`;

const openFds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

interface Sample {
  atMs: number;
  metricsStatus: number;
  healthStatus: number;
  lastSuccess: number | null;
  dockerUp: number | null;
  fakeOpen: number;
}

/** Scrapes every `everyMs` for `forMs`: what an operator's Prometheus and kubelet would see. */
async function watch(d: RunningDaemon, fake: FakeDockerSocket, forMs: number, everyMs = 250): Promise<Sample[]> {
  const samples: Sample[] = [];
  const end = Date.now() + forMs;
  while (Date.now() < end) {
    const metrics = await d.get("/metrics");
    const health = await d.get("/healthz");
    samples.push({
      atMs: Date.now(),
      metricsStatus: metrics.status,
      healthStatus: health.status,
      lastSuccess: readMetric(metrics.body, "ptyreaper_last_poll_success_timestamp_seconds"),
      dockerUp: readMetric(metrics.body, "ptyreaper_docker_up"),
      fakeOpen: fake.openConnections(),
    });
    await sleep(everyMs); // a scraper's pace: what it sees over forMs of wall time is the measurement
  }
  return samples;
}

/** Longest time between two changes of the last-success timestamp, in ms. */
function longestGapMs(samples: Sample[]): number {
  const changes = [...new Set(samples.map((s) => s.lastSuccess).filter((v): v is number => v !== null && v > 0))].sort((a, b) => a - b);
  let gap = 0;
  for (let i = 1; i < changes.length; i++) gap = Math.max(gap, ((changes[i] as number) - (changes[i - 1] as number)) * 1000);
  return gap;
}

describe("a hung Docker socket", () => {
  let daemon: RunningDaemon | null = null;
  let fake: FakeDockerSocket | null = null;
  let engine: PrivateDockerd | null = null;

  afterEach(async () => {
    await daemon?.stop();
    daemon = null;
    await fake?.close();
    fake = null;
    await cleanupAll();
  }, 120_000);

  afterAll(async () => {
    await engine?.destroy();
  }, 120_000);

  it("times out every call, keeps the loop's cadence and /metrics, reports docker_up 0 and holds no connection", async () => {
    fake = await startFakeDockerSocket(`/tmp/ptyr-hung-${process.pid}.sock`, { mode: "hang" });
    daemon = await startDaemon(CONFIG, [], { DOCKER_HOST: `unix://${fake.path}` });
    const d = daemon;
    await d.cycles(3);
    const fdsBefore = openFds(d.pid);
    const samples = await watch(d, fake, 12_000);
    const fdsAfter = openFds(d.pid);

    for (const s of samples) {
      expect(s.metricsStatus).toBe(200);
      expect(s.healthStatus).toBe(200);
      expect(s.dockerUp).toBe(0);
    }
    const cycles = new Set(samples.map((s) => s.lastSuccess)).size;
    const gap = longestGapMs(samples);
    const exposition = (await d.get("/metrics")).body;
    const count = readMetric(exposition, "ptyreaper_poll_duration_seconds_count") ?? 0;
    const bounded = readMetric(exposition, "ptyreaper_poll_duration_seconds_bucket", { le: "5" }) ?? -1;
    const maxOpen = Math.max(...samples.map((s) => s.fakeOpen));
    console.log(
      `hung socket: ${cycles} cycles in 12 s, longest gap ${gap} ms, ${count} cycles all ≤ 5 s: ${bounded === count}, ` +
        `${fake.acceptedConnections()} connections accepted, at most ${maxOpen} open, daemon fds ${fdsBefore} → ${fdsAfter}`,
    );
    expect(cycles).toBeGreaterThanOrEqual(6); // 1 s interval; a busy host's scan makes a cycle longer
    expect(gap).toBeLessThanOrEqual(3 * POLL_MS);
    // Every cycle ended, bounded by the scan plus the 500 ms call timeout, not by the hung engine.
    expect(bounded).toBe(count);
    // A cycle with Docker down completes: it is docker_up 0, not also a failed cycle (stage "docker"
    // counts only a throw while publishing Docker's state).
    expect(await d.metric("ptyreaper_poll_errors_total", { stage: "docker" })).toBe(0);
    expect(d.logs().filter((l) => String(l.msg).startsWith("docker unreachable"))).toHaveLength(1);
    // Calls were made and given up on: the connections they opened were closed, not left to pile up.
    expect(fake.acceptedConnections()).toBeGreaterThanOrEqual(6);
    expect(maxOpen).toBeLessThanOrEqual(4);
    expect(fdsAfter).toBeLessThanOrEqual(fdsBefore + 5); // a leak would add about two per cycle
    expect(d.logs().filter((l) => l.msg === "signalled exec session")).toEqual([]);
    expect((await d.get("/readyz")).status).toBe(503);
  }, 60_000);

  it("reaps nothing on stale data while a real engine hangs mid-run, and reaps once it answers again", async () => {
    engine = await startPrivateDockerd("hung");
    process.env.DOCKER_HOST = engine.host;
    const name = testContainerName("hung");
    await startContainer({ name });
    const session = await execDetached(engine.socket, name, ["sh"]);
    fake = await startFakeDockerSocket(`/tmp/ptyr-hung-${process.pid}.sock`, { mode: "proxy", upstream: engine.socket });
    daemon = await startDaemon(CONFIG, [], { DOCKER_HOST: `unix://${fake.path}` });
    const d = daemon;
    const f = fake;
    await waitFor(async () => (await d.get("/sessions")).body.includes(session.execId), 20_000, "the session to be listed");
    expect(await d.metric("ptyreaper_docker_up")).toBe(1);

    f.setMode("hang");
    const hungAt = Date.now();
    const samples = await watch(d, f, 14_000); // the session goes past idleTimeout meanwhile
    const downAfterMs = (samples.find((s) => s.dockerUp === 0)?.atMs ?? Infinity) - hungAt;
    console.log(`hung engine mid-run: docker_up 0 after ${downAfterMs} ms; longest cycle gap ${longestGapMs(samples)} ms`);
    for (const s of samples) expect(s.metricsStatus).toBe(200);
    expect(samples.at(-1)?.dockerUp).toBe(0);
    expect(downAfterMs).toBeLessThanOrEqual(10_000);
    expect(longestGapMs(samples)).toBeLessThanOrEqual(3 * POLL_MS);
    expect(d.logs().filter((l) => l.msg === "signalled exec session")).toEqual([]);
    expect(isAlive(session.pid)).toBe(true);

    f.setMode("proxy");
    const reaped = await waitFor(
      () => d.logs().find((l) => l.msg === "reaped exec session" && l.execId === session.execId),
      90_000,
      "the session to be reaped",
    );
    expect(reaped.result).toBe("reaped");
    expect(await d.metric("ptyreaper_docker_up")).toBe(1);
    expect(isAlive(session.pid)).toBe(false);
  }, 180_000);
});
