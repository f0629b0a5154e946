// Reaper: escalation order, the PID-reuse guard and dry-run, over an in-memory /proc and fake timers.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { pino } from "pino";
import type { Stats } from "node:fs";
import { ProcFs } from "../../../src/procfs/procfs.js";
import type { StatFields, StatusFields } from "../../../src/procfs/parse.js";
import { Reaper, type ReapMetrics } from "../../../src/reaper/reaper.js";
import type { DockerPort } from "../../../src/docker/port.js";
import type { ExecInfo, ExecSession } from "../../../src/domain/types.js";
import type { SessionDecision } from "../../../src/domain/snapshot.js";

const CID = "c".repeat(64);

interface FakeProc {
  startTicks: number;
  pidNs: string;
  containerId: string | null;
  nsPids: number[];
  state?: string;
  /** pty slaves held: [devptsDev, index] */
  slaves?: [string, number][];
}

/** /proc held in a map: processes appear, vanish and get reused as a test says. */
class MemoryProcFs extends ProcFs {
  readonly procs = new Map<number, FakeProc>();
  constructor() {
    super("/nonexistent");
  }
  private get(pid: number): FakeProc {
    const p = this.procs.get(pid);
    if (!p) throw Object.assign(new Error(`ENOENT ${pid}`), { code: "ENOENT" });
    return p;
  }
  override stat(pid: number): StatFields {
    const p = this.get(pid);
    return { pid, comm: "sh", state: p.state ?? "S", ppid: 1, pgrp: pid, sid: pid, ttyNr: 0, startTicks: p.startTicks };
  }
  override status(pid: number): StatusFields {
    return { uid: 0, nsPids: this.get(pid).nsPids };
  }
  override namespace(pid: number): string {
    return this.get(pid).pidNs;
  }
  override cgroupContainerId(pid: number): string | null {
    return this.get(pid).containerId;
  }
  override fds(pid: number): string[] {
    return (this.get(pid).slaves ?? []).map((_, i) => String(i));
  }
  override fdStat(pid: number, fd: string): Stats {
    const [dev, index] = this.get(pid).slaves?.[Number(fd)] ?? ["0:0", 0];
    const [major, minor] = dev.split(":").map(Number) as [number, number];
    return { isCharacterDevice: () => true, rdev: 136 * 256 + index, dev: major * 256 + minor } as unknown as Stats;
  }
}

function fakeDocker(exec: () => ExecInfo | null | Error): DockerPort & { calls: number } {
  const port = {
    calls: 0,
    endpoint: "fake",
    ping: () => Promise.resolve(),
    listRunningContainerIds: () => Promise.resolve([]),
    inspectContainer: () => Promise.resolve(null),
    inspectExec: () => {
      port.calls++;
      const result = exec();
      return result instanceof Error ? Promise.reject(result) : Promise.resolve(result);
    },
    subscribeEvents: () => Promise.reject(new Error("unused")),
  };
  return port;
}

function session(over: Partial<ExecSession> = {}): ExecSession {
  return {
    execId: "e1",
    containerId: CID,
    containerName: "victim",
    containerLabels: {},
    pid: 200,
    startTicks: 5000,
    pidNs: "ns1",
    nsPid: 7,
    exemptByEnv: false,
    ptyKey: "0:44:0",
    devptsDev: "0:44",
    index: 0,
    holderPids: [200],
    startedAtMs: 0,
    atimeMs: 0,
    mtimeMs: 0,
    command: "sh",
    ...over,
  };
}
const stale: SessionDecision = { execId: "e1", state: "stale", reason: "idle", detail: "idle 5m ≥ idleTimeout 20s" };

describe("Reaper", () => {
  let procfs: MemoryProcFs;
  let signals: [number, string][];
  let metrics: ReapMetrics & { reapedN: number; wouldN: number; failedN: number };
  let running: boolean;

  beforeEach(() => {
    vi.useFakeTimers();
    procfs = new MemoryProcFs();
    procfs.procs.set(200, { startTicks: 5000, pidNs: "ns1", containerId: CID, nsPids: [200, 7], slaves: [["0:44", 0]] });
    signals = [];
    running = true;
    metrics = {
      reapedN: 0,
      wouldN: 0,
      failedN: 0,
      reaped() {
        this.reapedN++;
      },
      wouldReap() {
        this.wouldN++;
      },
      reapFailed() {
        this.failedN++;
      },
    };
  });
  afterEach(() => vi.useRealTimers());

  function reaper(mode: "enforce" | "dry-run", docker: DockerPort = fakeDocker(() => ({ id: "e1", containerId: CID, running, pid: 200, tty: true, entrypoint: "sh", arguments: [] }))) {
    return new Reaper({
      procfs,
      docker,
      sendSignal: (pid, signal) => {
        signals.push([pid, signal]);
      },
      metrics,
      logger: pino({ enabled: false }),
      now: () => Date.now(),
      mode,
      graceMs: 10_000,
    });
  }

  it("sends SIGHUP first and counts the reap once the process is gone", async () => {
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(signals).toEqual([[200, "SIGHUP"]]);
    procfs.procs.delete(200);
    running = false;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(signals).toEqual([[200, "SIGHUP"]]);
    expect(metrics.reapedN).toBe(1);
    expect(r.pendingCount).toBe(0);
  });

  it("escalates to SIGTERM then SIGKILL after each grace, then reports failure", async () => {
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    await vi.advanceTimersByTimeAsync(10_000);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(signals.map((s) => s[1])).toEqual(["SIGHUP", "SIGTERM", "SIGKILL"]);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(metrics.failedN).toBe(1);
    expect(metrics.reapedN).toBe(0);
  });

  it("never signals a pid reused by another process between two signals", async () => {
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(signals).toEqual([[200, "SIGHUP"]]);
    // The shell exits and pid 200 is reused by a new process.
    procfs.procs.set(200, { startTicks: 9999, pidNs: "ns1", containerId: CID, nsPids: [200, 7], slaves: [["0:44", 0]] });
    await vi.advanceTimersByTimeAsync(30_000);
    expect(signals).toEqual([[200, "SIGHUP"]]);
  });

  it.each([
    ["a container init (pid 1 in its namespace)", { nsPids: [200, 1] }],
    ["a process in another pid namespace", { pidNs: "ns2" }],
    ["a process in another container", { containerId: "d".repeat(64) }],
    ["a host process", { containerId: null }],
  ])("refuses to signal %s", async (_name, change) => {
    procfs.procs.set(200, { ...(procfs.procs.get(200) as FakeProc), ...change });
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(signals).toEqual([]);
  });

  it("signals other holders only while they still hold the same pty in the same container", async () => {
    procfs.procs.set(201, { startTicks: 6000, pidNs: "ns1", containerId: CID, nsPids: [201, 8], slaves: [["0:44", 0]] });
    procfs.procs.set(202, { startTicks: 6000, pidNs: "ns1", containerId: CID, nsPids: [202, 9], slaves: [["0:44", 5]] });
    const r = reaper("enforce");
    r.reap([{ session: session({ holderPids: [200, 201, 202] }), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(signals).toEqual([
      [200, "SIGHUP"],
      [201, "SIGHUP"],
    ]);
  });

  const answers: [string, () => ExecInfo | null | Error][] = [
    ["docker says the exec stopped", () => null],
    ["docker reports another pid", () => ({ id: "e1", containerId: CID, running: true, pid: 999, tty: true, entrypoint: "sh", arguments: [] })],
    ["docker cannot be reached", () => new Error("socket hung")],
  ];
  it.each(answers)("signals nothing when %s", async (_name, answer) => {
    const r = reaper("enforce", fakeDocker(answer));
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(signals).toEqual([]);
    expect(metrics.reapedN).toBe(0);
  });

  it("in dry-run signals nothing and counts each session once across cycles", async () => {
    const docker = fakeDocker(() => null);
    const r = reaper("dry-run", docker);
    for (let cycle = 0; cycle < 3; cycle++) r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(signals).toEqual([]);
    expect(metrics.wouldN).toBe(1);
    expect(docker.calls).toBe(0);
  });

  it("does not start a second escalation for a session already in flight", async () => {
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: stale }]);
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(signals).toEqual([[200, "SIGHUP"]]);
  });

  it("stop() abandons pending escalations and sends nothing more", async () => {
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    r.stop();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(signals).toEqual([[200, "SIGHUP"]]);
    expect(r.pendingCount).toBe(0);
  });
});
