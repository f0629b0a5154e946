// The never-signal set as a table: which holder of an exec's pty may be signalled, and why not.
import { describe, expect, it } from "vitest";
import { isRuntimeComm, refusalFor, type SessionGuard, type TargetFacts } from "../../../src/reaper/identity.js";

const C = "0::/system.slice/docker-cccc.scope\n";
const guard: SessionGuard = {
  exec: { pid: 200, startTicks: 5000 },
  containerMain: { pid: 100, startTicks: 100 },
  containerMainAncestors: new Set([90, 80]),
  containerCgroup: C,
  self: new Set([7000, 6999]),
};
const shim = { pid: 90, startTicks: 10 };
const main = { pid: 100, startTicks: 100 };
const exec = { pid: 200, startTicks: 5000 };
const target = (over: Partial<TargetFacts>): TargetFacts => ({
  pid: 300,
  startTicks: 6000,
  comm: "sh",
  nsPids: [300, 9],
  cgroup: C,
  ancestors: [exec, shim],
  ...over,
});

describe("refusalFor", () => {
  it.each<[string, Partial<TargetFacts>, string | null]>([
    ["the exec's own process", { pid: 200, startTicks: 5000, ancestors: [shim] }, null],
    ["the exec's process with another start time (pid reused)", { pid: 200, startTicks: 9999, ancestors: [shim] }, "pid_reused"],
    ["a child of the exec", {}, null],
    ["a grandchild of the exec", { ancestors: [{ pid: 250, startTicks: 5500 }, exec, shim] }, null],
    ["a child of an older process that had the exec's pid", { ancestors: [{ pid: 200, startTicks: 1 }, shim] }, "not_in_session"],
    ["an orphan of the exec, reparented to the container's init", { ancestors: [main, shim] }, null],
    ["the loop under docker-init, started before the exec", { startTicks: 150, ancestors: [main, shim] }, "container_process"],
    ["a child of that loop, started after the exec", { ancestors: [{ pid: 101, startTicks: 150 }, main, shim] }, "container_process"],
    ["a process whose parent is outside the container", { ancestors: [{ pid: 4000, startTicks: 6000 }] }, "not_in_session"],
    ["the host's init", { pid: 1, ancestors: [] }, "host_init"],
    ["a container init (NSpid 1)", { nsPids: [300, 1] }, "namespace_init"],
    ["the container's main process (State.Pid) under --pid=host", { pid: 100, nsPids: [100], ancestors: [shim] }, "container_main"],
    ["an ancestor of State.Pid", { pid: 90, nsPids: [90], comm: "sh", ancestors: [] }, "container_main"],
    ["a runtime process", { comm: "runc:[2:INIT]" }, "runtime"],
    ["a process in another cgroup", { cgroup: "0::/system.slice/docker-dddd.scope\n" }, "outside_cgroup"],
    ["ptyreaper itself", { pid: 7000 }, "ptyreaper"],
    ["ptyreaper's parent", { pid: 6999 }, "ptyreaper"],
  ])("%s → %s", (_name, facts, expected) => {
    expect(refusalFor(target(facts), guard)).toBe(expected);
  });

  // Once pinned: the exec (200), its child 250 and an orphan 260 reparented to main before the session was judged stale.
  const pinned: SessionGuard = {
    ...guard,
    pinned: new Map([
      [200, 5000],
      [250, 5500],
      [260, 5600],
    ]),
  };
  it.each<[string, Partial<TargetFacts>, string | null]>([
    ["the exec's own process", { pid: 200, startTicks: 5000, ancestors: [shim] }, null],
    ["a child of the exec", {}, null],
    ["a pinned orphan of the exec", { pid: 260, startTicks: 5600, ancestors: [main, shim] }, null],
    ["a child of a pinned orphan", { ancestors: [{ pid: 260, startTicks: 5600 }, main, shim] }, null],
    ["a later child of the main process (the index handed out again)", { ancestors: [main, shim] }, "not_pinned"],
    ["a pinned pid taken by a later child of the main process", { pid: 260, startTicks: 7000, ancestors: [main, shim] }, "not_pinned"],
    ["a child of a pinned pid's later process", { ancestors: [{ pid: 250, startTicks: 7000 }, main, shim] }, "not_pinned"],
    ["the loop under docker-init, started before the exec", { startTicks: 150, ancestors: [main, shim] }, "container_process"],
    ["the exec's process with another start time (pid reused)", { pid: 200, startTicks: 9999, ancestors: [shim] }, "pid_reused"],
  ])("pinned: %s → %s", (_name, facts, expected) => {
    expect(refusalFor(target(facts), pinned)).toBe(expected);
  });

  it.each([
    ["containerd-shim-runc-v2", true],
    ["containerd-shim", true],
    ["dockerd", true],
    ["runc", true],
    ["sh", false],
    ["sleep", false],
  ])("%s is a runtime: %s", (comm, yes) => {
    expect(isRuntimeComm(comm)).toBe(yes);
  });
});
