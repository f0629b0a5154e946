// buildInventory: attribution of ptys to containers and exec sessions, from hand-made scans.
import { describe, expect, it } from "vitest";
import { buildInventory, CLOCK_TICKS_PER_SECOND } from "../../../src/domain/inventory.js";
import type { ProcInfo, ProcScan, PtyFd } from "../../../src/domain/types.js";
import type { RuntimeContainer, RuntimeExec, RuntimeView } from "../../../src/domain/runtime.js";
import { master, proc, slave } from "../support/scan-fixtures.js";

const CID = "a".repeat(64);
const OTHER = "b".repeat(64);
const HOST_PTS = "0:26";
const CONTAINER_PTS = "0:44";

function scanOf(processes: ProcInfo[], fds: PtyFd[], extra: Partial<ProcScan> = {}): ProcScan {
  const ttyTimes = new Map(
    fds.filter((f) => f.role === "slave").map((f) => [`${f.devptsDev}:${f.index}`, { atimeMs: 1_000_000, mtimeMs: 2_000_000 }]),
  );
  return {
    processes: new Map(processes.map((p) => [p.pid, p])),
    ppids: new Map(processes.map((p) => [p.pid, p.ppid])),
    ptyFds: fds,
    ttyTimes,
    initDevpts: new Map(),
    unreadablePids: [],
    vanished: 0,
    parseErrors: {},
    bootTimeSec: 1_700_000_000,
    ...extra,
  };
}

const container = (over: Partial<RuntimeContainer> = {}): RuntimeContainer => ({
  runtime: "docker",
  namespace: null,
  id: CID,
  name: "victim",
  labels: {},
  initPid: 100,
  kubernetes: null,
  ...over,
});
const exec = (over: Partial<RuntimeExec> = {}): RuntimeExec => ({
  id: "e".repeat(64),
  container: { namespace: null, id: CID },
  running: true,
  pid: 200,
  tty: true,
  command: ["sh", "-l"],
  ...over,
});
/** Docker's view as the inventory takes it: a list of runtimes' views. */
const view = (containers: RuntimeContainer[], execs: RuntimeExec[]): RuntimeView[] => [
  { runtime: "docker", available: true, error: null, containers, execs },
];
const noDocker: RuntimeView[] = [{ runtime: "docker", available: false, error: "down", containers: [], execs: [] }];
const limits = { allocated: 1, max: 4096, reserve: 1024 };

describe("buildInventory", () => {
  const init = proc(100, { containerId: CID, nsPids: [100, 1], pidNs: "4026532180" });
  const shim = proc(90, { comm: "containerd-shim" });
  const execShell = proc(200, { containerId: CID, nsPids: [200, 7], ppid: 90, pidNs: "4026532180" });

  it("attributes a leaked exec shell to its exec session and container", () => {
    const scan = scanOf([init, shim, execShell], [master(90, CONTAINER_PTS, 0), slave(200, CONTAINER_PTS, 0), slave(200, CONTAINER_PTS, 0, 1)], {
      initDevpts: new Map([[100, CONTAINER_PTS]]),
    });
    const inventory = buildInventory(scan, limits, view([container()], [exec()]));
    expect(inventory.ptys).toHaveLength(1);
    expect(inventory.ptys[0]).toMatchObject({
      owner: "exec",
      containerId: CID,
      containerName: "victim",
      execId: exec().id,
      masterPids: [90],
      slavePids: [200],
    });
    expect(inventory.sessions).toHaveLength(1);
    expect(inventory.sessions[0]).toMatchObject({
      execId: exec().id,
      pid: 200,
      nsPid: 7,
      command: "sh -l",
      holderPids: [200],
      startedAtMs: 1_700_000_000_000 + (1000 * 1000) / CLOCK_TICKS_PER_SECOND,
    });
    expect(inventory.discrepancy).toEqual({ found: 1, allocated: 1, explanation: null });
  });

  it("does not make a session of a pty only the exec's descendant holds: the exec's own pty is the one on its stdio", () => {
    const child = proc(201, { containerId: CID, ppid: 200, nsPids: [201, 8] });
    const scan = scanOf([init, shim, execShell, child], [slave(201, CONTAINER_PTS, 3)]);
    const inventory = buildInventory(scan, limits, view([container()], [exec()]));
    expect(inventory.ptys[0]).toMatchObject({ owner: "unattributed", containerId: CID, execId: null });
    expect(inventory.sessions).toEqual([]);
  });

  it.each([
    ["the container's own tty (docker run -t)", [slave(100, CONTAINER_PTS, 0)], view([container()], []), "container"],
    ["a host pty", [master(50, HOST_PTS, 2), slave(51, HOST_PTS, 2)], view([container()], []), "host"],
    ["a pty in a container with no matching exec", [slave(200, CONTAINER_PTS, 1)], view([container()], []), "unattributed"],
    ["an exec that is no longer running", [slave(200, CONTAINER_PTS, 1)], view([container()], [exec({ running: false })]), "unattributed"],
    ["an exec without a tty", [slave(200, CONTAINER_PTS, 1)], view([container()], [exec({ tty: false })]), "unattributed"],
    [
      "an exec of another container with the same pid",
      [slave(200, CONTAINER_PTS, 1)],
      view([container()], [exec({ container: { namespace: null, id: OTHER } })]),
      "unattributed",
    ],
    ["docker unavailable: the container init still owns its tty", [slave(100, CONTAINER_PTS, 0)], noDocker, "container"],
    ["docker unavailable: an exec shell is not guessed", [slave(200, CONTAINER_PTS, 0)], noDocker, "unattributed"],
    ["a holder that could not be read", [slave(999, HOST_PTS, 4)], view([], []), "unattributed"],
  ] as const)("classifies %s", (_name, fds, docker, owner: string) => {
    const host1 = proc(50, { comm: "sshd" });
    const host2 = proc(51, { comm: "bash" });
    const scan = scanOf([init, shim, execShell, host1, host2], [...fds], { initDevpts: new Map([[100, CONTAINER_PTS]]) });
    const inventory = buildInventory(scan, limits, docker);
    expect(inventory.ptys.map((p) => p.owner)).toEqual([owner]);
    expect(inventory.sessions.length).toBe(owner === "exec" ? 1 : 0);
  });

  it("keeps the same index in two devpts instances apart", () => {
    const scan = scanOf([init, execShell, proc(51)], [slave(200, CONTAINER_PTS, 0), slave(51, HOST_PTS, 0)], {
      initDevpts: new Map([[100, CONTAINER_PTS]]),
    });
    const inventory = buildInventory(scan, { ...limits, allocated: 2 }, view([container()], [exec()]));
    expect(inventory.ptys.map((p) => [p.key, p.owner])).toEqual([
      [`${HOST_PTS}:0`, "host"],
      [`${CONTAINER_PTS}:0`, "exec"],
    ]);
  });

  it("attributes a pty to a container by its devpts instance even when only host processes hold it", () => {
    const scan = scanOf([init, shim], [master(90, CONTAINER_PTS, 5)], { initDevpts: new Map([[100, CONTAINER_PTS]]) });
    const inventory = buildInventory(scan, limits, view([container()], []));
    expect(inventory.ptys[0]).toMatchObject({ containerId: CID, owner: "unattributed", masterPids: [90], slavePids: [] });
  });

  it("marks sessions started with PTYREAPER_EXEMPT=1", () => {
    const scan = scanOf([init, execShell], [slave(200, CONTAINER_PTS, 0)]);
    const inventory = buildInventory(scan, limits, view([container()], [exec()]), { exemptByEnv: (pid) => pid === 200 });
    expect(inventory.sessions[0]?.exemptByEnv).toBe(true);
  });

  it("gives a pty built as before as the object given out before, marked or not, and a changed one anew", () => {
    const fds = [master(90, CONTAINER_PTS, 0), slave(200, CONTAINER_PTS, 0), master(51, HOST_PTS, 3), slave(52, HOST_PTS, 3)];
    const processes = [init, shim, execShell, proc(51), proc(52, { ppid: 51 })];
    const options = { initDevpts: new Map([[100, CONTAINER_PTS]]) };
    const views = view([container()], [exec()]);
    const first = buildInventory(scanOf(processes, fds, options), limits, views);
    const [hostPty, execPty] = first.ptys;
    // As the master-only marker leaves every pty it looked at: a mark, null here.
    const previous = first.ptys.map((pty) => ({ ...pty, masterOnly: null }));
    const again = buildInventory(scanOf(processes, fds, options), limits, views, { previous });
    expect(again.ptys[0]).toBe(previous[0]);
    expect(again.ptys[1]).toBe(previous[1]);
    // A new holder of the host pty: that pty is built anew; the exec's is still the one given out.
    const moved = buildInventory(scanOf([...processes, proc(53, { ppid: 52 })], [...fds, slave(53, HOST_PTS, 3)], options), limits, views, {
      previous,
    });
    expect(moved.ptys[0]).not.toBe(previous[0]);
    expect(moved.ptys[0]).toMatchObject({ key: hostPty?.key, slavePids: [52, 53] });
    expect(moved.ptys[0]?.masterOnly).toBeUndefined();
    expect(moved.ptys[1]).toBe(previous[1]);
    // Times that moved: anew.
    const used = scanOf(processes, fds, options);
    used.ttyTimes.set(execPty?.key ?? "", { atimeMs: 5_000_000, mtimeMs: 2_000_000 });
    expect(buildInventory(used, limits, views, { previous }).ptys[1]).not.toBe(previous[1]);
  });

  it("tags each pty with the runtime runtimeOf gives, and compares that too against the pty given out before", () => {
    const scan = scanOf([init, shim, execShell], [master(90, CONTAINER_PTS, 0), slave(200, CONTAINER_PTS, 0)], {
      initDevpts: new Map([[100, CONTAINER_PTS]]),
    });
    const first = buildInventory(scan, limits, view([container()], [exec()]), { runtimeOf: () => "docker" });
    expect(first.ptys[0]?.runtime).toBe("docker");
    const again = buildInventory(scan, limits, view([container()], [exec()]), { runtimeOf: () => "docker", previous: first.ptys });
    expect(again.ptys[0]).toBe(first.ptys[0]);
    const other = buildInventory(scan, limits, view([container()], [exec()]), { runtimeOf: () => "podman", previous: first.ptys });
    expect(other.ptys[0]).not.toBe(first.ptys[0]);
    expect(other.ptys[0]?.runtime).toBe("podman");
  });

  it("explains a difference from pty/nr", () => {
    const scan = scanOf([proc(51)], [slave(51, HOST_PTS, 0)], { unreadablePids: [1], vanished: 2 });
    const inventory = buildInventory(scan, { ...limits, allocated: 3 }, view([], []));
    expect(inventory.discrepancy.found).toBe(1);
    expect(inventory.discrepancy.allocated).toBe(3);
    expect(inventory.discrepancy.explanation).toContain("1 process(es) could not be read");
    expect(inventory.discrepancy.explanation).toContain("2 process(es) exited during the scan");
  });
});
