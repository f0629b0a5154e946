// How the built daemon says which way it signals (issue 10, item 3): with pidfds one info line and
// ptyreaper_signal_info{method="pidfd"}; forced to the kill(2) fallback (PTYREAPER_PIDFD=0) one startup
// warning naming why, and {method="kill",reason="disabled"}. Docker and the runtimes are off and the mode is
// dry-run, so no engine is needed and nothing can be signalled.
import { afterAll, describe, expect, it } from "vitest";
import { cleanupAll } from "./support/index.js";
import { readMetric, startDaemon, type RunningDaemon } from "./support/daemon.js";

const CONFIG = `
pollInterval: 1s
docker:
  enabled: false
runtimes:
  containerd: {enabled: false}
  podman: {enabled: false}
reaper:
  mode: dry-run
log:
  level: info
`;

/** The text-format lines of ptyreaper_signal_info (HELP and TYPE left out). */
function signalInfoSeries(exposition: string): string[] {
  return exposition.split("\n").filter((line) => line.startsWith("ptyreaper_signal_info"));
}

describe("signal method on the built daemon (loopback, Docker and runtimes disabled, dry-run)", () => {
  // Only daemons a failed test left running: stop() on one that already exited could hit a reused pid.
  const daemons: RunningDaemon[] = [];
  afterAll(async () => {
    for (const d of daemons) if (d.child.exitCode === null && d.child.signalCode === null) await d.stop();
    await cleanupAll();
  });

  it("PTYREAPER_PIDFD=0: one startup warning naming why, and signal_info says kill with reason disabled", async () => {
    const d = await startDaemon(CONFIG, [], { PTYREAPER_PIDFD: "0" });
    daemons.push(d);
    const said = d.logs().filter((l) => l.signalMethod !== undefined);
    expect(said).toHaveLength(1);
    expect(said[0]).toMatchObject({ level: 40, signalMethod: "kill", fallback: "disabled", why: "PTYREAPER_PIDFD=0" });
    expect(String(said[0]?.msg)).toMatch(/^pidfds unavailable: signals use kill\(2\) after a start-time check/);

    const { status, body } = await d.get("/metrics");
    expect(status).toBe(200);
    expect(signalInfoSeries(body)).toEqual(['ptyreaper_signal_info{method="kill",reason="disabled"} 1']);
    expect(readMetric(body, "ptyreaper_signal_info", { method: "kill" })).toBe(1);
    expect(readMetric(body, "ptyreaper_signal_info", { method: "pidfd" })).toBeNull();
    expect(await d.stop()).toBe(0);
  }, 60_000);

  it("by default: pidfds in use, said once at info level, and signal_info says pidfd with no reason", async () => {
    const d = await startDaemon(CONFIG);
    daemons.push(d);
    const said = d.logs().filter((l) => l.signalMethod !== undefined);
    expect(said).toHaveLength(1);
    expect(said[0]).toMatchObject({ level: 30, signalMethod: "pidfd" });
    expect(d.logs().filter((l) => Number(l.level) >= 40)).toEqual([]);

    const { body } = await d.get("/metrics");
    expect(signalInfoSeries(body)).toEqual(['ptyreaper_signal_info{method="pidfd"} 1']);
    expect(readMetric(body, "ptyreaper_signal_info", { method: "kill" })).toBeNull();
    expect(await d.stop()).toBe(0);
  }, 60_000);
});
