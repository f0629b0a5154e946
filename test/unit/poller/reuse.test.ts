// A steady cycle takes the last inventory again only when nothing it was built from changed; any change rebuilds.
import { describe, expect, it } from "vitest";
import { collect, type CollectDeps } from "../../../src/poller/collect.js";
import { InventoryReuse, sameValue } from "../../../src/poller/reuse.js";
import { MasterOnlyTracker } from "../../../src/domain/master-only.js";
import { ProcFs } from "../../../src/procfs/procfs.js";
import type { RuntimePort } from "../../../src/runtimes/port.js";
import type { RuntimeView } from "../../../src/domain/runtime.js";
import type { ProcInfo, PtyFd } from "../../../src/domain/types.js";
import type { ModalScan } from "../../../src/procfs/incremental.js";
import { SHIM_MASTERS_ROOT } from "../support/shim-masters-daemon.js";
import { master, proc as hostProc, slave } from "../support/scan-fixtures.js";

const CID = "c".repeat(64);
const HOST_PTS = "0:26";
const CONTAINER_PTS = "0:44";
const SHIM = 5050;
const INIT = 5100;
const EXEC = 5200;
const SSHD = 5299;
const BASH = 5300;
const ORPHAN_MASTER = 5400;

/** A host process whose cgroup the scan read (a steady pass keeps it). */
const proc = (pid: number, over: Partial<ProcInfo> = {}): ProcInfo => hostProc(pid, { cgroup: "0::/user.slice\n", ...over });

const inContainer = { containerId: CID, cgroup: `0::/system.slice/docker-${CID}.scope\n`, pidNs: "4026532000" };

/** A host with one docker exec session (its pty's master held by the shim), one host login, and one pty held only by a master. */
function baseScan(): ModalScan {
  const processes = [
    proc(SHIM, {
      comm: "containerd-shim",
      cmdline: ["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby", "-id", CID],
      cgroup: "0::/system.slice/containerd.service\n",
    }),
    proc(INIT, { ppid: SHIM, nsPids: [INIT, 1], ...inContainer, comm: "sleep", cmdline: ["sleep", "inf"] }),
    proc(EXEC, { ppid: SHIM, nsPids: [EXEC, 7], ttyNr: 136 << 8, ...inContainer, comm: "bash", cmdline: ["bash"] }),
    proc(SSHD, { comm: "sshd", cmdline: ["sshd: root@pts/3"] }),
    proc(BASH, { ppid: SSHD, ttyNr: (136 << 8) | 3, comm: "bash", cmdline: ["-bash"] }),
    proc(ORPHAN_MASTER, { comm: "python3", cmdline: ["python3", "leak.py"] }),
  ];
  const ptyFds = [
    master(SHIM, CONTAINER_PTS, 0, 12),
    slave(EXEC, CONTAINER_PTS, 0, 0),
    master(SSHD, HOST_PTS, 3, 7),
    slave(BASH, HOST_PTS, 3, 0),
    master(ORPHAN_MASTER, HOST_PTS, 4, 5),
  ];
  const ppids = new Map<number, number>([[1, 0], [600, 1], [4000, 1], ...processes.map((p): [number, number] => [p.pid, p.ppid])]);
  return {
    processes: new Map(processes.map((p) => [p.pid, p])),
    ppids,
    ptyFds,
    ttyTimes: new Map([
      [`${CONTAINER_PTS}:0`, { atimeMs: 1_000_000, mtimeMs: 2_000_000 }],
      [`${HOST_PTS}:3`, { atimeMs: 3_000_000, mtimeMs: 4_000_000 }],
    ]),
    initDevpts: new Map([[INIT, CONTAINER_PTS]]),
    unreadablePids: [],
    vanished: 0,
    parseErrors: {},
    bootTimeSec: 1_700_000_000,
    mode: "incremental",
  };
}

function baseView(): RuntimeView {
  return {
    runtime: "docker",
    available: true,
    error: null,
    containers: [{ runtime: "docker", namespace: null, id: CID, name: "web", labels: { team: "a" }, initPid: INIT, kubernetes: null }],
    execs: [{ id: "e1", container: { namespace: null, id: CID }, pid: EXEC, running: true, tty: true }],
  };
}

/** A port whose view is whatever the test last set. */
function portOf(view: () => RuntimeView): RuntimePort {
  return { runtime: "docker", currentView: () => Promise.resolve(view()) } as unknown as RuntimePort;
}

/** Cycles of collect over the scans and views a test hands it, with the reuse or without. */
function daemon(withReuse: boolean) {
  let scan = baseScan();
  let view = baseView();
  let nowMs = 1_700_000_500_000;
  const reuse = withReuse ? new InventoryReuse() : undefined;
  const deps: CollectDeps = {
    procfs: new ProcFs(SHIM_MASTERS_ROOT),
    scan: () => scan,
    runtimes: [portOf(() => view)],
    masterOnly: { tracker: new MasterOnlyTracker(), graceMs: 60_000 },
    now: () => nowMs,
    ...(reuse ? { reuse } : {}),
  };
  return {
    reuse,
    set(next: { scan?: ModalScan; view?: RuntimeView; advanceMs?: number }) {
      if (next.scan) scan = next.scan;
      if (next.view) view = next.view;
      nowMs += next.advanceMs ?? 10_000;
    },
    cycle: () => collect(deps),
  };
}

/** Runs the same cycles with and without reuse; each cycle's inventory must be the same either way. */
async function sameAsBuilt(steps: { scan?: () => ModalScan; view?: () => RuntimeView; advanceMs?: number }[]) {
  const reusing = daemon(true);
  const building = daemon(false);
  const results = [];
  for (const step of [{}, ...steps]) {
    for (const d of [reusing, building]) {
      d.set({
        ...(step.scan ? { scan: step.scan() } : {}),
        ...(step.view ? { view: step.view() } : {}),
        ...(step.advanceMs !== undefined ? { advanceMs: step.advanceMs } : {}),
      });
    }
    const got = await reusing.cycle();
    const want = await building.cycle();
    expect(got.inventory).toEqual(want.inventory);
    expect(got.runtimeVerdicts).toEqual(want.runtimeVerdicts);
    results.push(got);
  }
  return { reuse: reusing.reuse as InventoryReuse, results };
}

const withScan = (change: (scan: ModalScan) => void) => (): ModalScan => {
  const scan = baseScan();
  change(scan);
  return scan;
};

describe("InventoryReuse through collect", () => {
  it("takes the last build when nothing changed, with the new tty times", async () => {
    const { reuse, results } = await sameAsBuilt([
      {
        scan: withScan((scan) => {
          scan.ttyTimes.set(`${CONTAINER_PTS}:0`, { atimeMs: 9_000_000, mtimeMs: 9_500_000 });
          scan.ttyTimes.set(`${HOST_PTS}:3`, { atimeMs: 8_000_000, mtimeMs: 8_500_000 });
        }),
      },
    ]);
    expect(reuse.reused).toBe(1);
    expect(reuse.built).toBe(1);
    const [first, second] = results;
    // The fixture means something: a confirmed session, a host pty, a pty held by a master only.
    expect(first?.inventory.sessions.map((s) => s.execId)).toEqual(["e1"]);
    expect(first?.inventory.ptys.map((p) => p.owner)).toEqual(["host", "host", "exec"]);
    expect(second?.inventory.sessions[0]).toMatchObject({ atimeMs: 9_000_000, mtimeMs: 9_500_000 });
    expect(second?.inventory.ptys.find((p) => p.index === 3)).toMatchObject({ atimeMs: 8_000_000, mtimeMs: 8_500_000 });
    // A pty whose times moved is a new object (the last snapshot is never changed under a reader); one that did not
    // move is the same object, not a copy per cycle.
    const hostPty = (r: typeof first) => r?.inventory.ptys.find((p) => p.index === 3);
    const orphanPty = (r: typeof first) => r?.inventory.ptys.find((p) => p.index === 4);
    expect(hostPty(second)).not.toBe(hostPty(first));
    expect(hostPty(first)).not.toMatchObject({ atimeMs: 8_000_000 });
    expect(orphanPty(second)).toBe(orphanPty(first));
  });

  it.each<[string, { scan?: () => ModalScan; view?: () => RuntimeView }]>([
    ["a new holder of a new pty", { scan: withScan((s) => s.ptyFds.push(master(SSHD, HOST_PTS, 5, 8))) }],
    [
      "a new holder of a held pty",
      {
        scan: withScan((s) => {
          s.processes.set(5301, proc(5301, { ppid: BASH, comm: "vim", cmdline: ["vim"] }));
          s.ppids.set(5301, BASH);
          s.ptyFds.push(slave(5301, HOST_PTS, 3, 1));
        }),
      },
    ],
    ["a released pty", { scan: withScan((s) => s.ptyFds.splice(s.ptyFds.length - 1, 1)) }],
    ["an fd count that moved", { scan: withScan((s) => Object.assign(s.ptyFds[1] as PtyFd, { fdCount: 3 })) }],
    ["a holder's stat that moved (its session)", { scan: withScan((s) => Object.assign(s.processes.get(BASH) as ProcInfo, { sid: 1 })) }],
    ["a holder's start time (a pid reused)", { scan: withScan((s) => Object.assign(s.processes.get(EXEC) as ProcInfo, { startTicks: 99 })) }],
    ["a parent above a holder", { scan: withScan((s) => s.ppids.set(SSHD, 600)) }],
    ["an ancestor that left the listing", { scan: withScan((s) => s.ppids.delete(1)) }],
    ["an init's devpts", { scan: withScan((s) => s.initDevpts.set(INIT, "0:45")) }],
    ["an unreadable process", { scan: withScan((s) => s.unreadablePids.push(4000)) }],
    ["a full pass", { scan: withScan((s) => Object.assign(s, { mode: "full" })) }],
    ["a pass cut by its budget", { scan: withScan((s) => Object.assign(s, { cut: { unread: 3 } })) }],
    ["an exec gone from the runtime's view", { view: () => ({ ...baseView(), execs: [] }) }],
    [
      "a container's label",
      {
        view: () => ({ ...baseView(), containers: [{ ...(baseView().containers[0] as RuntimeView["containers"][number]), labels: { team: "b" } }] }),
      },
    ],
    ["the runtime down", { view: () => ({ ...baseView(), available: false, error: "gone" }) }],
  ])("builds again after %s", async (_name, step) => {
    const { reuse } = await sameAsBuilt([step]);
    expect(reuse.reused).toBe(0);
    expect(reuse.built).toBe(2);
  });

  it("builds again when a process above a holder, holding nothing itself, gets another parent", async () => {
    // The orphan master's holder moved under 600, which holds no pty: its parent is an input too.
    const under600 = (scan: ModalScan): void => {
      scan.processes.set(ORPHAN_MASTER, proc(ORPHAN_MASTER, { ppid: 600, comm: "python3", cmdline: ["python3", "leak.py"] }));
      scan.ppids.set(ORPHAN_MASTER, 600);
    };
    const quiet = await sameAsBuilt([{ scan: withScan(under600) }, { scan: withScan(under600) }]);
    expect([quiet.reuse.built, quiet.reuse.reused]).toEqual([2, 1]);
    const moved = await sameAsBuilt([
      { scan: withScan(under600) },
      {
        scan: withScan((s) => {
          under600(s);
          s.ppids.set(600, 4000);
        }),
      },
    ]);
    expect([moved.reuse.built, moved.reuse.reused]).toEqual([3, 0]);
  });

  it("builds after a change and takes that build again on the next quiet cycle", async () => {
    const released = withScan((s) => s.ptyFds.splice(s.ptyFds.length - 1, 1));
    const { reuse, results } = await sameAsBuilt([{ scan: released }, { scan: released }]);
    expect(results.map((r) => r.inventory.ptys.length)).toEqual([3, 2, 2]);
    expect([reuse.built, reuse.reused]).toEqual([2, 1]);
    // The build after the release gives the ptys it did not change as the objects the cycle before gave out.
    const hostPty = (i: number) => results[i]?.inventory.ptys.find((p) => p.index === 3);
    expect(hostPty(1)).toBe(hostPty(0));
    expect(results[1]?.inventory.ptys.find((p) => p.owner === "exec")).toBe(results[0]?.inventory.ptys.find((p) => p.owner === "exec"));
  });

  it("names a pty master-only once its grace has passed, on a cycle that reused the inventory", async () => {
    const { reuse, results } = await sameAsBuilt([{ advanceMs: 30_000 }, { advanceMs: 31_000 }]);
    expect(reuse.reused).toBe(2);
    const orphan = results.map((r) => r.inventory.ptys.find((p) => p.index === 4)?.masterOnly ?? null);
    // Read after the last cycle: marking it did not change the earlier cycles' ptys.
    expect(orphan[0]).toBeNull();
    expect(orphan[1]).toBeNull();
    expect(orphan[2]).toMatchObject({ role: "host", holderPid: ORPHAN_MASTER });
  });

  it("follows pty.nr on a reused cycle: the gap is explained again", async () => {
    const reusing = daemon(true);
    await reusing.cycle();
    const second = await reusing.cycle();
    expect(reusing.reuse?.reused).toBe(1);
    expect(second.inventory.discrepancy.found).toBe(3);
    expect(second.inventory.discrepancy.allocated).toBe(second.inventory.limits.allocated);
  });
});

describe("sameValue", () => {
  it.each<[string, unknown, unknown, boolean]>([
    ["equal numbers", 1, 1, true],
    ["different numbers", 1, 2, false],
    ["equal arrays", [1, [2, 3]], [1, [2, 3]], true],
    ["arrays of other lengths", [1], [1, 2], false],
    ["equal objects, keys in another order", { a: 1, b: "x" }, { b: "x", a: 1 }, true],
    ["an absent key and an undefined one", { a: 1 }, { a: 1, b: undefined }, false],
    ["an extra key", { a: 1, b: 2 }, { a: 1 }, false],
    ["equal Maps", new Map([[1, { a: [1] }]]), new Map([[1, { a: [1] }]]), true],
    ["Maps with another value", new Map([[1, { a: [1] }]]), new Map([[1, { a: [2] }]]), false],
    ["Maps with another key", new Map([[1, 1]]), new Map([[2, 1]]), false],
    ["null and an object", null, {}, false],
    ["an array and an object", [], {}, false],
  ])("%s", (_name, a, b, equal) => {
    expect(sameValue(a, b)).toBe(equal);
    expect(sameValue(b, a)).toBe(equal);
  });
});
