// The seed scenario on the real engine: `ptyreaper run` reaps exactly the leaked, idle exec shells
// and nothing else; in dry-run it only counts them.
import { describe, expect, it } from "vitest";
import {
  attachedExecSession,
  hostPty,
  isAlive,
  leakExecSession,
  startContainer,
  testContainerName,
  waitFor,
  type AttachedExecSession,
  type ExecSessionHandle,
  type HostPty,
} from "./support/index.js";
import { heldPtys, slaveKey } from "./support/accounting.js";
import { usePrivateEngine } from "./support/private-engine.js";

const CONFIG = `
pollInterval: 2s
policy:
  idleTimeout: 20s
  minAge: 5s
reaper:
  grace: 2s
log:
  level: info
`;

interface Scene {
  leaked: ExecSessionHandle[];
  live: AttachedExecSession;
  exemptByLabel: ExecSessionHandle;
  exemptByEnv: ExecSessionHandle;
  host: HostPty;
  typing: NodeJS.Timeout;
}

/** Three leaked shells, a live one getting input, two exempt ones, a host pty. */
async function buildScene(tag: string): Promise<Scene> {
  const victim = testContainerName(`${tag}-victim`);
  const exempt = testContainerName(`${tag}-exempt`);
  await startContainer({ name: victim });
  await startContainer({ name: exempt, labels: { "ptyreaper.exempt": "true" } });
  const leaked = [await leakExecSession(victim), await leakExecSession(victim), await leakExecSession(victim)];
  const exemptByLabel = await leakExecSession(exempt);
  const exemptByEnv = await leakExecSession(victim, { env: { PTYREAPER_EXEMPT: "1" } });
  const live = await attachedExecSession(victim);
  const typing = setInterval(() => live.sendInput("true\r"), 3_000);
  const host = await hostPty();
  return { leaked, live, exemptByLabel, exemptByEnv, host, typing };
}

function survivors(scene: Scene): [string, number][] {
  return [
    ["live session", scene.live.shellPid],
    ["exempt by label", scene.exemptByLabel.shellPid],
    ["exempt by env", scene.exemptByEnv.shellPid],
    ["host pty master", scene.host.masterPid],
    ["host pty slave", scene.host.slavePid],
  ];
}

describe("ptyreaper run on a real Docker engine", () => {
  let scene: Scene | null = null;
  // A private dockerd: the enforcing daemon sees only this file's containers, whatever else runs on the host.
  const testbed = usePrivateEngine("reaps", {
    teardown: "each",
    cleanup: () => {
      if (scene) clearInterval(scene.typing);
      scene = null;
      return Promise.resolve();
    },
  });

  it("reaps the three leaked shells, frees their ptys and leaves everything else running", async () => {
    scene = await buildScene("reap");
    // Each pty by its devpts instance and index: pty.nr counts every pty on the host, not only this file's.
    const leakedPtys = scene.leaked.map((s) => slaveKey(s.shellPid));
    const keptPtys = [scene.live, scene.exemptByLabel, scene.exemptByEnv].map((s) => slaveKey(s.shellPid));
    const d = await testbed.startDaemon(CONFIG);
    await waitFor(async () => (await d.metric("ptyreaper_reaped_sessions_total", { reason: "idle" })) === 3, 120_000, "three idle reaps");
    for (const session of scene.leaked) await waitFor(() => !isAlive(session.shellPid), 10_000, `leaked shell ${session.shellPid} to end`);
    await waitFor(() => leakedPtys.every((key) => !heldPtys().has(key)), 15_000, `the leaked shells' ptys ${leakedPtys.join(", ")} to be freed`);
    const held = heldPtys();
    for (const key of keptPtys) expect(held.has(key), `pty ${key} of a session that stays`).toBe(true);
    for (const [what, pid] of survivors(scene)) expect(isAlive(pid), what).toBe(true);
    // A few more cycles: nothing else is reaped, nothing failed.
    await d.cycles(3);
    expect(await d.metric("ptyreaper_reaped_sessions_total", { reason: "idle" })).toBe(3);
    expect(await d.metric("ptyreaper_reap_failures_total")).toBe(0);
    for (const [what, pid] of survivors(scene)) expect(isAlive(pid), what).toBe(true);
    const reaped = d.logs().filter((l) => l.msg === "reaped exec session");
    expect(reaped.map((l) => l.execId).sort()).toEqual(scene.leaked.map((s) => s.execId).sort());
    for (const line of reaped) expect(line).toMatchObject({ reason: "idle", result: "reaped", container: testContainerName("reap-victim") });
    const sessions = JSON.parse((await d.get("/sessions")).body) as { sessions: { execId: string; state: string; detail: string }[] };
    const states = new Map(sessions.sessions.map((s) => [s.execId, s.state]));
    expect(states.get(scene.exemptByLabel.execId)).toBe("exempt");
    expect(states.get(scene.exemptByEnv.execId)).toBe("exempt");
    expect(states.get(scene.live.execId)).toBe("active");
  }, 240_000);

  it("in dry-run kills nothing and counts the three would-be reaps once", async () => {
    scene = await buildScene("dry");
    const d = await testbed.startDaemon(CONFIG, ["--dry-run"]);
    await waitFor(async () => (await d.metric("ptyreaper_would_reap_sessions_total", { reason: "idle" })) === 3, 120_000, "three would-reap counts");
    await d.cycles(3);
    expect(await d.metric("ptyreaper_would_reap_sessions_total", { reason: "idle" })).toBe(3);
    expect(await d.metric("ptyreaper_reaped_sessions_total", { reason: "idle" })).toBe(0);
    for (const session of scene.leaked) expect(isAlive(session.shellPid)).toBe(true);
    for (const [what, pid] of survivors(scene)) expect(isAlive(pid), what).toBe(true);
    // Their ptys are still allocated and still listed.
    const held = heldPtys();
    for (const session of scene.leaked) expect(held.has(slaveKey(session.shellPid)), `pty of leaked shell ${session.shellPid}`).toBe(true);
    const listed = JSON.parse((await d.get("/sessions")).body) as { sessions: { execId: string; state: string }[] };
    for (const session of scene.leaked) expect(listed.sessions.find((s) => s.execId === session.execId)?.state).toBe("stale");
    expect(await d.metric("ptyreaper_exec_sessions", { state: "stale" })).toBe(3);
  }, 240_000);
});
