// Reaper: escalation order, targets re-read each step, the never-signal set, release confirmation, reloads
// and dry-run, over an in-memory process table and fake timers.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { pino } from "pino";
import { Reaper, MAX_ATTEMPTS, RELEASE_TIMEOUT_MS, type ReapMetrics } from "../../../src/reaper/reaper.js";
import type { RefusalReason } from "../../../src/reaper/identity.js";
import { KillSignaller } from "../../../src/reaper/signaller.js";
import { MemoryTable, type FakeProc } from "./memory-table.js";
import type { DockerEngine, ExecInfo } from "../../../src/runtimes/docker/engine.js";
import type { ExecSession, Inventory, Pty } from "../../../src/domain/types.js";
import type { SessionDecision } from "../../../src/domain/snapshot.js";
import { DockerRuntime } from "../../../src/runtimes/docker/docker.js";

const CID = "c".repeat(64);
const IN_CONTAINER = `0::/system.slice/docker-${CID}.scope\n`;
const ON_HOST = "0::/system.slice/containerd.service\n";
const SELF = 7000;

const execInfo = (over: Partial<ExecInfo> = {}): ExecInfo => ({
  id: "e1",
  containerId: CID,
  running: true,
  pid: 200,
  tty: true,
  entrypoint: "sh",
  arguments: [],
  ...over,
});

function fakeDocker(exec: () => ExecInfo | null | Error): DockerEngine & { calls: number } {
  const port = {
    calls: 0,
    endpoint: "fake",
    ping: () => Promise.resolve(),
    listRunningContainerIds: () => Promise.resolve([]),
    inspectContainer: () => Promise.resolve({ id: CID, name: "victim", labels: {}, pid: 100, tty: false, execIds: ["e1"] }),
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
    runtime: "docker",
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

function inventoryWith(ptys: Partial<Pty>[]): Inventory {
  return {
    limits: { allocated: ptys.length, max: 4096, reserve: 1024 },
    ptys: ptys.map((p) => ({
      key: "0:44:0",
      devptsDev: "0:44",
      index: 0,
      owner: "exec",
      containerId: CID,
      containerName: "victim",
      execId: "e1",
      masterPids: [90],
      slavePids: [],
      atimeMs: 0,
      mtimeMs: 0,
      leaderPid: null,
      leaderCommand: null,
      leaderStartedAtMs: null,
      ...p,
    })),
    sessions: [],
    discrepancy: { found: ptys.length, allocated: ptys.length, explanation: null },
    unreadablePids: [],
  };
}
const released = inventoryWith([]);
const stillHeld = (slavePids: number[]): Inventory => inventoryWith([{ slavePids }]);

describe("Reaper", () => {
  let table: MemoryTable;
  let signals: [number, string][];
  let metrics: ReapMetrics & { reapedN: number; wouldN: number; failedN: number; refusals: RefusalReason[]; cuts: string[] };
  let running: boolean;
  let exemption: string | null;

  beforeEach(() => {
    vi.useFakeTimers();
    table = new MemoryTable();
    table.procs.set(1, { ppid: 0, startTicks: 1, cgroup: "0::/init.scope\n", nsPids: [1], comm: "systemd" });
    table.procs.set(90, { ppid: 1, startTicks: 10, cgroup: ON_HOST, nsPids: [90], comm: "containerd-shim" });
    table.procs.set(100, { ppid: 90, startTicks: 100, cgroup: IN_CONTAINER, nsPids: [100, 1], comm: "docker-init" });
    table.procs.set(101, { ppid: 100, startTicks: 110, cgroup: IN_CONTAINER, nsPids: [101, 6] });
    table.procs.set(200, { ppid: 90, startTicks: 5000, cgroup: IN_CONTAINER, nsPids: [200, 7], slaves: [["0:44", 0]] });
    table.procs.set(SELF, { ppid: 1, startTicks: 50, cgroup: ON_HOST, nsPids: [SELF], comm: "node" });
    signals = [];
    running = true;
    exemption = null;
    metrics = {
      reapedN: 0,
      wouldN: 0,
      failedN: 0,
      refusals: [],
      cuts: [],
      reaped() {
        this.reapedN++;
      },
      wouldReap() {
        this.wouldN++;
      },
      reapFailed() {
        this.failedN++;
      },
      reapRefused(reason) {
        this.refusals.push(reason);
      },
      processReadsCut(reason) {
        this.cuts.push(reason);
      },
    };
  });
  afterEach(() => vi.useRealTimers());

  function reaper(mode: "enforce" | "dry-run", docker: DockerEngine = fakeDocker(() => execInfo({ running })), readClock?: () => number) {
    return new Reaper({
      processes: table,
      signaller: new KillSignaller((pid, signal) => {
        signals.push([pid, signal]);
      }),
      runtimes: [new DockerRuntime(docker, { logger: pino({ enabled: false }) })],
      metrics,
      logger: pino({ enabled: false }),
      now: () => Date.now(),
      selfPid: SELF,
      exemption: () => exemption,
      ...(readClock ? { readClock } : {}),
      mode,
      graceMs: 10_000,
      maxInFlight: 5,
    });
  }

  it("sends SIGHUP first and counts the reap only once the kernel freed the pty", async () => {
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(signals).toEqual([[200, "SIGHUP"]]);
    table.procs.delete(200);
    running = false;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(signals).toEqual([[200, "SIGHUP"]]);
    expect(metrics.reapedN).toBe(0); // holders gone, pty not yet seen released
    r.observe(stillHeld([]), Date.now());
    expect(metrics.reapedN).toBe(0);
    r.observe(released, Date.now());
    expect(metrics.reapedN).toBe(1);
    expect(r.pendingCount).toBe(0);
  });

  it("sends nothing to an idle session whose pty saw input or output after the times it was judged on; max_age still goes", async () => {
    const holder = table.procs.get(200);
    if (!holder) throw new Error("no holder");
    holder.activity = { atimeMs: 5_000, mtimeMs: 0 }; // typed into after the scan that judged it (its times: 0)
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(signals).toEqual([]);
    expect(r.pendingCount).toBe(0);
    // Output only: activity while idleIncludesOutput (the default); input only: not.
    holder.activity = { atimeMs: 0, mtimeMs: 5_000 };
    r.reap([{ session: session(), decision: { ...stale, reason: "pressure" } }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(signals).toEqual([]);
    r.configure({ mode: "enforce", graceMs: 10_000, maxInFlight: 5, idleIncludesOutput: false });
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(signals).toEqual([[200, "SIGHUP"]]);
  });

  it("a session past maxAge is signalled however recent its input", async () => {
    const holder = table.procs.get(200);
    if (!holder) throw new Error("no holder");
    holder.activity = { atimeMs: 5_000, mtimeMs: 5_000 };
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: { ...stale, reason: "max_age" } }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(signals).toEqual([[200, "SIGHUP"]]);
  });

  it("judges the release only with an inventory read after the holders were found gone", async () => {
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    const readBefore = Date.now();
    table.procs.delete(200);
    running = false;
    await vi.advanceTimersByTimeAsync(10_000);
    r.observe(stillHeld([200]), readBefore); // read while the shell still ran
    expect(metrics.failedN).toBe(0);
    r.observe(released, Date.now());
    expect(metrics.reapedN).toBe(1);
  });

  it("a pty still listed after its holders are gone is a failure, retried on later cycles, then given up", async () => {
    const r = reaper("enforce");
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      if (attempt === 1) r.reap([{ session: session(), decision: stale }]);
      await vi.advanceTimersByTimeAsync(0);
      table.procs.delete(200);
      running = false;
      await vi.advanceTimersByTimeAsync(10_000);
      r.observe(stillHeld([]), Date.now());
      expect(metrics.failedN).toBe(attempt - 1); // the shim may take a while to close the master
      await vi.advanceTimersByTimeAsync(RELEASE_TIMEOUT_MS);
      r.observe(stillHeld([]), Date.now());
      expect(metrics.failedN).toBe(attempt);
      if (attempt < MAX_ATTEMPTS) r.observe(stillHeld([]), Date.now()); // the retry starts on the next cycle
    }
    expect(r.pendingCount).toBe(0);
    expect(r.reap([{ session: session(), decision: stale }])).toBe(0); // given up: not restarted by the policy
    expect(metrics.reapedN).toBe(0);
  });

  it("escalates to SIGTERM then SIGKILL after each grace, then reports a failure naming the holders", async () => {
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    await vi.advanceTimersByTimeAsync(10_000);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(signals.map((s) => s[1])).toEqual(["SIGHUP", "SIGTERM", "SIGKILL"]);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(metrics.failedN).toBe(0); // one more look a grace later: a killed process may still be exiting
    await vi.advanceTimersByTimeAsync(10_000);
    expect(signals).toHaveLength(3);
    expect(metrics.failedN).toBe(1);
    expect(metrics.reapedN).toBe(0);
    expect(r.pendingCount).toBe(1); // kept for a retry, not dropped
  });

  it("a holder still exiting one grace after SIGKILL is looked at once more, not counted a failure", async () => {
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    await vi.advanceTimersByTimeAsync(20_000); // SIGHUP, SIGTERM, SIGKILL sent
    await vi.advanceTimersByTimeAsync(10_000); // still listed as a holder: looked at again later
    table.procs.delete(200); // it finished exiting
    running = false;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(signals.map((s) => s[1])).toEqual(["SIGHUP", "SIGTERM", "SIGKILL"]);
    expect(metrics.failedN).toBe(0);
    r.observe(released, Date.now());
    expect(metrics.reapedN).toBe(1);
  });

  it.each([
    { how: "from the container's cgroup listing", listing: true },
    { how: "from every process's cgroup where the container's cannot be listed", listing: false },
  ])("re-reads the targets at every step ($how): a child forked after SIGHUP gets SIGTERM", async ({ listing }) => {
    table.noCgroupListing = !listing;
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    table.procs.set(201, { ppid: 200, startTicks: 6000, cgroup: IN_CONTAINER, nsPids: [201, 8], slaves: [["0:44", 0]] });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(signals).toEqual([
      [200, "SIGHUP"],
      [200, "SIGTERM"],
      [201, "SIGTERM"],
    ]);
  });

  it("reaches an orphan reparented to the container's init (started after the exec)", async () => {
    table.procs.set(201, { ppid: 100, startTicks: 6000, cgroup: IN_CONTAINER, nsPids: [201, 8], slaves: [["0:44", 0]] });
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(signals).toEqual([
      [200, "SIGHUP"],
      [201, "SIGHUP"],
    ]);
  });

  it.each<[string, number, Partial<FakeProc>, RefusalReason]>([
    ["the container's init (NSpid 1)", 100, {}, "namespace_init"],
    ["the container's main process under --pid=host (no NSpid 1)", 100, { nsPids: [100] }, "container_main"],
    ["the container's loop under docker-init (started before the exec)", 101, {}, "container_process"],
    [
      "a process that is not the exec's (its parent is outside)",
      300,
      { ppid: 1, startTicks: 6000, cgroup: IN_CONTAINER, nsPids: [300, 9] },
      "not_in_session",
    ],
    ["a host process on the same pty (shared devpts)", 301, { ppid: 1, startTicks: 6000, cgroup: ON_HOST, nsPids: [301] }, "outside_cgroup"],
  ])("never signals %s holding the exec's pty; the session is not counted reaped", async (_name, pid, proc, reason) => {
    table.procs.set(pid, {
      ppid: 100,
      startTicks: 6000,
      cgroup: IN_CONTAINER,
      nsPids: [pid, 9],
      ...table.procs.get(pid),
      ...proc,
      slaves: [["0:44", 0]],
    });
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(signals.filter(([p]) => p === pid)).toEqual([]);
    expect(signals.filter(([p]) => p === 200).map((s) => s[1])).toEqual(["SIGHUP", "SIGTERM", "SIGKILL"]);
    // Only in-cgroup holders are candidates; a host process is never even a candidate.
    expect(metrics.refusals).toEqual(reason === "outside_cgroup" ? [] : [reason]);
    table.procs.delete(200);
    await vi.advanceTimersByTimeAsync(10_000);
    r.observe(stillHeld([pid]), Date.now());
    expect(metrics.reapedN).toBe(0);
  });

  it("passes over a holder that lets go of the pty between being found and being checked: neither signalled nor refused", async () => {
    // The shell's child closes the tty right after the walk found it (its second look is the check's).
    let looks = 0;
    const child: FakeProc = { ppid: 200, startTicks: 6000, cgroup: IN_CONTAINER, nsPids: [201, 8] };
    Object.defineProperty(child, "slaves", { get: () => (looks++ === 0 ? [["0:44", 0]] : []) });
    table.procs.set(201, child);
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(looks).toBeGreaterThanOrEqual(2);
    expect(signals).toEqual([[200, "SIGHUP"]]);
    expect(metrics.refusals).toEqual([]);
  });

  describe("a process whose fds are not read (more than HOLDER_MAX_FDS, not on its standard streams)", () => {
    it("is refused when the scan listed it as a holder of the pty: never signalled on a guess, the cut counted", async () => {
      table.procs.set(202, { ppid: 200, startTicks: 6000, cgroup: IN_CONTAINER, nsPids: [202, 8], slaves: [["0:44", 0]], manyFds: true });
      const r = reaper("enforce");
      r.reap([{ session: session({ holderPids: [200, 202] }), decision: stale }]);
      await vi.advanceTimersByTimeAsync(0);
      expect(signals).toEqual([[200, "SIGHUP"]]);
      expect(metrics.refusals).toEqual(["fd_cap"]);
      expect(metrics.cuts.length).toBeGreaterThan(0);
      expect(new Set(metrics.cuts)).toEqual(new Set(["fd_cap"]));
    });

    it("is passed over when the scan did not list it: neither signalled nor refused, and the session is reaped", async () => {
      table.procs.set(203, { ppid: 100, startTicks: 6000, cgroup: IN_CONTAINER, nsPids: [203, 9], manyFds: true });
      const r = reaper("enforce");
      r.reap([{ session: session(), decision: stale }]);
      await vi.advanceTimersByTimeAsync(0);
      expect(signals).toEqual([[200, "SIGHUP"]]);
      expect(metrics.cuts.length).toBeGreaterThan(0);
      table.procs.delete(200);
      running = false;
      await vi.advanceTimersByTimeAsync(10_000);
      r.observe(released, Date.now());
      expect(metrics.reapedN).toBe(1);
      expect(metrics.refusals).toEqual([]);
      expect(metrics.failedN).toBe(0);
    });

    it("when it is the exec's own process, refuses the session: nothing is signalled", async () => {
      table.procs.set(200, { ...(table.procs.get(200) as FakeProc), manyFds: true });
      const r = reaper("enforce");
      r.reap([{ session: session(), decision: stale }]);
      await vi.advanceTimersByTimeAsync(30_000);
      expect(signals).toEqual([]);
      expect(metrics.refusals).toEqual(["fd_cap"]);
      expect(r.pendingCount).toBe(0);
    });

    it("a walk of a container with thousands of processes stops at the step's budget, after the scan's holders (counted)", async () => {
      for (let pid = 1000; pid < 4000; pid++) table.procs.set(pid, { ppid: 100, startTicks: 6000, cgroup: IN_CONTAINER, nsPids: [pid, 9] });
      // The scan's holders come first (the exec's process here): reached though every look at the clock finds the budget spent.
      table.procs.set(3999, { ppid: 200, startTicks: 6000, cgroup: IN_CONTAINER, nsPids: [3999, 9], slaves: [["0:44", 0]] });
      let now = 0;
      const r = reaper("enforce", undefined, () => (now += 1_000));
      r.reap([{ session: session({ holderPids: [200, 3999] }), decision: stale }]);
      await vi.advanceTimersByTimeAsync(0);
      expect(signals).toEqual([
        [200, "SIGHUP"],
        [3999, "SIGHUP"],
      ]);
      expect(metrics.cuts).toContain("read_budget");
    });

    it("a holder listed by a later inventory is refused at the next step", async () => {
      const r = reaper("enforce");
      r.reap([{ session: session(), decision: stale }]);
      await vi.advanceTimersByTimeAsync(0);
      // A child holding the pty past its standard streams with many fds, seen by the next scan.
      table.procs.set(204, { ppid: 200, startTicks: 6000, cgroup: IN_CONTAINER, nsPids: [204, 8], slaves: [["0:44", 0]], manyFds: true });
      r.observe(stillHeld([200, 204]), Date.now());
      await vi.advanceTimersByTimeAsync(10_000);
      expect(signals).toEqual([
        [200, "SIGHUP"],
        [200, "SIGTERM"],
      ]);
      expect(metrics.refusals).toEqual(["fd_cap"]);
    });
  });

  it("never signals a pid reused by another process between two signals", async () => {
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(signals).toEqual([[200, "SIGHUP"]]);
    // The shell exits and pid 200 is reused by a new process on the same pty, in the same container.
    table.procs.set(200, { ppid: 90, startTicks: 9999, cgroup: IN_CONTAINER, nsPids: [200, 7], slaves: [["0:44", 0]] });
    await vi.advanceTimersByTimeAsync(30_000);
    expect(signals).toEqual([[200, "SIGHUP"]]);
    expect(metrics.refusals).toEqual(["pid_reused"]);
    expect(metrics.failedN).toBe(1);
  });

  describe("a session pinned when judged stale", () => {
    // The container's main program (101's parent, 100) starts a pty holder of its own the moment the exec's pty is
    // freed; devpts hands it the same index. ctime 1 is the exec's allocation, 2 the new one.
    const mainsHolder = (ctimeNs: bigint): FakeProc => ({
      ppid: 100,
      startTicks: 9000,
      cgroup: IN_CONTAINER,
      nsPids: [300, 9],
      slaves: [["0:44", 0, ctimeNs]],
    });

    it("stops at the next step once the index is allocated again, never signals the new holder, and counts the release", async () => {
      const r = reaper("enforce");
      r.reap([{ session: session(), decision: stale }]);
      await vi.advanceTimersByTimeAsync(0);
      expect(signals).toEqual([[200, "SIGHUP"]]);
      table.procs.delete(200);
      table.procs.set(300, mainsHolder(2n));
      await vi.advanceTimersByTimeAsync(30_000);
      expect(signals).toEqual([[200, "SIGHUP"]]);
      expect(metrics.refusals).toEqual(["allocation_changed"]);
      r.observe(stillHeld([300]), Date.now());
      expect(metrics.reapedN).toBe(1);
      expect(metrics.failedN).toBe(0);
      expect(r.pendingCount).toBe(0);
    });

    it("never signals a later child of the main process even on the same allocation (ctime not moved): only pinned processes and their descendants", async () => {
      const r = reaper("enforce");
      r.reap([{ session: session(), decision: stale }]);
      await vi.advanceTimersByTimeAsync(0);
      table.procs.set(300, mainsHolder(1n));
      await vi.advanceTimersByTimeAsync(30_000);
      expect(signals.filter(([pid]) => pid === 300)).toEqual([]);
      expect(signals.map((s) => s[1])).toEqual(["SIGHUP", "SIGTERM", "SIGKILL"]);
      expect(metrics.refusals).toEqual(["not_pinned"]);
    });

    it("a release seen by the cycle after the index was allocated again is a reap, with no signal to the new holder", async () => {
      const r = reaper("enforce");
      r.reap([{ session: session(), decision: stale }]);
      await vi.advanceTimersByTimeAsync(0);
      table.procs.delete(200);
      await vi.advanceTimersByTimeAsync(10_000); // no holder: waiting for the release
      table.procs.set(300, mainsHolder(2n));
      r.observe(stillHeld([300]), Date.now());
      await vi.advanceTimersByTimeAsync(30_000);
      expect(signals).toEqual([[200, "SIGHUP"]]);
      expect(metrics.reapedN).toBe(1);
    });

    it("a retry whose exec the runtime reports ended sends nothing, whoever holds the index", async () => {
      const r = reaper("enforce");
      r.reap([{ session: session(), decision: stale }]);
      await vi.advanceTimersByTimeAsync(0);
      table.procs.delete(200);
      running = false;
      await vi.advanceTimersByTimeAsync(10_000);
      await vi.advanceTimersByTimeAsync(RELEASE_TIMEOUT_MS);
      r.observe(stillHeld([]), Date.now()); // held by the master alone too long: a failure, retried
      expect(metrics.failedN).toBe(1);
      table.procs.set(300, mainsHolder(1n)); // on the same allocation even: not the exec's
      r.observe(stillHeld([300]), Date.now()); // the retry starts
      await vi.advanceTimersByTimeAsync(30_000);
      expect(signals).toEqual([[200, "SIGHUP"]]);
      expect(metrics.refusals).toEqual([]);
    });

    it("a child forked by the session is pinned when found, so it is still reached once reparented to the main process", async () => {
      const r = reaper("enforce");
      r.reap([{ session: session(), decision: stale }]);
      await vi.advanceTimersByTimeAsync(0);
      table.procs.set(201, { ppid: 200, startTicks: 6000, cgroup: IN_CONTAINER, nsPids: [201, 8], slaves: [["0:44", 0]] });
      await vi.advanceTimersByTimeAsync(10_000); // SIGTERM to 200 and its new child 201
      table.procs.delete(200);
      table.procs.set(201, { ...(table.procs.get(201) as FakeProc), ppid: 100 });
      await vi.advanceTimersByTimeAsync(10_000);
      expect(signals).toEqual([
        [200, "SIGHUP"],
        [200, "SIGTERM"],
        [201, "SIGTERM"],
        [201, "SIGKILL"],
      ]);
    });

    it("an allocation whose inode changed under a second ago is not pinned: nothing sent, judged again later", async () => {
      table.procs.set(200, { ...(table.procs.get(200) as FakeProc), slaves: [["0:44", 0, BigInt(Date.now()) * 1_000_000n]] });
      const r = reaper("enforce");
      r.reap([{ session: session(), decision: stale }]);
      await vi.advanceTimersByTimeAsync(30_000);
      expect(signals).toEqual([]);
      expect(r.pendingCount).toBe(0);
      vi.setSystemTime(Date.now() + 2_000);
      r.reap([{ session: session(), decision: stale }]);
      await vi.advanceTimersByTimeAsync(0);
      expect(signals).toEqual([[200, "SIGHUP"]]);
    });

    it("a moved ctime while a pinned process still holds the pty (a chmod) stops the escalation, refusing nobody", async () => {
      const r = reaper("enforce");
      r.reap([{ session: session(), decision: stale }]);
      await vi.advanceTimersByTimeAsync(0);
      table.procs.set(200, { ...(table.procs.get(200) as FakeProc), slaves: [["0:44", 0, 2n]] });
      await vi.advanceTimersByTimeAsync(30_000);
      expect(signals).toEqual([[200, "SIGHUP"]]);
      expect(metrics.refusals).toEqual([]);
      expect(r.pendingCount).toBe(0);
    });
  });

  it("a reload to dry-run stops the escalation before its next signal", async () => {
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    r.configure({ mode: "dry-run", graceMs: 10_000, maxInFlight: 5 });
    await vi.advanceTimersByTimeAsync(30_000);
    expect(signals).toEqual([[200, "SIGHUP"]]);
    expect(r.pendingCount).toBe(0);
    expect(metrics.reapedN + metrics.failedN).toBe(0);
  });

  it("a new exemption stops the escalation before its next signal", async () => {
    const r = reaper("enforce");
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(0);
    exemption = "label ptyreaper.exempt=true";
    await vi.advanceTimersByTimeAsync(30_000);
    expect(signals).toEqual([[200, "SIGHUP"]]);
  });

  it("a lower maxPerCycle stops the newest escalations before their next signal", async () => {
    table.procs.set(300, { ppid: 90, startTicks: 5000, cgroup: IN_CONTAINER, nsPids: [300, 9], slaves: [["0:44", 1]] });
    const docker = fakeDocker(() => execInfo());
    docker.inspectExec = (id: string) => Promise.resolve(execInfo(id === "e2" ? { id, pid: 300 } : {}));
    docker.inspectContainer = () => Promise.resolve({ id: CID, name: "victim", labels: {}, pid: 100, tty: false, execIds: ["e1", "e2"] });
    const r = reaper("enforce", docker);
    r.reap([{ session: session(), decision: stale }]);
    await vi.advanceTimersByTimeAsync(1);
    r.reap([{ session: session({ execId: "e2", pid: 300, ptyKey: "0:44:1", index: 1 }), decision: { ...stale, execId: "e2" } }]);
    await vi.advanceTimersByTimeAsync(0);
    expect(signals).toEqual([
      [200, "SIGHUP"],
      [300, "SIGHUP"],
    ]);
    r.configure({ mode: "enforce", graceMs: 10_000, maxInFlight: 1 });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(signals.slice(2)).toEqual([[200, "SIGTERM"]]);
  });

  const answers: [string, () => ExecInfo | null | Error][] = [
    ["docker says the exec stopped", () => null],
    ["docker reports another pid", () => execInfo({ pid: 999 })],
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
