// dockerd killed and restarted under a running ptyreaper, repeatedly (a private dockerd with --live-restore,
// killed by its pid): /metrics keeps answering, docker_up follows within two poll intervals, nothing is
// reaped while Docker is down, no fd or handle piles up, and a session leaked after recovery is reaped.
// This is also issue 3's end-to-end test 4 ("Docker stopped while ptyreaper runs").
import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { isAlive, sleep, startContainer, testContainerName, waitFor } from "./support/index.js";
import { readMetric } from "./support/daemon.js";
import { containerInitPid, execDetached, readRecordedSignals, signalRecorderCmd } from "./support/dockerd.js";
import { usePrivateEngine } from "./support/private-engine.js";

const POLL_MS = 2_000;
const CONFIG = `
pollInterval: 2s
docker:
  timeout: 1s
policy:
  idleTimeout: 10s
  minAge: 0s
reaper:
  grace: 500ms
`;

const openFds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

/** Sum of prom-client's nodejs_active_handles{type} series: sockets, timers, servers, ... */
function activeHandles(exposition: string): number {
  return exposition
    .split("\n")
    .filter((line) => line.startsWith("nodejs_active_handles{"))
    .reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0);
}

interface Outage {
  signal: "SIGTERM" | "SIGKILL";
  downMs: number;
  /** From the kill until /metrics said docker_up 0. */
  noticedMs: number;
  /** From dockerd answering /_ping again until docker_up 1. */
  upAgainMs: number;
  /** From dockerd answering again until the events stream was connected again. */
  eventsAgainMs: number;
  scrapes: number;
}

describe("dockerd killed and restarted while ptyreaper runs (private dockerd)", () => {
  // Teardown starts the engine again if a test left it stopped, so its containers can be removed.
  const testbed = usePrivateEngine("restart", { teardownTimeoutMs: 180_000 });

  it("keeps serving, follows docker_up, reaps nothing while Docker is down, leaks nothing, and reaps after recovery", async () => {
    const name = testContainerName("restart");
    await startContainer({ name });
    const d = await testbed.startDaemon(CONFIG);
    await waitFor(async () => (await d.metric("ptyreaper_docker_up")) === 1, 20_000, "docker_up 1");
    await d.cycles(3);
    const fdsBefore = openFds(d.pid);
    const handlesBefore = activeHandles((await d.get("/metrics")).body);

    const outages: Outage[] = [];
    const plan: { signal: "SIGTERM" | "SIGKILL"; downMs: number }[] = [
      { signal: "SIGKILL", downMs: 14_000 }, // long enough for a known session to pass idleTimeout while Docker is away
      { signal: "SIGTERM", downMs: 3_000 },
      { signal: "SIGKILL", downMs: 3_000 },
      { signal: "SIGTERM", downMs: 3_000 },
    ];
    const recorders: { tag: string; pid: number; execId: string }[] = [];
    for (const [round, { signal, downMs }] of plan.entries()) {
      // A session ptyreaper knows, young now, stale (idle ≥ 10s) before the longest outage ends.
      const tag = `known-${round}`;
      const exec = await execDetached(testbed.engine.socket, name, signalRecorderCmd(tag));
      recorders.push({ tag, ...exec });
      await waitFor(async () => (await d.get("/sessions")).body.includes(exec.execId), 20_000, `session ${tag} listed`);

      const killedAt = Date.now();
      await testbed.engine.stop(signal);
      const noticed = await waitFor(async () => ((await d.metric("ptyreaper_docker_up")) === 0 ? Date.now() : null), 20_000, "docker_up 0", 100);
      let scrapes = 0;
      while (Date.now() - killedAt < downMs) {
        const metrics = await d.get("/metrics");
        expect(metrics.status).toBe(200);
        expect(readMetric(metrics.body, "ptyreaper_docker_up")).toBe(0);
        expect((await d.get("/healthz")).status).toBe(200);
        scrapes++;
        await sleep(250); // scrapes through an outage of downMs, which is a time by design
      }
      expect(d.logs().filter((l) => l.msg === "signalled exec session")).toEqual([]);
      const eventsBefore = d.logs().filter((l) => l.msg === "docker events stream connected").length;

      await testbed.engine.start();
      const back = Date.now();
      const up = await waitFor(async () => ((await d.metric("ptyreaper_docker_up")) === 1 ? Date.now() : null), 20_000, "docker_up 1 again", 100);
      const events = await waitFor(
        () => (d.logs().filter((l) => l.msg === "docker events stream connected").length > eventsBefore ? Date.now() : null),
        20_000,
        "the events stream to reconnect",
        100,
      );
      outages.push({ signal, downMs, noticedMs: noticed - killedAt, upAgainMs: up - back, eventsAgainMs: events - back, scrapes });
    }
    console.log(`dockerd outages (poll interval ${POLL_MS} ms):\n${outages.map((o) => JSON.stringify(o)).join("\n")}`);
    for (const o of outages) {
      expect(o.upAgainMs, `docker_up back after ${o.signal}`).toBeLessThanOrEqual(2 * POLL_MS);
      expect(o.eventsAgainMs, `events stream back after ${o.signal}`).toBeLessThanOrEqual(2 * POLL_MS);
      expect(o.noticedMs, `docker_up 0 after ${o.signal}`).toBeLessThanOrEqual(2 * POLL_MS + 1_000);
    }

    await d.cycles(3);
    const fdsAfter = openFds(d.pid);
    const handlesAfter = activeHandles((await d.get("/metrics")).body);
    console.log(`daemon fds ${fdsBefore} → ${fdsAfter}, active handles ${handlesBefore} → ${handlesAfter}`);
    expect(fdsAfter).toBeLessThanOrEqual(fdsBefore + 5);
    expect(handlesAfter).toBeLessThanOrEqual(handlesBefore + 5);
    expect(d.child.exitCode).toBeNull();

    // Nothing was signalled: a restarted dockerd forgets running execs (moby keeps them in memory only),
    // so the sessions known before an outage are never attributed again, and so never reaped.
    const init = await containerInitPid(testbed.engine.socket, name);
    for (const r of recorders) {
      expect(readRecordedSignals(init, r.tag), r.tag).toEqual([]);
      expect(isAlive(r.pid), r.tag).toBe(true);
    }
    expect(d.logs().filter((l) => l.msg === "signalled exec session")).toEqual([]);
    expect(await d.metric("ptyreaper_reaped_sessions_total", { reason: "idle" })).toBe(0);

    // After recovery, a session leaked now is reaped as usual.
    const leaked = await execDetached(testbed.engine.socket, name, ["sh"]);
    const reaped = await waitFor(
      () => d.logs().find((l) => l.msg === "reaped exec session" && l.execId === leaked.execId),
      90_000,
      "the new leak to be reaped",
    );
    expect(reaped.result).toBe("reaped");
    expect(isAlive(leaked.pid)).toBe(false);
    expect(await d.metric("ptyreaper_reaped_sessions_total", { reason: "idle" })).toBe(1);
    for (const r of recorders) expect(isAlive(r.pid), r.tag).toBe(true);
  }, 240_000);
});
