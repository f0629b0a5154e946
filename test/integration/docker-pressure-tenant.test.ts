// Pressure and tenants on the real kernel and a private Docker engine: one container holds many ptys (three exec
// sessions), another one idle session. ptyreaper names the first (metric, log) and, under pressure, takes its
// sessions before the neighbour's, even though the neighbour's is the longest idle. Dry-run, so nothing is signalled.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { attachedExecSession, startContainer, testContainerName, waitFor, type AttachedExecSession } from "./support/index.js";
import type { SessionsReport } from "../../src/domain/report.js";
import { usePrivateEngine } from "./support/private-engine.js";

describe("pressure takes from the container holding the most ptys first", { timeout: 180_000 }, () => {
  const sessions: AttachedExecSession[] = [];
  const testbed = usePrivateEngine("tenant", { cleanup: async () => void (await Promise.all(sessions.map((s) => s.close()))) });

  it("names the hog and marks its session stale before the neighbour's longer-idle one", async () => {
    const hog = testContainerName("tenant-hog");
    const neighbour = testContainerName("tenant-calm");
    await startContainer({ name: hog });
    await startContainer({ name: neighbour });
    // The neighbour's session is the oldest and so the longest idle: idle-first alone would take it.
    sessions.push(await attachedExecSession(neighbour));
    for (let i = 0; i < 3; i++) sessions.push(await attachedExecSession(hog));
    const hogExecs = new Set(sessions.slice(1).map((s) => s.execId));

    const kernel = (name: string): number => Number(readFileSync(`/proc/sys/kernel/pty/${name}`, "utf8"));
    const capacity = kernel("max") - kernel("reserve") - 1;
    // Pressure from the first pty on (high is one pty's share), one session a cycle, idle at least 10 s;
    // a container above two ptys' share is named: the hog's three are, the neighbour's one is not.
    const d = await testbed.startDaemon(`
pollInterval: 1s
reaper: {mode: dry-run, maxPerCycle: 1}
policy:
  idleTimeout: "off"
  minAge: 1s
  orphanGrace: "off"
  pressure: {high: ${1 / capacity}, low: ${0.5 / capacity}, minIdle: 10s, containerShare: ${2 / capacity}}
runtimes: {containerd: {enabled: false}, podman: {enabled: false}}
`);
    // The first cycle in which all four are past minIdle (input and output, as the policy reads them):
    // until then the neighbour's, idle longest, may be the only candidate.
    type Row = { execId: string; state: string; reason: string | null; detail: string; idleSeconds: number; outputIdleSeconds: number };
    const report = await waitFor(
      async () => {
        const parsed = JSON.parse((await d.get("/sessions")).body) as Omit<SessionsReport, "sessions"> & { sessions: Row[] };
        const ours = parsed.sessions.filter((s) => sessions.some((t) => t.execId === s.execId));
        return ours.length === 4 && ours.every((s) => Math.min(s.idleSeconds, s.outputIdleSeconds) >= 11) ? { ...parsed, sessions: ours } : undefined;
      },
      90_000,
      "all four sessions past minIdle",
      500,
    );
    const stale = report.sessions.filter((s) => s.state === "stale");
    expect(stale).toHaveLength(1);
    expect(stale[0]?.reason).toBe("pressure");
    expect(hogExecs.has(stale[0]?.execId ?? "")).toBe(true);
    expect(stale[0]?.detail).toMatch(/its container's devpts \S+ holds 3, the most first/);
    const calm = report.sessions.find((s) => s.execId === sessions[0]?.execId);
    expect(calm?.state).not.toBe("stale");

    const hogShare = await d.metric("ptyreaper_container_pty_share", { container_name: hog });
    expect(hogShare).toBeCloseTo(3 / capacity, 9);
    expect(await d.metric("ptyreaper_container_pty_share", { container_name: neighbour })).toBeNull();
    const named = d.logs().filter((l) => String(l.msg).startsWith("container holds more than policy.pressure.containerShare"));
    expect(named.map((l) => l.containerName)).toEqual([hog]);
    // Dry-run: every shell is still there.
    await d.cycles(2);
    expect(await d.metric("ptyreaper_reaped_sessions_total", { reason: "pressure" })).toBe(0);
  });
});
