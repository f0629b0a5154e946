// Issue 13 on a real (private) Docker engine: sessions whose `docker exec -it` client is gone are reaped
// within orphanGrace; an attached idle session, ambiguous clients and a remote client never are.
import { createServer } from "node:net";
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

const { POLL_MS, GRACE_MS, PAIRING_MS, GRACE_AND_4_CYCLES, RELEASE_WAIT_MS } = ORPHAN_TEST;
/** Sessions started further apart than a client's window (CLIENT_TO_EXEC_MAX_MS, 5 s) need no elimination to be paired. */
const APART_MS = 11_000;

const CONFIG = ORPHAN_TEST_YAML;

/** A free loopback port for the engine's TCP listener (taken, then released for dockerd). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

const TCP_PORT = await freePort();
const testbed = usePrivateEngine("orphans", { teardown: "each", engine: { tcpPort: TCP_PORT } });

/** Waits until the daemon reports each session's client in `state` (the pairing takes PAIRING_MS). */
function waitForSessions(daemon: RunningDaemon, sessions: AttachedExecSession[], state: string): Promise<unknown> {
  return waitForClients(
    daemon,
    sessions.map((s) => s.execId),
    state,
    PAIRING_MS + 30_000,
  );
}

describe("orphaned sessions on a real Docker engine", () => {
  it("reaps a SIGKILLed client's session and a hung-up terminal's within orphanGrace + 2 intervals; an attached idle one stays", async () => {
    const container = testContainerName("orphan-three");
    await startContainer({ name: container });
    const daemon = await testbed.startDaemon(CONFIG);
    const killed = await attachedExecSession(container);
    await sleep(APART_MS);
    const hungUp = await attachedExecSession(container);
    await sleep(APART_MS);
    const idle = await attachedExecSession(container);
    await waitForSessions(daemon, [killed, hungUp, idle], "attached");

    await killAndWait(killed.clientPid);
    const killedAt = Date.now();
    await hungUp.hangUp();
    const hungUpAt = Date.now();
    const budgetMs = GRACE_MS + 2 * POLL_MS;
    await waitFor(() => !isAlive(killed.shellPid) && !isAlive(hungUp.shellPid), budgetMs + 30_000, "both orphaned shells to be reaped", 100);

    // The reaper logs a reap once the pty has left the kernel's inventory: Docker 20.10's shim may keep the
    // master open for tens of seconds after the shell exits (the reaper waits up to 60 s for it).
    const reapedLines = () => daemon.logs().filter((l) => l.msg === "reaped exec session");
    await waitFor(() => reapedLines().length >= 2, RELEASE_WAIT_MS, "two reaps logged").catch((err: unknown) => {
      const ids = new Set([killed.execId, hungUp.execId]);
      const related = daemon.logs().filter((l) => ids.has(String(l.execId)));
      throw new Error(`${(err as Error).message}; daemon log lines of the two sessions: ${JSON.stringify(related)}`);
    });
    const reaped = reapedLines();
    expect(reaped.map((l) => l.execId).sort()).toEqual([killed.execId, hungUp.execId].sort());
    for (const line of reaped) expect(line).toMatchObject({ reason: "orphaned", result: "reaped" });
    // Reaped = sent SIGHUP, within orphanGrace + 2 poll intervals of the client's end.
    for (const [session, goneAt] of [
      [killed, killedAt],
      [hungUp, hungUpAt],
    ] as const) {
      const hup = daemon.logs().find((l) => l.msg === "signalled exec session" && l.execId === session.execId && l.signal === "SIGHUP");
      const afterMs = Date.parse(String(hup?.time)) - goneAt;
      expect(afterMs, `exec ${session.execId.slice(0, 12)} signalled ${afterMs} ms after its client ended`).toBeLessThanOrEqual(budgetMs);
    }
    expect(await daemon.metric("ptyreaper_reaped_sessions_total", { reason: "orphaned" })).toBe(2);
    await waitFor(async () => (await daemon.metric("ptyreaper_reclaim_seconds_count")) === 2, 10_000, "two reclaim times");
    // From the cycle that saw the client gone to the one that saw the pty freed: never under the grace,
    // and no longer than from the client's end to the logged reap.
    const mean = ((await daemon.metric("ptyreaper_reclaim_seconds_sum")) ?? NaN) / 2;
    const loggedMs = reaped.map((l) => Date.parse(String(l.time)) - (l.execId === killed.execId ? killedAt : hungUpAt));
    expect(mean).toBeGreaterThanOrEqual(GRACE_MS / 1000);
    expect(mean).toBeLessThanOrEqual((loggedMs[0]! + loggedMs[1]!) / 2 / 1000);

    // The attached session, idle all along, is untouched and still attached, a few cycles on.
    await daemon.cycles(3);
    expect(isAlive(idle.shellPid)).toBe(true);
    const listed = (await daemon.sessions()).get(idle.execId);
    expect(listed?.client.state).toBe("attached");
    expect(listed?.state).not.toBe("stale");
    expect(listed?.idleSeconds).toBeGreaterThanOrEqual(GRACE_MS / 1000);
    expect(await daemon.metric("ptyreaper_reaped_sessions_total", { reason: "idle" })).toBe(0);
    expect(await daemon.metric("ptyreaper_exec_clients", { client: "attached" })).toBe(1);
    await idle.close();
  }, 300_000);

  it("two clients for the same container and command in the same second, one killed: the live one is never reaped", async () => {
    const container = testContainerName("orphan-twins");
    await startContainer({ name: container });
    const daemon = await testbed.startDaemon(CONFIG);
    const [first, second] = await Promise.all([attachedExecSession(container), attachedExecSession(container)]);
    if (!first || !second) throw new Error("two sessions expected");
    // Both paired correctly, or both unknown; never a cross pairing.
    await waitFor(
      async () => {
        const listed = await daemon.sessions();
        return [first, second].every((s) => listed.get(s.execId)?.client.detail.startsWith("pairing pending") === false);
      },
      PAIRING_MS + 30_000,
      "the pairing window to close",
      250,
    );
    const before = await daemon.sessions();
    const states = [first, second].map((s) => before.get(s.execId)?.client.state);
    expect([
      ["unknown", "unknown"],
      ["attached", "attached"],
    ]).toContainEqual(states);

    await killAndWait(first.clientPid);
    await daemon.cycles(GRACE_AND_4_CYCLES);
    expect(isAlive(second.shellPid)).toBe(true);
    const after = await daemon.sessions();
    expect(after.get(second.execId)?.state).not.toBe("stale");
    expect(["unknown", "attached"]).toContain(after.get(second.execId)?.client.state);
    // The killed one is reaped only if it was paired with its own client.
    const reapedIds = daemon
      .logs()
      .filter((l) => l.msg === "reaped exec session")
      .map((l) => l.execId);
    expect(reapedIds).not.toContain(second.execId);
    if (states[0] === "unknown") expect(reapedIds).toEqual([]);
    await second.close();
  }, 240_000);

  it("a client that reaches the engine over TCP is unknown, and its session is not reaped before idleTimeout", async () => {
    const container = testContainerName("orphan-remote");
    await startContainer({ name: container });
    const daemon = await testbed.startDaemon(CONFIG);
    const remote = await attachedExecSession(container, { host: `tcp://127.0.0.1:${TCP_PORT}` });
    await waitForSessions(daemon, [remote], "unknown");
    await waitFor(
      async () => (await daemon.sessions()).get(remote.execId)?.client.detail.includes("no connection to this engine's socket"),
      PAIRING_MS + 30_000,
      "the remote client to be judged",
    );
    await killAndWait(remote.clientPid);
    await daemon.cycles(GRACE_AND_4_CYCLES);
    expect(isAlive(remote.shellPid)).toBe(true);
    const listed = (await daemon.sessions()).get(remote.execId);
    expect(listed?.client.state).toBe("unknown");
    expect(listed?.state).not.toBe("stale");
    expect(await daemon.metric("ptyreaper_reaped_sessions_total", { reason: "orphaned" })).toBe(0);
    expect(await daemon.metric("ptyreaper_exec_clients", { client: "unknown" })).toBe(1);
    await remote.close();
  }, 240_000);

  it("in dry-run counts would_reap{reason=orphaned} once and signals nothing", async () => {
    const container = testContainerName("orphan-dry");
    await startContainer({ name: container });
    const daemon = await testbed.startDaemon(CONFIG, ["--dry-run"]);
    const session = await attachedExecSession(container);
    await waitForSessions(daemon, [session], "attached");
    await killAndWait(session.clientPid);
    await waitFor(
      async () => (await daemon.metric("ptyreaper_would_reap_sessions_total", { reason: "orphaned" })) === 1,
      GRACE_MS + 30_000,
      "one would-reap",
    );
    await daemon.cycles(3);
    expect(await daemon.metric("ptyreaper_would_reap_sessions_total", { reason: "orphaned" })).toBe(1);
    expect(await daemon.metric("ptyreaper_reaped_sessions_total", { reason: "orphaned" })).toBe(0);
    expect(isAlive(session.shellPid)).toBe(true);
    const listed = (await daemon.sessions()).get(session.execId);
    expect(listed).toMatchObject({ state: "stale", reason: "orphaned", client: { state: "gone" } });
    expect(await daemon.metric("ptyreaper_exec_clients", { client: "gone" })).toBe(1);
    await session.close();
  }, 240_000);
});
