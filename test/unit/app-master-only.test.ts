// The daemon over a /proc fixture where a containerd shim keeps twenty exec masters: named master-only, counted, never reaped.
import { afterEach, describe, expect, it } from "vitest";
import type { SessionsReport } from "../../src/domain/report.js";
import { refusalFor } from "../../src/reaper/identity.js";
import { readMetric } from "../integration/support/daemon.js";
import {
  SHIM_CONTAINER_DEVPTS,
  SHIM_CONTAINER_ID,
  SHIM_MASTERS,
  SHIM_PID,
  shimMastersDaemon,
  type ShimMastersDaemon,
} from "./support/shim-masters-daemon.js";

let running: ShimMastersDaemon | null = null;
afterEach(async () => {
  await running?.daemon.stop();
  running = null;
});

async function sessions(fixture: ShimMastersDaemon): Promise<SessionsReport> {
  const response = await fixture.daemon.server.inject({ method: "GET", url: "/sessions" });
  expect(response.statusCode).toBe(200);
  return response.json<SessionsReport>();
}

describe("a containerd shim holding twenty masters with no slave holders", () => {
  it("is twenty master-only ptys of that container once the grace has passed, not before", async () => {
    const fixture = (running = shimMastersDaemon());
    await fixture.daemon.poller.runOnce();
    const first = await sessions(fixture);
    expect(first.ptys.length).toBe(SHIM_MASTERS);
    expect(
      first.ptys.every((p) => p.masterOnly === null),
      "inside the grace: not named yet",
    ).toBe(true);

    fixture.advance(59_000);
    await fixture.daemon.poller.runOnce();
    expect((await sessions(fixture)).ptys.every((p) => p.masterOnly === null)).toBe(true);

    fixture.advance(2_000);
    await fixture.daemon.poller.runOnce();
    const report = await sessions(fixture);
    expect(report.ptys.map((p) => p.index)).toEqual([...Array(SHIM_MASTERS).keys()]);
    for (const pty of report.ptys) {
      expect(pty).toMatchObject({
        devptsDev: SHIM_CONTAINER_DEVPTS,
        containerId: SHIM_CONTAINER_ID,
        containerName: "team-a/web-0/app",
        runtime: "containerd",
        masterPids: [SHIM_PID],
        slavePids: [],
        masterOnly: {
          holder: "containerd-shim",
          runtime: "containerd",
          containerId: SHIM_CONTAINER_ID,
          holderPid: SHIM_PID,
          holderCommand: "/usr/bin/containerd-shim-runc-v2",
          sinceSeconds: 61,
        },
      });
    }

    const exposition = (await fixture.daemon.metrics.exposition()).body;
    expect(readMetric(exposition, "ptyreaper_master_only_ptys", { runtime: "containerd", holder: "containerd-shim" })).toBe(SHIM_MASTERS);
    expect(readMetric(exposition, "ptyreaper_master_only_ptys", { runtime: "none", holder: "host" })).toBe(0);
    // The owners the inventory gave them are unchanged: master-only is said beside, not instead.
    expect(readMetric(exposition, "ptyreaper_ptys", { owner: "unattributed" })).toBe(SHIM_MASTERS);
  });

  it("is never a session, and neither the policy nor the reaper targets it, even under pressure in enforce mode", async () => {
    const fixture = (running = shimMastersDaemon());
    await fixture.daemon.poller.runOnce();
    fixture.advance(120_000);
    const snapshot = await fixture.daemon.poller.runOnce();
    expect(snapshot).not.toBeNull();
    const masterOnly = snapshot?.inventory.ptys.filter((p) => p.masterOnly) ?? [];
    expect(masterOnly.length).toBe(SHIM_MASTERS);
    // 20 of a capacity of 23: above policy.pressure.high, so the policy looks for sessions to end.
    expect(snapshot?.inventory.limits.allocated).toBeGreaterThanOrEqual(0.8 * 23);
    const masterOnlyKeys = new Set(masterOnly.map((p) => p.key));
    expect(snapshot?.inventory.sessions.filter((s) => masterOnlyKeys.has(s.ptyKey))).toEqual([]);
    expect(snapshot?.decisions).toEqual([]);
    expect(fixture.signals).toEqual([]);
    expect(fixture.containerd.kills).toEqual([]);
    const exposition = (await fixture.daemon.metrics.exposition()).body;
    expect(readMetric(exposition, "ptyreaper_would_reap_sessions_total")).toBe(0);
    expect(readMetric(exposition, "ptyreaper_reaped_sessions_total")).toBe(0);
    // And were a session ever to name the shim, the never-signal set refuses it.
    const shim = {
      pid: SHIM_PID,
      startTicks: 800,
      comm: "containerd-shim",
      nsPids: [SHIM_PID],
      cgroup: "0::/system.slice/containerd.service",
      ancestors: [{ pid: 1, startTicks: 1 }],
    };
    const guard = {
      exec: { pid: 900, startTicks: 900 },
      containerMain: { pid: 810, startTicks: 810 },
      containerMainAncestors: new Set([SHIM_PID, 1]),
      containerCgroup: "0::/kubepods.slice",
      self: new Set([process.pid]),
    };
    expect(refusalFor(shim, guard)).not.toBeNull();
  });

  it("a reloaded grace applies at the next cycle", async () => {
    const fixture = (running = shimMastersDaemon());
    await fixture.daemon.poller.runOnce();
    fixture.advance(5_000);
    fixture.daemon.reload({ ...fixture.config, log: { level: "fatal" }, masterOnlyGrace: 2_000 });
    await fixture.daemon.poller.runOnce();
    expect((await sessions(fixture)).ptys.filter((p) => p.masterOnly).length).toBe(SHIM_MASTERS);
  });
});
