// The identity rule, table by table: one session per exec, its own pty only; the console stays the container's;
// shared devpts instances and unrecognised cgroups attributed per process.
import { describe, expect, it } from "vitest";
import { buildInventory, ttyNrSlaveIndex } from "../../../src/domain/inventory.js";
import type { ProcInfo, ProcScan, PtyFd } from "../../../src/domain/types.js";
import type { RuntimeContainer, RuntimeExec, RuntimeView } from "../../../src/domain/runtime.js";
import { master, proc, slave } from "../support/scan-fixtures.js";

const A = "a".repeat(64);
const B = "b".repeat(64);
const HOST_PTS = "0:26";
const A_PTS = "0:44";
const B_PTS = "0:45";
const limits = { allocated: 2, max: 4096, reserve: 1024 };

const container = (id: string, pid: number, name: string): RuntimeContainer => ({
  runtime: "docker",
  namespace: null,
  id,
  name,
  labels: {},
  initPid: pid,
  kubernetes: null,
});
const exec = (id: string, containerId: string, pid: number): RuntimeExec => ({
  id,
  container: { namespace: null, id: containerId },
  running: true,
  pid,
  tty: true,
  command: ["sh"],
});
/** Docker's view as the inventory takes it: a list of runtimes' views. */
const view = (containers: RuntimeContainer[], execs: RuntimeExec[]): RuntimeView[] => [
  { runtime: "docker", available: true, error: null, containers, execs },
];

function scanOf(processes: ProcInfo[], fds: PtyFd[], initDevpts: [number, string][] = []): ProcScan {
  const times = { atimeMs: 1_000_000, mtimeMs: 2_000_000 };
  return {
    processes: new Map(processes.map((p) => [p.pid, p])),
    ppids: new Map(processes.map((p) => [p.pid, p.ppid])),
    ptyFds: fds,
    ttyTimes: new Map(fds.map((f) => [`${f.devptsDev}:${f.index}`, times])),
    initDevpts: new Map(initDevpts),
    unreadablePids: [],
    vanished: 0,
    parseErrors: {},
    bootTimeSec: 1_700_000_000,
  };
}

/** --init container with a console: docker-init (100, State.Pid) → sh loop (101); shim 90. */
const dockerInit = proc(100, { containerId: A, nsPids: [100, 1], comm: "docker-init" });
const loop = proc(101, { containerId: A, nsPids: [101, 7], ppid: 100 });
const shim = proc(90, { comm: "containerd-shim" });
/** The exec `sh -c 'sleep 100000 > /proc/1/fd/1 & exec sh'`: its shell 200 and the job 201. */
const execShell = proc(200, { containerId: A, nsPids: [200, 20], ppid: 90 });
const job = proc(201, { containerId: A, nsPids: [201, 21], ppid: 200, comm: "sleep" });
/** stat tty_nr of a process whose controlling tty is pts/<index> (index < 256). */
const ctty = (index: number): number => 136 * 256 + index;
/** The exec's shell after `exec </proc/1/fd/0 >/proc/1/fd/1 2>&1`: its controlling tty is still its own pts/1. */
const redirected = proc(200, { containerId: A, nsPids: [200, 20], ppid: 90, ttyNr: ctty(1) });

interface Row {
  name: string;
  processes: ProcInfo[];
  fds: PtyFd[];
  docker: RuntimeView[];
  initDevpts?: [number, string][];
  /** Expected pty key → [owner, containerId, execId]. */
  ptys: Record<string, [string, string | null, string | null]>;
  /** Expected sessions: [execId, ptyKey, holderPids]. */
  sessions: [string, string, number[]][];
}

const rows: Row[] = [
  {
    name: "the issue's arrangement: --init, console redirect from an exec's job → one session, console stays the container's",
    processes: [dockerInit, loop, shim, execShell, job],
    fds: [
      master(90, A_PTS, 0),
      slave(100, A_PTS, 0, 0),
      slave(101, A_PTS, 0, 1),
      slave(201, A_PTS, 0, 1), // the job's stdout: /proc/1/fd/1, the console
      master(90, A_PTS, 1, 10),
      slave(200, A_PTS, 1, 0),
      slave(200, A_PTS, 1, 1),
      slave(201, A_PTS, 1, 2), // the job's stderr: the exec's own pty
    ],
    docker: view([container(A, 100, "app")], [exec("e1", A, 200)]),
    initDevpts: [[100, A_PTS]],
    ptys: { [`${A_PTS}:0`]: ["container", A, null], [`${A_PTS}:1`]: ["exec", A, "e1"] },
    sessions: [["e1", `${A_PTS}:1`, [200, 201]]],
  },
  {
    name: "the exec's stdio is no pty, its controlling tty is: tty_nr names the pty among its slaves",
    processes: [dockerInit, loop, shim, proc(200, { containerId: A, nsPids: [200, 20], ppid: 90, ttyNr: 136 * 256 + 3 })],
    fds: [slave(100, A_PTS, 0, 0), master(90, A_PTS, 3), slave(200, A_PTS, 3, 5), slave(200, A_PTS, 0, 6)],
    docker: view([container(A, 100, "app")], [exec("e1", A, 200)]),
    initDevpts: [[100, A_PTS]],
    ptys: { [`${A_PTS}:0`]: ["container", A, null], [`${A_PTS}:3`]: ["exec", A, "e1"] },
    sessions: [["e1", `${A_PTS}:3`, [200]]],
  },
  {
    name: "an exec that redirected its stdio to the console: its controlling tty, not its stdio, names its pty",
    processes: [dockerInit, loop, shim, redirected],
    fds: [
      master(90, A_PTS, 0),
      slave(100, A_PTS, 0, 0),
      slave(101, A_PTS, 0, 1),
      slave(200, A_PTS, 0, 0), // /proc/1/fd/0, the console, on all of its stdio
      slave(200, A_PTS, 0, 1),
      slave(200, A_PTS, 0, 2),
      master(90, A_PTS, 1, 10),
      slave(200, A_PTS, 1, 10), // its own pty, kept by the shell as its job-control fd
    ],
    docker: view([container(A, 100, "app")], [exec("e1", A, 200)]),
    initDevpts: [[100, A_PTS]],
    ptys: { [`${A_PTS}:0`]: ["container", A, null], [`${A_PTS}:1`]: ["exec", A, "e1"] },
    sessions: [["e1", `${A_PTS}:1`, [200]]],
  },
  {
    name: "an exec on the console that no longer holds its controlling pty claims nothing (never its stdio)",
    processes: [dockerInit, loop, shim, redirected, job],
    fds: [
      master(90, A_PTS, 0),
      slave(100, A_PTS, 0, 0),
      slave(200, A_PTS, 0, 0),
      slave(200, A_PTS, 0, 1),
      slave(200, A_PTS, 0, 2),
      master(90, A_PTS, 1, 10),
      slave(201, A_PTS, 1, 0), // a child still on the exec's own pty
    ],
    docker: view([container(A, 100, "app")], [exec("e1", A, 200)]),
    initDevpts: [[100, A_PTS]],
    ptys: { [`${A_PTS}:0`]: ["container", A, null], [`${A_PTS}:1`]: ["unattributed", A, null] },
    sessions: [],
  },
  {
    name: "a controlling tty that is no pty (tty1): the exec's stdio names its pty",
    processes: [dockerInit, shim, proc(200, { containerId: A, nsPids: [200, 20], ppid: 90, ttyNr: (4 << 8) | 1 })],
    fds: [slave(100, A_PTS, 0, 0), master(90, A_PTS, 2), slave(200, A_PTS, 2, 0), slave(200, A_PTS, 0, 7)],
    docker: view([container(A, 100, "app")], [exec("e1", A, 200)]),
    initDevpts: [[100, A_PTS]],
    ptys: { [`${A_PTS}:0`]: ["container", A, null], [`${A_PTS}:2`]: ["exec", A, "e1"] },
    sessions: [["e1", `${A_PTS}:2`, [200]]],
  },
  {
    name: "a controlling pty index the exec holds on two devpts instances: ambiguous, claims nothing",
    processes: [dockerInit, shim, redirected],
    fds: [slave(100, A_PTS, 0, 0), slave(200, A_PTS, 1, 0), slave(200, HOST_PTS, 1, 5)],
    docker: view([container(A, 100, "app")], [exec("e1", A, 200)]),
    initDevpts: [[100, A_PTS]],
    ptys: { [`${A_PTS}:0`]: ["container", A, null], [`${A_PTS}:1`]: ["unattributed", A, null], [`${HOST_PTS}:1`]: ["unattributed", A, null] },
    sessions: [],
  },
  {
    name: "two execs whose controlling ttys name one pty: neither's, unattributed",
    processes: [dockerInit, shim, redirected, proc(300, { containerId: A, nsPids: [300, 30], ppid: 90, ttyNr: ctty(1) })],
    fds: [slave(200, A_PTS, 1, 10), slave(300, A_PTS, 1, 0)],
    docker: view([container(A, 100, "app")], [exec("e1", A, 200), exec("e2", A, 300)]),
    ptys: { [`${A_PTS}:1`]: ["unattributed", A, null] },
    sessions: [],
  },
  {
    name: "an exec whose stdio holds two different ptys is no session (cannot tell which is its own)",
    processes: [dockerInit, shim, execShell],
    fds: [slave(200, A_PTS, 1, 0), slave(200, A_PTS, 2, 1)],
    docker: view([container(A, 100, "app")], [exec("e1", A, 200)]),
    ptys: { [`${A_PTS}:1`]: ["unattributed", A, null], [`${A_PTS}:2`]: ["unattributed", A, null] },
    sessions: [],
  },
  {
    name: "two execs claiming one pty: neither's, unattributed",
    processes: [dockerInit, shim, execShell, proc(300, { containerId: A, nsPids: [300, 30], ppid: 90 })],
    fds: [slave(200, A_PTS, 1, 0), slave(300, A_PTS, 1, 0)],
    docker: view([container(A, 100, "app")], [exec("e1", A, 200), exec("e2", A, 300)]),
    ptys: { [`${A_PTS}:1`]: ["unattributed", A, null] },
    sessions: [],
  },
  {
    name: "two containers sharing one devpts: each pty by its holders' cgroup; one held by both is nobody's",
    processes: [
      proc(100, { containerId: A, nsPids: [100, 1] }),
      proc(400, { containerId: B, nsPids: [400, 1] }),
      proc(410, { containerId: B, nsPids: [410, 5], ppid: 400 }),
      execShell,
    ],
    fds: [slave(200, A_PTS, 1), slave(410, A_PTS, 2), slave(410, A_PTS, 3), slave(200, A_PTS, 3, 4), master(90, A_PTS, 4)],
    docker: view([container(A, 100, "a"), container(B, 400, "b")], [exec("e1", A, 200)]),
    initDevpts: [
      [100, A_PTS],
      [400, A_PTS],
    ],
    ptys: {
      [`${A_PTS}:1`]: ["exec", A, "e1"],
      [`${A_PTS}:2`]: ["unattributed", B, null],
      [`${A_PTS}:3`]: ["unattributed", null, null],
      [`${A_PTS}:4`]: ["unattributed", null, null],
    },
    sessions: [["e1", `${A_PTS}:1`, [200]]],
  },
  {
    name: "a container with the host's /dev/pts: a host login on it stays host, the exec's pty is the exec's",
    processes: [proc(100, { containerId: A, nsPids: [100, 1] }), proc(50, { comm: "sshd" }), proc(51, { comm: "bash" }), execShell],
    fds: [master(50, HOST_PTS, 0), slave(51, HOST_PTS, 0), master(90, HOST_PTS, 1), slave(200, HOST_PTS, 1), slave(51, HOST_PTS, 1, 7)],
    docker: view([container(A, 100, "a")], [exec("e1", A, 200)]),
    initDevpts: [[100, HOST_PTS]],
    ptys: { [`${HOST_PTS}:0`]: ["host", null, null], [`${HOST_PTS}:1`]: ["exec", A, "e1"] },
    sessions: [["e1", `${HOST_PTS}:1`, [200]]],
  },
  {
    name: "a cgroup path the parser does not know (cgroupfs, --cgroup-parent): attributed through Docker's pids",
    processes: [
      proc(100, { nsPids: [100, 1] }),
      proc(200, { nsPids: [200, 20], ppid: 90 }),
      proc(201, { nsPids: [201, 21], ppid: 200 }),
      proc(50, { comm: "sshd" }),
      proc(51, { comm: "bash", ppid: 50 }),
    ],
    fds: [slave(100, B_PTS, 0), slave(200, B_PTS, 1), slave(201, B_PTS, 1, 2), master(50, HOST_PTS, 0), slave(51, HOST_PTS, 0)],
    docker: view([container(A, 100, "odd")], [exec("e1", A, 200)]),
    ptys: { [`${HOST_PTS}:0`]: ["host", null, null], [`${B_PTS}:0`]: ["container", A, null], [`${B_PTS}:1`]: ["exec", A, "e1"] },
    sessions: [["e1", `${B_PTS}:1`, [200, 201]]],
  },
  {
    name: "--pid=host: the exec's process is in the container's cgroup, host processes on host ptys stay host",
    processes: [proc(100, { containerId: A, nsPids: [100] }), proc(200, { containerId: A, nsPids: [200], ppid: 90 }), proc(51)],
    fds: [slave(200, A_PTS, 0), master(90, A_PTS, 0), slave(51, HOST_PTS, 2)],
    docker: view([container(A, 100, "pidhost")], [exec("e1", A, 200)]),
    initDevpts: [[100, A_PTS]],
    ptys: { [`${HOST_PTS}:2`]: ["host", null, null], [`${A_PTS}:0`]: ["exec", A, "e1"] },
    sessions: [["e1", `${A_PTS}:0`, [200]]],
  },
];

describe("identity rules", () => {
  it.each(rows)("$name", (row) => {
    const inventory = buildInventory(scanOf(row.processes, row.fds, row.initDevpts), limits, row.docker);
    const ptys = Object.fromEntries(inventory.ptys.map((p) => [p.key, [p.owner, p.containerId, p.execId]]));
    expect(ptys).toEqual(row.ptys);
    expect(inventory.sessions.map((s) => [s.execId, s.ptyKey, s.holderPids])).toEqual(row.sessions);
    // Never two sessions for one exec.
    const ids = inventory.sessions.map((s) => s.execId);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it.each(["docker", "containerd", "podman"] as const)(
    "a cgroup path the parser does not know, below a running exec without a tty: in that exec's container, by the same rule for %s",
    (runtime) => {
      const processes = [proc(100, { nsPids: [100, 1] }), proc(300, { nsPids: [300, 30], ppid: 90 }), proc(301, { nsPids: [301, 31], ppid: 300 })];
      const detached: RuntimeExec = { ...exec("e9", A, 300), tty: false };
      const views: RuntimeView[] = [
        { runtime, available: true, error: null, containers: [{ ...container(A, 100, "odd"), runtime }], execs: [detached] },
      ];
      const inventory = buildInventory(scanOf([...processes, proc(51)], [slave(301, B_PTS, 5), slave(51, HOST_PTS, 0)]), limits, views);
      const ptys = Object.fromEntries(inventory.ptys.map((p) => [p.key, [p.owner, p.containerId, p.execId]]));
      expect(ptys).toEqual({ [`${HOST_PTS}:0`]: ["host", null, null], [`${B_PTS}:5`]: ["unattributed", A, null] });
      expect(inventory.sessions).toEqual([]);
    },
  );

  it.each([
    [136 * 256 + 0, 0],
    [136 * 256 + 255, 255],
    [(137 << 8) | 4, 260],
    [(4 << 8) | 1, null], // tty1
    [0, null],
  ])("tty_nr %i names slave index %s", (ttyNr, index) => {
    expect(ttyNrSlaveIndex(ttyNr)).toBe(index);
  });
});
