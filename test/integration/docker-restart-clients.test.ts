// Issue 21 on a real (private) Docker engine, across a restart of ptyreaper: a client SIGKILLed while the
// daemon is stopped is known gone from the state file and its session reclaimed after the start; another
// attached session is untouched; a corrupt state file gives no evidence (unknown, one warning), never `gone`.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  attachedExecSession,
  isAlive,
  killAndWait,
  sleep,
  startContainer,
  testContainerName,
  waitFor,
  type AttachedExecSession,
} from "./support/index.js";
import { ORPHAN_TEST, ORPHAN_TEST_YAML, waitForClients, type RunningDaemon } from "./support/daemon.js";
import { usePrivateEngine } from "./support/private-engine.js";

const { POLL_MS, GRACE_MS, REAPER_GRACE_MS, PAIRING_MS, GRACE_AND_4_CYCLES, RELEASE_WAIT_MS } = ORPHAN_TEST;
/** Sessions started further apart than a client's window (CLIENT_TO_EXEC_MAX_MS, 5 s) need no elimination to be paired. */
const APART_MS = 6_000;

const testbed = usePrivateEngine("restart", { teardown: "each" });

function config(stateDir: string): string {
  return `${ORPHAN_TEST_YAML}stateDir: ${stateDir}\n`;
}

function waitForState(daemon: RunningDaemon, sessions: AttachedExecSession[], state: string): Promise<unknown> {
  return waitForClients(
    daemon,
    sessions.map((s) => s.execId),
    state,
    PAIRING_MS + 30_000,
  );
}

/** Two attached shells in one container, both paired by a first daemon, which is then stopped. */
async function twoPairedThenStopped(tag: string): Promise<{ stateDir: string; killed: AttachedExecSession; other: AttachedExecSession }> {
  const container = testContainerName(tag);
  await startContainer({ name: container });
  const stateDir = mkdtempSync(join(tmpdir(), "ptyreaper-state-"));
  const first = await testbed.startDaemon(config(stateDir));
  const killed = await attachedExecSession(container);
  await sleep(APART_MS);
  const other = await attachedExecSession(container);
  await waitForState(first, [killed, other], "attached");
  expect(await first.stop()).toBe(0);
  const file = JSON.parse(readFileSync(join(stateDir, "clients.json"), "utf8")) as { records: { execId: string; link: string; goneSinceMs: null }[] };
  expect(file.records.map((r) => r.execId).sort()).toEqual([killed.execId, other.execId].sort());
  expect(file.records.find((r) => r.execId === killed.execId)?.link).toMatch(new RegExp(`^${killed.clientPid}@`));
  return { stateDir, killed, other };
}

describe("exec clients across a restart of ptyreaper (real Docker)", () => {
  it("a client SIGKILLed while the daemon is stopped: its session is reaped (orphaned) within orphanGrace + 2 intervals + grace of the start; the other stays attached", async () => {
    const { stateDir, killed, other } = await twoPairedThenStopped("restart-kill");
    await killAndWait(killed.clientPid);
    const startedAt = Date.now();
    const daemon = await testbed.startDaemon(config(stateDir));
    const budgetMs = GRACE_MS + 2 * POLL_MS + REAPER_GRACE_MS;
    const hup = () => daemon.logs().find((l) => l.msg === "signalled exec session" && l.execId === killed.execId && l.signal === "SIGHUP");
    await waitFor(() => hup(), budgetMs + 30_000, "the orphaned session to be signalled", 100);
    const afterMs = Date.parse(String(hup()?.time)) - startedAt;
    console.log(`restart: session of the client killed while ptyreaper was stopped signalled ${afterMs} ms after the start (budget ${budgetMs} ms)`);
    expect(afterMs).toBeLessThanOrEqual(budgetMs);
    await waitFor(() => !isAlive(killed.shellPid), 30_000, "the orphaned shell to end");
    await waitFor(() => daemon.logs().find((l) => l.msg === "reaped exec session" && l.execId === killed.execId), RELEASE_WAIT_MS, "the reap logged");
    expect(daemon.logs().find((l) => l.msg === "reaped exec session" && l.execId === killed.execId)).toMatchObject({
      reason: "orphaned",
      result: "reaped",
    });

    // The other, idle all along with its client alive, is untouched and attached, a grace and more later.
    await daemon.cycles(GRACE_AND_4_CYCLES);
    expect(isAlive(other.shellPid)).toBe(true);
    const listed = (await daemon.sessions()).get(other.execId);
    expect(listed?.client.state).toBe("attached");
    expect(listed?.state).not.toBe("stale");
    expect(daemon.logs().filter((l) => l.execId === other.execId && l.msg === "signalled exec session")).toEqual([]);
    expect(await daemon.metric("ptyreaper_reaped_sessions_total", { reason: "orphaned" })).toBe(1);
    await other.close();
  }, 300_000);

  it("a corrupt state file: the client killed meanwhile stays unknown and is never reaped, with one warning", async () => {
    const { stateDir, killed, other } = await twoPairedThenStopped("restart-corrupt");
    writeFileSync(join(stateDir, "clients.json"), '{"version":1,"writtenAtMs":');
    await killAndWait(killed.clientPid);
    const daemon = await testbed.startDaemon(config(stateDir));
    await daemon.cycles(GRACE_AND_4_CYCLES);
    const listed = await daemon.sessions();
    // Nothing says when it ended, so nothing says it is gone: unknown, and only the idle policy applies.
    expect(listed.get(killed.execId)?.client.state).toBe("unknown");
    expect(listed.get(killed.execId)?.state).not.toBe("stale");
    expect(isAlive(killed.shellPid)).toBe(true);
    // The live client is seen at first sight, as by any fresh daemon: the file is not needed for it.
    expect(listed.get(other.execId)?.client.state).toBe("attached");
    expect(await daemon.metric("ptyreaper_reaped_sessions_total", { reason: "orphaned" })).toBe(0);
    const warnings = daemon.logs().filter((l) => l.level === 40 && String(l.msg).includes("client state file"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.msg).toMatch(/unreadable: every exec client starts unknown/);
    // Rewritten since, with what this run knows: the live client's pairing.
    const file = JSON.parse(readFileSync(join(stateDir, "clients.json"), "utf8")) as { records: { execId: string }[] };
    expect(file.records.map((r) => r.execId)).toEqual([other.execId]);
    await killAndWait(killed.shellPid);
    await other.close();
  }, 300_000);
});
