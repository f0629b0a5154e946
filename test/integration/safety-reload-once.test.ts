// Reloads during an escalation and `run --once`, on the real kernel and a private Docker engine: a reload that
// exempts a session or switches to dry-run stops its escalation before the next signal, and `run --once` in
// enforce mode only decides (nothing is signalled).
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { isAlive, sleep, startContainer, testContainerName, waitFor } from "./support/index.js";
import { containerInitPid, execDetached, readRecordedSignals, signalRecorderCmd } from "./support/dockerd.js";
import { MAIN, type RunningDaemon } from "./support/daemon.js";
import { usePrivateEngine } from "./support/private-engine.js";

const run = promisify(execFile);

const ENFORCE = `
pollInterval: 1s
policy:
  idleTimeout: 10s
  minAge: 0s
  exemptContainers: []
reaper:
  mode: enforce
  grace: 5s
  maxPerCycle: 20
log:
  level: debug
`;

type LogLine = Record<string, unknown>;
const signalsTo = (d: RunningDaemon, execId: string): string[] =>
  d
    .logs()
    .filter((l: LogLine) => l.msg === "signalled exec session" && l.execId === execId)
    .map((l) => String(l.signal));

/** The daemon's --config file, from its command line. */
function configPathOf(pid: number): string {
  const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  const path = argv[argv.indexOf("--config") + 1];
  if (!path) throw new Error(`daemon ${pid} has no --config`);
  return path;
}

/** Rewrites the daemon's config and sends it SIGHUP (it is our child); resolves once it logged the reload. */
async function reload(d: RunningDaemon, yaml: string): Promise<void> {
  const before = d.logs().filter((l) => l.msg === "config reloaded").length;
  writeFileSync(configPathOf(d.pid), yaml);
  d.child.kill("SIGHUP");
  await waitFor(() => d.logs().filter((l) => l.msg === "config reloaded").length > before, 10_000, "the daemon to reload");
}

describe("reload during an escalation, and run --once (real kernel, private dockerd)", () => {
  const testbed = usePrivateEngine("reloadonce");

  it("a reload that exempts one session and then one to dry-run stop their escalations before the next signal", async () => {
    const exemptName = testContainerName("rl-exempt");
    const dryName = testContainerName("rl-dry");
    await startContainer({ name: exemptName });
    await startContainer({ name: dryName });
    // Both trap HUP and TERM: only SIGKILL would end them, and it must never come.
    const toExempt = await execDetached(testbed.engine.socket, exemptName, signalRecorderCmd("to-exempt"));
    const toDry = await execDetached(testbed.engine.socket, dryName, signalRecorderCmd("to-dry"));
    const inits = { exempt: await containerInitPid(testbed.engine.socket, exemptName), dry: await containerInitPid(testbed.engine.socket, dryName) };

    const d = await testbed.startDaemon(ENFORCE);
    await waitFor(() => signalsTo(d, toExempt.execId).length > 0 && signalsTo(d, toDry.execId).length > 0, 60_000, "SIGHUP to both sessions", 50);
    await reload(d, ENFORCE.replace("exemptContainers: []", `exemptContainers: ["${exemptName}"]`));
    await waitFor(() => signalsTo(d, toDry.execId).includes("SIGTERM"), 15_000, "SIGTERM to the session still enforced", 50);
    // The exempted one's next step may come a cycle after that SIGTERM (its SIGHUP came a cycle later): it has to
    // meet the exemption, not the dry-run reload below.
    const stoppedFor = (execId: string) => d.logs().some((l) => l.msg === "exec session not reaped" && l.result === "stopped" && l.execId === execId);
    await waitFor(() => stoppedFor(toExempt.execId), 15_000, "the exempted session's escalation to stop", 50);
    await reload(d, ENFORCE.replace("exemptContainers: []", `exemptContainers: ["${exemptName}"]`).replace("mode: enforce", "mode: dry-run"));
    // Each escalation stops at its next step (one grace on), and a dozen cycles (≥ 11 s: more than two
    // graces) pass with nothing more sent.
    await Promise.all([waitFor(() => stoppedFor(toExempt.execId) && stoppedFor(toDry.execId), 30_000, "both escalations to stop"), d.cycles(12)]);

    expect(signalsTo(d, toExempt.execId)).toEqual(["SIGHUP"]);
    expect(signalsTo(d, toDry.execId)).toEqual(["SIGHUP", "SIGTERM"]);
    expect(readRecordedSignals(inits.exempt, "to-exempt")).toEqual(["HUP"]);
    expect(readRecordedSignals(inits.dry, "to-dry")).toEqual(expect.arrayContaining(["HUP", "TERM"]));
    expect(isAlive(toExempt.pid) && isAlive(toDry.pid)).toBe(true);
    const stopped = d.logs().filter((l) => l.msg === "exec session not reaped" && l.result === "stopped");
    expect(stopped.find((l) => l.execId === toExempt.execId)?.why).toMatch(/now exempt: container name/);
    expect(stopped.find((l) => l.execId === toDry.execId)?.why).toMatch(/mode is now dry-run/);
    expect(await d.metric("ptyreaper_reaped_sessions_total", { reason: "idle" })).toBe(0);
  }, 150_000);

  it("run --once in enforce mode decides only: the stale session is reported and nothing is signalled", async () => {
    const name = testContainerName("rl-once");
    await startContainer({ name });
    const exec = await execDetached(testbed.engine.socket, name, signalRecorderCmd("once"));
    const init = await containerInitPid(testbed.engine.socket, name);
    const dir = mkdtempSync(join(tmpdir(), "ptyreaper-once-"));
    const config = join(dir, "config.yaml");
    writeFileSync(config, ENFORCE.replace("idleTimeout: 10s", "idleTimeout: 10s\n  maxAge: 1s"));
    await sleep(1_500); // older than maxAge (wall time; no daemon runs yet, so there is no cycle to count)

    const { stdout, stderr } = await run(process.execPath, [MAIN, "run", "--once", "--config", config], {
      timeout: 60_000,
      env: { ...process.env, DOCKER_HOST: testbed.engine.host },
    });
    const report = JSON.parse(stdout) as { sessions: { execId: string; state: string; reason: string | null }[] };
    expect(report.sessions.find((s) => s.execId === exec.execId)).toMatchObject({ state: "stale", reason: "max_age" });
    expect(stderr).toContain("run --once decides only");
    expect(stderr).not.toContain("signalled exec session");
    await sleep(1_000); // run --once has exited, so no cycle to count: time for a signal it sent to be recorded
    expect(readRecordedSignals(init, "once")).toEqual([]);
    expect(isAlive(exec.pid)).toBe(true);
  }, 90_000);
});
