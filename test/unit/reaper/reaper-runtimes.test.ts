// Reaper with containerd and Podman sessions: confirmed through the runtime, killed through its call after the
// never-signal check, signals by pid when the runtime has no call, and containerd's late pty release allowed for.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { pino } from "pino";
import { Reaper, type ReapMetrics } from "../../../src/reaper/reaper.js";
import type { RefusalReason } from "../../../src/reaper/identity.js";
import { KillSignaller } from "../../../src/reaper/signaller.js";
import { MemoryTable } from "./memory-table.js";
import { CONTAINERD_RELEASE_MS } from "../../../src/reaper/runtime-confirm.js";
import type { ExecSession, Inventory } from "../../../src/domain/types.js";
import type { SessionDecision } from "../../../src/domain/snapshot.js";
import type { ExecSignal, KillOutcome, RuntimePort } from "../../../src/runtimes/port.js";
import type { RuntimeExec } from "../../../src/domain/runtime.js";
import type { RuntimeName } from "../../../src/domain/attribution.js";

const CID = "c".repeat(64);
const EXEC_ID = "e".repeat(64);
const IN_CONTAINER = `1:cpu:/k8s.io/${CID}\n`;
const ON_HOST = "1:cpu:/\n";
const SELF = 7000;

/** A runtime port over one exec; kills are recorded, and `onKill` may end the exec's process. */
class FakeRuntime implements RuntimePort {
  readonly endpoint = "fake";
  kills: [string, string | null, ExecSignal][] = [];
  exec: RuntimeExec | null;
  constructor(
    readonly runtime: RuntimeName,
    pid: number,
    private readonly outcome: KillOutcome,
    private readonly onKill: () => void = () => undefined,
  ) {
    this.exec = { id: EXEC_ID, container: { namespace: runtime === "containerd" ? "k8s.io" : null, id: CID }, pid, running: true, tty: true };
  }
  version = (): Promise<string> => Promise.resolve("1");
  listContainers = (): Promise<never[]> => Promise.resolve([]);
  getContainer = () => Promise.resolve({ runtime: this.runtime, namespace: null, id: CID, initPid: 100, labels: {}, kubernetes: null });
  listExecs = (): Promise<RuntimeExec[]> => Promise.resolve(this.exec ? [this.exec] : []);
  killExec = (exec: Pick<RuntimeExec, "id" | "container">, signal: ExecSignal): Promise<KillOutcome> => {
    this.kills.push([exec.id, exec.container.namespace, signal]);
    if (this.outcome === "signalled") this.onKill();
    return Promise.resolve(this.outcome);
  };
  close = (): void => undefined;
}

function session(runtime: RuntimeName, over: Partial<ExecSession> = {}): ExecSession {
  return {
    execId: EXEC_ID,
    containerId: CID,
    containerName: "team-a/web-0/app",
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
    runtime,
    runtimeNamespace: runtime === "containerd" ? "k8s.io" : null,
    kubernetes: runtime === "containerd" ? { namespace: "team-a", pod: "web-0", podUid: null, container: "app" } : null,
    ...over,
  };
}
const stale: SessionDecision = { execId: EXEC_ID, state: "stale", reason: "idle", detail: "idle" };

function inventory(held: boolean): Inventory {
  const ptys = held
    ? [
        {
          key: "0:44:0",
          devptsDev: "0:44",
          index: 0,
          owner: "exec" as const,
          containerId: CID,
          containerName: "x",
          execId: EXEC_ID,
          masterPids: [90],
          slavePids: [],
          atimeMs: 0,
          mtimeMs: 0,
          leaderPid: null,
          leaderCommand: null,
          leaderStartedAtMs: null,
        },
      ]
    : [];
  return {
    limits: { allocated: ptys.length, max: 4096, reserve: 1024 },
    ptys,
    sessions: [],
    discrepancy: { found: ptys.length, allocated: ptys.length, explanation: null },
    unreadablePids: [],
  };
}

describe("Reaper with other runtimes", () => {
  let table: MemoryTable;
  let signals: [number, string][];
  let metrics: ReapMetrics & { reapedN: number; failedN: number; refusals: RefusalReason[] };

  beforeEach(() => {
    vi.useFakeTimers();
    table = new MemoryTable();
    table.procs.set(1, { ppid: 0, startTicks: 1, cgroup: "1:cpu:/init.scope\n", nsPids: [1], comm: "systemd" });
    table.procs.set(90, { ppid: 1, startTicks: 10, cgroup: ON_HOST, nsPids: [90], comm: "containerd-shim" });
    table.procs.set(100, { ppid: 90, startTicks: 100, cgroup: IN_CONTAINER, nsPids: [100, 1], comm: "sleep" });
    table.procs.set(200, { ppid: 90, startTicks: 5000, cgroup: IN_CONTAINER, nsPids: [200, 7], slaves: [["0:44", 0]] });
    table.procs.set(SELF, { ppid: 1, startTicks: 50, cgroup: ON_HOST, nsPids: [SELF], comm: "node" });
    signals = [];
    metrics = {
      reapedN: 0,
      failedN: 0,
      refusals: [],
      reaped() {
        this.reapedN++;
      },
      wouldReap() {},
      reapFailed() {
        this.failedN++;
      },
      reapRefused(reason) {
        this.refusals.push(reason);
      },
    };
  });
  afterEach(() => vi.useRealTimers());

  function reaper(runtime: FakeRuntime): Reaper {
    return new Reaper({
      processes: table,
      signaller: new KillSignaller((pid, signal) => {
        signals.push([pid, signal]);
      }),
      runtimes: [runtime],
      metrics,
      logger: pino({ enabled: false }),
      now: () => Date.now(),
      selfPid: SELF,
      mode: "enforce",
      graceMs: 10_000,
      maxInFlight: 5,
    });
  }

  it("kills a containerd exec through Tasks.Kill with its exec ID; its child holding the pty gets the signal by pid", async () => {
    table.procs.set(201, { ppid: 200, startTicks: 5100, cgroup: IN_CONTAINER, nsPids: [201, 8], slaves: [["0:44", 0]] });
    const runtime = new FakeRuntime("containerd", 200, "signalled");
    const r = reaper(runtime);
    r.reap([{ session: session("containerd"), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(runtime.kills).toEqual([[EXEC_ID, "k8s.io", "SIGHUP"]]);
    expect(signals).toEqual([[201, "SIGHUP"]]); // never the exec's own pid: the runtime signalled it
  });

  it("falls back to signals by pid when the runtime has no kill call (Podman before 4.8)", async () => {
    const runtime = new FakeRuntime("podman", 200, "unsupported");
    const r = reaper(runtime);
    r.reap([{ session: session("podman"), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(runtime.kills).toHaveLength(1);
    expect(signals).toEqual([[200, "SIGHUP"]]);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(runtime.kills).toHaveLength(1); // not asked again
    expect(signals).toEqual([
      [200, "SIGHUP"],
      [200, "SIGTERM"],
    ]);
  });

  it("refuses when the runtime now records another pid for the exec: nothing killed or signalled", async () => {
    const runtime = new FakeRuntime("containerd", 999, "signalled");
    const r = reaper(runtime);
    r.reap([{ session: session("containerd"), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(runtime.kills).toEqual([]);
    expect(signals).toEqual([]);
    expect(r.pendingCount).toBe(0);
  });

  it("never kills through the runtime a process the never-signal set protects (pid 1 of its namespace)", async () => {
    table.procs.set(200, { ppid: 90, startTicks: 5000, cgroup: IN_CONTAINER, nsPids: [200, 1], slaves: [["0:44", 0]] });
    const runtime = new FakeRuntime("containerd", 200, "signalled");
    const r = reaper(runtime);
    r.reap([{ session: session("containerd"), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(runtime.kills).toEqual([]);
    expect(signals).toEqual([]);
    expect(metrics.refusals).toEqual(["namespace_init"]);
    expect(metrics.failedN).toBe(1);
  });

  it("waits for containerd's late pty release before counting a failure, and counts the reap once the pty is freed", async () => {
    const runtime = new FakeRuntime("containerd", 200, "signalled", () => {
      table.procs.delete(200);
      runtime.exec = null;
    });
    const r = reaper(runtime);
    r.reap([{ session: session("containerd"), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    await vi.advanceTimersByTimeAsync(10_000); // the next step finds no holder and confirms the exec ended
    for (let cycle = 0; cycle < 5; cycle++) {
      r.observe(inventory(true), Date.now());
      await vi.advanceTimersByTimeAsync(10_000);
    }
    expect(metrics.failedN).toBe(0);
    r.observe(inventory(false), Date.now());
    expect(metrics.reapedN).toBe(1);
  });

  it("a containerd pty still held after its release allowance is a failure", async () => {
    const runtime = new FakeRuntime("containerd", 200, "signalled", () => {
      table.procs.delete(200);
      runtime.exec = null;
    });
    const r = reaper(runtime);
    r.reap([{ session: session("containerd"), decision: stale }]);
    await vi.advanceTimersByTimeAsync(10_000);
    r.observe(inventory(true), Date.now());
    await vi.advanceTimersByTimeAsync(CONTAINERD_RELEASE_MS);
    r.observe(inventory(true), Date.now());
    r.observe(inventory(true), Date.now());
    expect(metrics.failedN).toBe(1);
    expect(metrics.reapedN).toBe(0);
  });
});
