// mergeRuntimeViews: containerd and Podman execs become sessions only when /proc agrees, each once, tagged with its runtime.
import { describe, expect, it } from "vitest";
import { buildInventory, inventoryContainers } from "../../../src/domain/inventory.js";
import { claimNamedContainers, mergeRuntimeViews, namedContainersOf, ptyRuntimeOf } from "../../../src/domain/runtime-sessions.js";
import type { ProcInfo, ProcScan, PtyFd } from "../../../src/domain/types.js";
import type { ProcessFacts } from "../../../src/domain/attribution.js";
import type { RuntimeContainer, RuntimeExec } from "../../../src/domain/runtime.js";
import type { RuntimeView } from "../../../src/domain/runtime.js";
import { sessionsReport } from "../../../src/domain/report.js";
import { renderSessionsTable } from "../../../src/cli/render.js";
import { PtyreaperMetrics } from "../../../src/metrics/metrics.js";

const POD_CONTAINER = "c".repeat(64);
const SANDBOX = "5".repeat(64);
const PODMAN_CONTAINER = "d".repeat(64);
const CRI_EXEC = "1".repeat(64);
const PODMAN_EXEC = "2".repeat(64);
const PTS = "0:50";
const PODMAN_PTS = "0:51";

interface Proc {
  facts: ProcessFacts;
  info: ProcInfo;
}

function proc(pid: number, ppid: number, comm: string, argv: string[], cgroup: string, nsPid: number): Proc {
  return {
    facts: { pid, ppid, comm, argv, cgroup, nsPid },
    info: {
      pid,
      ppid,
      pgrp: pid,
      sid: pid,
      ttyNr: 0,
      startTicks: 1000,
      comm,
      cmdline: argv,
      uid: 0,
      pidNs: null,
      nsPids: [pid, nsPid],
      containerId: null,
    },
  };
}

const shim = proc(300, 1, "containerd-shim", ["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", SANDBOX], "1:cpu:/\n", 300);
const podInit = proc(310, 300, "sleep", ["sleep", "1d"], `1:cpu:/k8s.io/${POD_CONTAINER}\n`, 1);
const criShell = proc(320, 300, "sh", ["sh"], `1:cpu:/k8s.io/${POD_CONTAINER}\n`, 2);
const conmon = proc(
  400,
  1,
  "conmon",
  [
    "/usr/bin/conmon",
    "--api-version",
    "1",
    "-c",
    PODMAN_CONTAINER,
    "-u",
    PODMAN_EXEC,
    "-t",
    "-i",
    "-e",
    "--exec-attach",
    "--exit-command",
    "/usr/bin/podman",
  ],
  "1:cpu:/libpod_parent/conmon\n",
  400,
);
const podmanInit = proc(410, 1, "sh", ["sh"], `1:cpu:/libpod_parent/libpod-${PODMAN_CONTAINER}\n`, 1);
const podmanShell = proc(420, 400, "sh", ["sh", "-l"], `1:cpu:/libpod_parent/libpod-${PODMAN_CONTAINER}\n`, 3);
const stranger = proc(500, 1, "tmux: server", ["tmux"], "1:cpu:/\n", 500);

const slave = (pid: number, devptsDev: string, index: number, fd = 0): PtyFd => ({ pid, fd, role: "slave", devptsDev, index });
const master = (pid: number, devptsDev: string, index: number): PtyFd => ({ pid, fd: 9, role: "master", devptsDev, index });

function scanOf(procs: Proc[], fds: PtyFd[]): { scan: ProcScan; lookup: (pid: number) => ProcessFacts | undefined } {
  const scan: ProcScan = {
    processes: new Map(procs.map((p) => [p.info.pid, p.info])),
    ppids: new Map(procs.map((p) => [p.info.pid, p.info.ppid])),
    ptyFds: fds,
    ttyTimes: new Map(fds.filter((f) => f.role === "slave").map((f) => [`${f.devptsDev}:${f.index}`, { atimeMs: 1, mtimeMs: 2 }])),
    initDevpts: new Map(),
    unreadablePids: [],
    vanished: 0,
    parseErrors: {},
    bootTimeSec: 1_700_000_000,
  };
  const facts = new Map(procs.map((p) => [p.facts.pid, p.facts]));
  return { scan, lookup: (pid) => facts.get(pid) };
}

const k8sLabels = {
  "io.kubernetes.pod.namespace": "team-a",
  "io.kubernetes.pod.name": "web-0",
  "io.kubernetes.pod.uid": "u",
  "io.kubernetes.container.name": "app",
};
const criContainer: RuntimeContainer = {
  runtime: "containerd",
  namespace: "k8s.io",
  id: POD_CONTAINER,
  initPid: 310,
  labels: k8sLabels,
  kubernetes: { namespace: "team-a", pod: "web-0", podUid: "u", container: "app" },
};
const criExec: RuntimeExec = { id: CRI_EXEC, container: { namespace: "k8s.io", id: POD_CONTAINER }, pid: 320, running: true, tty: true };
const podmanContainer: RuntimeContainer = {
  runtime: "podman",
  namespace: null,
  id: PODMAN_CONTAINER,
  initPid: 410,
  labels: {},
  name: "toolbox",
  kubernetes: null,
};
const podmanExec: RuntimeExec = { id: PODMAN_EXEC, container: { namespace: null, id: PODMAN_CONTAINER }, pid: 420, running: true, tty: true };

const containerd = (execs: RuntimeExec[] = [criExec]): RuntimeView => ({
  runtime: "containerd",
  available: true,
  error: null,
  containers: [criContainer],
  execs,
});
const podman = (execs: RuntimeExec[] = [podmanExec]): RuntimeView => ({
  runtime: "podman",
  available: true,
  error: null,
  containers: [podmanContainer],
  execs,
});
/** Docker not in use, as the report shows it. */
const noDocker = { available: false, error: "disabled" };
const limits = { allocated: 2, max: 4096, reserve: 1024 };

function inventoryOf(views: RuntimeView[], fds: PtyFd[], procs = [shim, podInit, criShell, conmon, podmanInit, podmanShell, stranger]) {
  const { scan, lookup } = scanOf(procs, fds);
  const merged = mergeRuntimeViews(views, scan, lookup);
  const inventory = buildInventory(scan, limits, merged.views, { runtimeOf: ptyRuntimeOf(merged.containerRuntimes) });
  return { inventory, merged };
}

const leakedFds = [master(300, PTS, 0), slave(320, PTS, 0), slave(320, PTS, 0, 1), master(400, PODMAN_PTS, 0), slave(420, PODMAN_PTS, 0)];

describe("mergeRuntimeViews", () => {
  it("makes one session per confirmed exec, tagged with its runtime, pod and container", () => {
    const { inventory, merged } = inventoryOf([containerd(), podman()], leakedFds);
    expect(merged.verdicts.map((v) => v.refusal)).toEqual([null, null]);
    expect(inventory.sessions).toHaveLength(2);
    const cri = inventory.sessions.find((s) => s.execId === CRI_EXEC);
    expect(cri).toMatchObject({
      runtime: "containerd",
      runtimeNamespace: "k8s.io",
      containerId: POD_CONTAINER,
      containerName: "team-a/web-0/app",
      pid: 320,
      holderPids: [320],
      command: "sh",
    });
    expect(cri?.kubernetes).toEqual({ namespace: "team-a", pod: "web-0", podUid: "u", container: "app" });
    const pod = inventory.sessions.find((s) => s.execId === PODMAN_EXEC);
    expect(pod).toMatchObject({ runtime: "podman", runtimeNamespace: null, kubernetes: null, containerName: "toolbox", pid: 420, command: "sh -l" });
    expect(inventory.ptys.map((p) => p.owner)).toEqual(["exec", "exec"]);
  });

  it("keeps an exec that is no session candidate as its runtime listed it, unjudged (Docker's and every runtime's alike)", () => {
    const detached: RuntimeExec = { ...criExec, id: "detached", pid: 330, tty: false };
    const ended: RuntimeExec = { ...podmanExec, id: "ended", running: false };
    const { merged } = inventoryOf([containerd([criExec, detached]), podman([podmanExec, ended])], leakedFds);
    expect(merged.verdicts.map((v) => [v.exec.id, v.refusal])).toEqual([
      [CRI_EXEC, null],
      [PODMAN_EXEC, null],
    ]);
    expect(merged.views.map((v) => v.execs.map((e) => e.id))).toEqual([
      [CRI_EXEC, "detached"],
      [PODMAN_EXEC, "ended"],
    ]);
  });

  it("makes no session of an exec whose pty master is not held by its runtime's monitor (the pty stays counted, unowned)", () => {
    const fds = [master(500, PTS, 0), slave(320, PTS, 0)];
    const { inventory, merged } = inventoryOf([containerd()], fds);
    expect(merged.verdicts[0]?.refusal).toMatch(/attributes it to unknown/);
    expect(inventory.sessions).toEqual([]);
    expect(inventory.ptys).toHaveLength(1);
    expect(inventory.ptys[0]?.owner).not.toBe("exec");
  });

  it("takes a redirected exec's own pty from its controlling tty, as for Docker's execs; the console it writes to is not the session's", () => {
    // `podman exec -it` whose shell did `exec </proc/1/fd/0 >/proc/1/fd/1 2>&1`: stdio on the console (pts/0),
    // its own pts/1 still held on fd 10 and still its controlling tty.
    const redirected: Proc = { ...podmanShell, info: { ...podmanShell.info, ttyNr: (136 << 8) | 1 } };
    // The console's master is held by the container's own conmon, which names no exec.
    const containerConmon = proc(
      401,
      1,
      "conmon",
      ["/usr/bin/conmon", "--api-version", "1", "-c", PODMAN_CONTAINER, "-u", PODMAN_CONTAINER, "-t"],
      "1:cpu:/libpod_parent/conmon\n",
      401,
    );
    const fds = [
      master(401, PODMAN_PTS, 0),
      slave(410, PODMAN_PTS, 0),
      slave(420, PODMAN_PTS, 0),
      slave(420, PODMAN_PTS, 0, 1),
      slave(420, PODMAN_PTS, 1, 10),
      master(400, PODMAN_PTS, 1),
    ];
    const { inventory, merged } = inventoryOf([podman()], fds, [shim, podInit, criShell, conmon, containerConmon, podmanInit, redirected, stranger]);
    expect(merged.verdicts.map((v) => v.refusal)).toEqual([null]);
    expect(inventory.sessions.map((s) => [s.execId, s.pid, s.devptsDev, s.index])).toEqual([[PODMAN_EXEC, 420, PODMAN_PTS, 1]]);
    expect(inventory.ptys.find((p) => p.index === 0)?.owner).not.toBe("exec");
  });

  it("refuses an exec whose recorded pid is the container's init", () => {
    const { inventory, merged } = inventoryOf([containerd([{ ...criExec, pid: 310 }])], [master(300, PTS, 0), slave(310, PTS, 0)]);
    expect(merged.verdicts[0]?.refusal).toMatch(/main process/);
    expect(inventory.sessions).toEqual([]);
  });

  it("refuses a Podman exec whose conmon names another exec session", () => {
    const { merged } = inventoryOf([podman([{ ...podmanExec, id: "9".repeat(64) }])], leakedFds);
    expect(merged.verdicts[0]?.refusal).toMatch(/names exec/);
  });

  it("adds nothing from a runtime that did not answer", () => {
    const down: RuntimeView = { ...containerd(), available: false, error: "no answer" };
    const { inventory, merged } = inventoryOf([down], leakedFds);
    expect(merged.verdicts).toEqual([]);
    expect(inventory.sessions).toEqual([]);
  });

  // Docker's own container and exec, as /proc shows them: below a shim of containerd namespace moby, in /docker/<id>.
  const mobyShim = proc(
    300,
    1,
    "containerd-shim",
    ["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby", "-id", POD_CONTAINER],
    "1:cpu:/\n",
    300,
  );
  const dockerInit = proc(310, 300, "sleep", ["sleep", "1d"], `1:cpu:/docker/${POD_CONTAINER}\n`, 1);
  const dockerShell = proc(320, 300, "sh", ["sh"], `1:cpu:/docker/${POD_CONTAINER}\n`, 2);
  const dockerView = (pid = 320): RuntimeView => ({
    runtime: "docker",
    available: true,
    error: null,
    containers: [{ runtime: "docker", namespace: null, id: POD_CONTAINER, name: "/web", labels: {}, initPid: 310, kubernetes: null }],
    execs: [{ id: CRI_EXEC, container: { namespace: null, id: POD_CONTAINER }, running: true, pid, tty: true, command: ["sh"] }],
  });

  it("never makes two sessions of one exec (Docker's own exec seen again through containerd)", () => {
    const { scan, lookup } = scanOf([mobyShim, dockerInit, dockerShell], leakedFds.slice(0, 3));
    const merged = mergeRuntimeViews([dockerView(), containerd()], scan, lookup);
    expect(merged.views.flatMap((v) => v.execs)).toHaveLength(1);
    expect([...inventoryContainers(merged.views).values()]).toHaveLength(1);
    expect(merged.views.flatMap((v) => v.execs.map(() => v.runtime))).toEqual(["docker"]);
  });

  it("confirms Docker's exec by its shim parent, as every runtime's", () => {
    const { scan, lookup } = scanOf([mobyShim, dockerInit, dockerShell], leakedFds.slice(0, 3));
    const merged = mergeRuntimeViews([dockerView()], scan, lookup);
    expect(merged.verdicts).toEqual([{ exec: expect.objectContaining({ id: CRI_EXEC, pid: 320 }) as unknown, runtime: "docker", refusal: null }]);
    const inventory = buildInventory(scan, limits, merged.views);
    expect(inventory.sessions.map((s) => [s.execId, s.pid])).toEqual([[CRI_EXEC, 320]]);
    expect(inventory.sessions[0]).toMatchObject({ runtime: "docker", runtimeNamespace: null, kubernetes: null });
  });

  it.each<[string, Proc[], PtyFd[], number, RegExp]>([
    [
      "its parent is no runtime monitor",
      [mobyShim, dockerInit, { ...dockerShell, facts: { ...dockerShell.facts, ppid: 500 } }, stranger],
      leakedFds.slice(0, 3),
      320,
      /no runtime monitor/,
    ],
    ["its shim is containerd's own (namespace k8s.io)", [shim, dockerInit, dockerShell], leakedFds.slice(0, 3), 320, /attributes it to unknown/],
    [
      "its pty's master is held by another process",
      [mobyShim, dockerInit, dockerShell, stranger],
      [master(500, PTS, 0), slave(320, PTS, 0)],
      320,
      /attributes it to unknown/,
    ],
    [
      "Docker names the container's init as the exec's process",
      [mobyShim, dockerInit, dockerShell],
      [master(300, PTS, 0), slave(310, PTS, 0)],
      310,
      /main process/,
    ],
  ])("makes no session of a Docker exec when %s (its pty stays counted, unowned)", (_name, procs, fds, pid, why) => {
    const { scan, lookup } = scanOf(procs, fds);
    const merged = mergeRuntimeViews([dockerView(pid)], scan, lookup);
    expect(merged.verdicts.map((v) => [v.runtime, v.refusal])).toEqual([["docker", expect.stringMatching(why)]]);
    const inventory = buildInventory(scan, limits, merged.views);
    expect(inventory.sessions).toEqual([]);
    expect(inventory.ptys.map((p) => p.owner)).not.toContain("exec");
  });

  it("shows runtime and pod in the report and the table; Docker's rows keep their look", () => {
    const { inventory } = inventoryOf([containerd(), podman()], leakedFds);
    const report = sessionsReport(inventory, noDocker, 10_000, { commandLine: "full" });
    expect(report.sessions.map((s) => [s.runtime, s.kubernetes])).toEqual([
      ["containerd", { namespace: "team-a", pod: "web-0", container: "app" }],
      ["podman", null],
    ]);
    expect(report.ptys.map((p) => p.runtime).sort()).toEqual(["containerd", "podman"]);
    const table = renderSessionsTable(inventory, noDocker, 10_000, [{ runtime: "containerd", available: true, error: null }]);
    expect(table).toContain("; containerd: available");
    expect(table).toContain("containerd:team-a/web-0/app");
    expect(table).toContain("podman:toolbox");
  });

  it("counts sessions per runtime in ptyreaper_exec_sessions{runtime} (every runtime listed, 0 when none)", async () => {
    const { inventory } = inventoryOf([containerd(), podman()], leakedFds);
    const metrics = new PtyreaperMetrics({ version: "test" });
    const decisions = inventory.sessions.map((s) => ({ execId: s.execId, state: "idle" as const, reason: null, detail: "idle" }));
    metrics.observeSnapshot({ takenAtMs: 0, inventory, docker: noDocker, runtimes: [], decisions });
    const { body } = await metrics.exposition();
    for (const [runtime, count] of [
      ["docker", 0],
      ["containerd", 1],
      ["cri-o", 0],
      ["podman", 1],
    ] as const) {
      expect(body).toContain(`ptyreaper_exec_sessions{state="idle",runtime="${runtime}"} ${count}\n`);
    }
  });
});

describe("containerd containers named by any string (ctr run … myname, namespace default)", () => {
  const CTR_EXEC = "shell1";
  const ctrShim = proc(700, 1, "containerd-shim", ["/usr/bin/containerd-shim-runc-v2", "-namespace", "default", "-id", "myname"], "1:cpu:/\n", 700);
  const ctrInit = proc(710, 700, "sleep", ["sleep", "1d"], "1:cpu:/default/myname\n", 1);
  const ctrShell = proc(720, 700, "sh", ["sh"], "1:cpu:/default/myname\n", 2);
  const ctrContainer: RuntimeContainer = { runtime: "containerd", namespace: "default", id: "myname", initPid: 710, labels: {}, kubernetes: null };
  const ctrExec: RuntimeExec = { id: CTR_EXEC, container: { namespace: "default", id: "myname" }, pid: 720, running: true, tty: true };
  const view = (containers: RuntimeContainer[] = [ctrContainer]): RuntimeView => ({
    runtime: "containerd",
    available: true,
    error: null,
    containers,
    execs: [ctrExec],
  });
  const fds = [master(700, PTS, 0), slave(720, PTS, 0), slave(720, PTS, 0, 1)];

  function run(views: RuntimeView[], procs: Proc[]) {
    const { scan, lookup } = scanOf(procs, fds);
    claimNamedContainers(scan, views, lookup);
    const merged = mergeRuntimeViews(views, scan, lookup);
    const inventory = buildInventory(scan, limits, merged.views);
    return { scan, merged, inventory };
  }

  it("lists only the containers no cgroup pattern reads", () => {
    expect(namedContainersOf([view([ctrContainer, criContainer])])).toEqual(new Map([["default", new Set(["myname"])]]));
  });

  it("claims in a copy of the scan's processes: the map it was given (a DeltaReceiver's own) is left as it was", () => {
    const { scan, lookup } = scanOf([ctrShim, ctrInit, ctrShell], fds);
    const given = scan.processes;
    const before = new Map(given);
    claimNamedContainers(scan, [view()], lookup);
    expect(scan.processes).not.toBe(given);
    expect(scan.processes.get(720)?.containerId).toBe("myname");
    expect(given).toEqual(before);
    // Nothing to claim: the map stays the one given, uncopied.
    const { scan: plain, lookup: plainLookup } = scanOf([ctrShim, ctrInit, ctrShell], fds);
    const plainGiven = plain.processes;
    claimNamedContainers(plain, [view([criContainer])], plainLookup);
    expect(plain.processes).toBe(plainGiven);
  });

  it("confirms the exec and makes it a session in its container, by exact match against the runtime's list", () => {
    const { scan, merged, inventory } = run([view()], [ctrShim, ctrInit, ctrShell]);
    expect(scan.processes.get(720)?.containerId).toBe("myname");
    expect(merged.verdicts.map((v) => v.refusal)).toEqual([null]);
    expect(inventory.sessions.map((s) => [s.execId, s.containerId, s.containerName, s.runtime, s.runtimeNamespace])).toEqual([
      [CTR_EXEC, "myname", "myname", "containerd", "default"],
    ]);
  });

  it("claims no process whose cgroup only resembles a listed container's", () => {
    const elsewhere = (path: string): Proc => ({ ...ctrShell, facts: { ...ctrShell.facts, cgroup: `1:cpu:${path}\n` } });
    for (const path of ["/default/myname2", "/default/myname/sub", "/team/myname", "/default/othername"]) {
      const { scan, merged, inventory } = run([view()], [ctrShim, ctrInit, elsewhere(path)]);
      expect(scan.processes.get(720)?.containerId, path).toBeNull();
      expect(merged.verdicts[0]?.refusal, path).toMatch(/attributes it to unknown/);
      expect(inventory.sessions, path).toEqual([]);
    }
  });

  it("claims nothing when the runtime did not list the container", () => {
    const { scan, inventory } = run([view([])], [ctrShim, ctrInit, ctrShell]);
    expect(scan.processes.get(720)?.containerId).toBeNull();
    expect(inventory.sessions).toEqual([]);
  });
});
