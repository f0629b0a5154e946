// maxPerCycle under load, on the real kernel and a private Docker engine: 200 leaked exec sessions turn stale
// at once; no cycle starts more than maxPerCycle escalations, and all of them end reaped.
import { describe, expect, it } from "vitest";
import { isAlive, sleep, startContainer, testContainerName, waitFor } from "./support/index.js";
import { execDetached, type DetachedExec } from "./support/dockerd.js";
import { usePrivateEngine } from "./support/private-engine.js";

const SESSIONS = 200;
const MAX_PER_CYCLE = 20;
const CONFIG = `
pollInterval: 1s
policy:
  idleTimeout: 10s
  minAge: 0s
reaper:
  grace: 200ms
  maxPerCycle: ${MAX_PER_CYCLE}
`;

/** Runs `task` over `items` with at most `width` in flight. */
async function inParallel<T, R>(items: readonly T[], width: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await task(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: width }, worker));
  return results;
}

describe("maxPerCycle with hundreds of stale sessions (real kernel, private dockerd)", () => {
  const testbed = usePrivateEngine("maxcycle", { teardownTimeoutMs: 180_000 });

  it(`starts at most ${MAX_PER_CYCLE} escalations per cycle and reaps all ${SESSIONS}`, async () => {
    const name = testContainerName("maxcycle");
    await startContainer({ name });
    const sessions: DetachedExec[] = await inParallel(
      Array.from({ length: SESSIONS }, (_, i) => i),
      8,
      () => execDetached(testbed.engine.socket, name, ["sh"]),
    );
    expect(new Set(sessions.map((s) => s.execId)).size).toBe(SESSIONS);
    await sleep(11_000); // every one of them idle past idleTimeout before ptyreaper looks (wall time; no daemon yet)

    const d = await testbed.startDaemon(CONFIG);
    let maxStaleSeen = 0;
    await waitFor(
      async () => {
        maxStaleSeen = Math.max(maxStaleSeen, (await d.metric("ptyreaper_exec_sessions", { state: "stale" })) ?? 0);
        return (await d.metric("ptyreaper_reaped_sessions_total", { reason: "idle" })) === SESSIONS;
      },
      180_000,
      `all ${SESSIONS} sessions reaped`,
      200,
    );

    const cycles = d.logs().filter((l) => l.msg === "reap cycle");
    const started = cycles.map((l) => Number(l.started));
    console.log(
      `maxPerCycle: ${cycles.length} reaping cycles, started per cycle ${started.join(",")}; first cycle deferred ${String(cycles[0]?.deferred)}`,
    );
    expect(Math.max(...started)).toBeLessThanOrEqual(MAX_PER_CYCLE);
    expect(started.reduce((a, b) => a + b, 0)).toBe(SESSIONS);
    expect(cycles.length).toBeGreaterThanOrEqual(SESSIONS / MAX_PER_CYCLE);
    // Hundreds were stale at once: the first cycle deferred all but maxPerCycle of them.
    expect(cycles[0]).toMatchObject({ started: MAX_PER_CYCLE, deferred: SESSIONS - MAX_PER_CYCLE });
    expect(maxStaleSeen).toBeLessThanOrEqual(MAX_PER_CYCLE);

    const hups = d.logs().filter((l) => l.msg === "signalled exec session" && l.signal === "SIGHUP");
    expect(new Set(hups.map((l) => l.execId)).size).toBe(SESSIONS);
    expect(hups.length).toBe(SESSIONS);
    const reaped = d.logs().filter((l) => l.msg === "reaped exec session");
    expect(new Set(reaped.map((l) => l.execId))).toEqual(new Set(sessions.map((s) => s.execId)));
    expect(await d.metric("ptyreaper_reap_failures_total")).toBe(0);
    for (const s of sessions) expect(isAlive(s.pid)).toBe(false);
    await waitFor(async () => (await d.metric("ptyreaper_ptys", { owner: "exec" })) === 0, 10_000, "no exec ptys left");
  }, 300_000);
});
