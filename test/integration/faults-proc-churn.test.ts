// /proc churn on the real kernel: thousands of short-lived pty holders appear and exit while ptyreaper scans.
// No crash, no poll error (a vanished process is not an error), and every snapshot stays consistent.
import { describe, expect, it } from "vitest";
import { ptyChurn, sleep, startContainer, testContainerName } from "./support/index.js";
import { execDetached, type DetachedExec } from "./support/dockerd.js";
import { usePrivateEngine } from "./support/private-engine.js";

const CONFIG = `
pollInterval: 1s
policy:
  idleTimeout: "off"
log:
  level: debug
`;

interface Report {
  pty: { allocated: number; found: number; discrepancy: string | null };
  ptys: { devptsDev: string; index: number; owner: string; execId: string | null }[];
  sessions: { execId: string; pid: number; tty: string; devptsDev: string }[];
}

/** Problems with one /sessions snapshot; [] when it is self-consistent. */
function inconsistencies(report: Report, known: readonly DetachedExec[]): string[] {
  const problems: string[] = [];
  const keys = report.ptys.map((p) => `${p.devptsDev}:${p.index}`);
  if (new Set(keys).size !== keys.length) problems.push("a pty is listed twice");
  if (report.pty.found !== report.ptys.length) problems.push(`found ${report.pty.found} but ${report.ptys.length} listed`);
  const byKey = new Map(report.ptys.map((p) => [`${p.devptsDev}:${p.index}`, p]));
  for (const s of report.sessions) {
    const pty = byKey.get(`${s.devptsDev}:${s.tty.replace("pts/", "")}`);
    if (!pty || pty.owner !== "exec" || pty.execId !== s.execId) problems.push(`session ${s.execId} has no matching exec pty`);
  }
  for (const k of known) {
    const s = report.sessions.find((x) => x.execId === k.execId);
    if (!s) problems.push(`known session ${k.execId} missing`);
    else if (s.pid !== k.pid) problems.push(`known session ${k.execId} has pid ${s.pid}, expected ${k.pid}`);
  }
  return problems;
}

describe("/proc churn while ptyreaper runs (real kernel, private dockerd)", () => {
  const testbed = usePrivateEngine("churn");

  it("counts no error for vanished processes and keeps every snapshot consistent", async () => {
    const name = testContainerName("churn");
    await startContainer({ name });
    const known = [await execDetached(testbed.engine.socket, name, ["sh"]), await execDetached(testbed.engine.socket, name, ["sh"])];
    const d = await testbed.startDaemon(CONFIG);
    await d.cycles(2);
    const cyclesBefore = (await d.metric("ptyreaper_poll_duration_seconds_count")) ?? 0;

    const churn = await ptyChurn({ durationMs: 20_000, maxSpawns: 20_000, width: 16 });
    const problems: string[] = [];
    let samples = 0;
    let visibleChurn = 0;
    let finished = false;
    void churn.done.finally(() => (finished = true));
    while (!finished) {
      const res = await d.get("/sessions");
      expect(res.status).toBe(200);
      const report = JSON.parse(res.body) as Report;
      problems.push(...inconsistencies(report, known).map((p) => `sample ${samples}: ${p}`));
      if (report.pty.discrepancy !== null) visibleChurn++;
      samples++;
      await sleep(500); // sampling pace while the churn runs for its durationMs
    }
    const spawned = await churn.done;
    const cycles = ((await d.metric("ptyreaper_poll_duration_seconds_count")) ?? 0) - cyclesBefore;
    console.log(
      `proc churn: ${spawned} pty holders forked and exited during ${cycles} cycles; ${samples} snapshots, ${visibleChurn} showed the churn`,
    );

    expect(problems.length, `inconsistent snapshots, first ones: ${problems.slice(0, 6).join("; ")}`).toBe(0);
    expect(spawned).toBeGreaterThanOrEqual(1_000);
    expect(cycles).toBeGreaterThanOrEqual(10);
    expect(visibleChurn).toBeGreaterThan(0); // scans really ran into the churn
    for (const stage of ["limits", "scan", "docker", "policy", "reap"]) {
      expect(await d.metric("ptyreaper_poll_errors_total", { stage }), stage).toBe(0);
    }
    expect(d.logs().filter((l) => Number(l.level) >= 50)).toEqual([]);
    expect(d.child.exitCode).toBeNull();
    const after = JSON.parse((await d.get("/sessions")).body) as Report;
    expect(inconsistencies(after, known)).toEqual([]);
  }, 120_000);
});
