// Signals to the daemon itself, on a private Docker engine: SIGHUP with a bad config is rejected with one clear
// log line and the running config stays in force; with a good one it takes effect (dry-run → enforce).
// SIGTERM in the middle of escalations exits within 5 s and logs every escalation it abandons.
import { writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { isAlive, startContainer, testContainerName, waitFor } from "./support/index.js";
import type { RunningDaemon } from "./support/daemon.js";
import { execDetached, type DetachedExec } from "./support/dockerd.js";
import { usePrivateEngine } from "./support/private-engine.js";

const config = (mode: "dry-run" | "enforce", grace = "200ms"): string => `
pollInterval: 1s
policy:
  idleTimeout: 10s
  minAge: 0s
reaper:
  mode: ${mode}
  grace: ${grace}
`;

/** The --config file the support started the daemon with. */
function configPathOf(d: RunningDaemon): string {
  const args = d.child.spawnargs;
  const path = args[args.indexOf("--config") + 1];
  if (!path) throw new Error(`no --config in ${args.join(" ")}`);
  return path;
}

type LogLine = Record<string, unknown>;
const rejections = (logs: LogLine[]): LogLine[] => logs.filter((l) => l.msg === "config reload rejected; the running config stays in force");

describe("SIGHUP and SIGTERM to a running ptyreaper (private dockerd)", () => {
  const testbed = usePrivateEngine("signals", { teardown: "each" });

  it("rejects a bad config on SIGHUP with one log line and keeps the old one; applies a good one", async () => {
    const name = testContainerName("reload");
    await startContainer({ name });
    const session = await execDetached(testbed.engine.socket, name, ["sh"]);
    const d = await testbed.startDaemon(config("dry-run"));
    const path = configPathOf(d);
    await waitFor(async () => (await d.metric("ptyreaper_would_reap_sessions_total", { reason: "idle" })) === 1, 60_000, "a would-reap in dry-run");

    // Two bad files, each asking for enforce mode: wrong values, then YAML that does not parse.
    const badFiles: [string, RegExp][] = [
      [
        config("enforce").replace("idleTimeout: 10s", "idleTimeout: banana").replace("grace: 200ms", "grace: 200ms\n  maxPerCycle: -3"),
        /policy\.idleTimeout/,
      ],
      ["reaper:\n  mode: enforce\npolicy: [unclosed\n", /./],
    ];
    for (const [index, [text, mentions]] of badFiles.entries()) {
      writeFileSync(path, text);
      d.child.kill("SIGHUP");
      const line = await waitFor(() => rejections(d.logs())[index], 10_000, `rejection ${index + 1} to be logged`);
      expect(line.level).toBe(50);
      expect(Array.isArray(line.problems)).toBe(true);
      const problems = line.problems as string[];
      expect(problems.length).toBeGreaterThan(0);
      expect(problems.join("\n")).toMatch(mentions);
      for (const problem of problems) expect(problem, "one problem per line").not.toContain("\n");
      if (index === 0) expect(problems.some((p) => p.startsWith("reaper.maxPerCycle"))).toBe(true);
      expect(rejections(d.logs())).toHaveLength(index + 1);
    }
    expect(d.logs().filter((l) => l.msg === "config reloaded")).toEqual([]);

    // The old config is still in force: dry-run goes on cycling, nothing is signalled.
    const cycles = (await d.metric("ptyreaper_poll_duration_seconds_count")) ?? 0;
    await d.cycles(4);
    expect(((await d.metric("ptyreaper_poll_duration_seconds_count")) ?? 0) - cycles).toBeGreaterThanOrEqual(2);
    expect(d.logs().filter((l) => l.msg === "signalled exec session")).toEqual([]);
    expect(isAlive(session.pid)).toBe(true);
    expect(d.child.exitCode).toBeNull();

    writeFileSync(path, config("enforce"));
    d.child.kill("SIGHUP");
    const reloaded = await waitFor(() => d.logs().find((l) => l.msg === "config reloaded"), 10_000, "the good config to be applied");
    expect(reloaded.mode).toBe("enforce");
    const reaped = await waitFor(
      () => d.logs().find((l) => l.msg === "reaped exec session" && l.execId === session.execId),
      90_000,
      "the session to be reaped",
    );
    expect(reaped.reason).toBe("idle");
    expect(isAlive(session.pid)).toBe(false);
    expect(rejections(d.logs())).toHaveLength(2);
  }, 180_000);

  it("on SIGTERM mid-escalation exits within 5 s and logs each abandoned escalation", async () => {
    const name = testContainerName("sigterm");
    await startContainer({ name });
    // These ignore SIGHUP, so each escalation waits its grace (60 s) for the SIGTERM step.
    const sessions: DetachedExec[] = [];
    for (let i = 0; i < 3; i++) sessions.push(await execDetached(testbed.engine.socket, name, ["sh", "-c", 'trap "" HUP; exec sleep 1000000']));
    const d = await testbed.startDaemon(config("enforce", "60s"));
    await waitFor(
      () => sessions.every((s) => d.logs().some((l) => l.msg === "signalled exec session" && l.execId === s.execId && l.signal === "SIGHUP")),
      60_000,
      "SIGHUP to all three",
    );
    const exited = new Promise<number | null>((resolve) => d.child.once("exit", (code) => resolve(code)));
    const sentAt = Date.now();
    d.child.kill("SIGTERM");
    const code = await exited;
    const tookMs = Date.now() - sentAt;
    console.log(`SIGTERM with 3 escalations pending: exited ${code} after ${tookMs} ms`);
    expect(code).toBe(0);
    expect(tookMs).toBeLessThanOrEqual(5_000);
    const abandoned = d.logs().filter((l) => l.result === "abandoned");
    expect(abandoned.map((l) => l.execId).sort()).toEqual(sessions.map((s) => s.execId).sort());
    for (const line of abandoned) expect(line).toMatchObject({ step: "SIGHUP", reason: "idle", level: 40 });
    expect(d.logs().some((l) => l.msg === "ptyreaper stopped")).toBe(true);
    // Nothing was sent after SIGHUP: the sessions are left for the next start to re-examine.
    expect(d.logs().filter((l) => l.msg === "signalled exec session" && l.signal !== "SIGHUP")).toEqual([]);
    for (const s of sessions) expect(isAlive(s.pid)).toBe(true);
  }, 120_000);
});
