// Ptys held only by masters: first-seen times across cycles, the grace, and the holder's role.
import { describe, expect, it } from "vitest";
import { markMasterOnly, masterHolder, MasterOnlyTracker } from "../../../src/domain/master-only.js";
import type { ProcInfo, Pty } from "../../../src/domain/types.js";
import type { ProcessFacts } from "../../../src/domain/attribution.js";
import { proc } from "../support/scan-fixtures.js";

const CID = "a".repeat(64);

function pty(index: number, over: Partial<Pty> = {}): Pty {
  return {
    key: `0:60:${index}`,
    devptsDev: "0:60",
    index,
    owner: "unattributed",
    containerId: null,
    containerName: null,
    execId: null,
    masterPids: [800],
    slavePids: [],
    atimeMs: null,
    mtimeMs: null,
    leaderPid: null,
    leaderCommand: null,
    leaderStartedAtMs: null,
    ...over,
  };
}

function info(pid: number, startTicks: number, cmdline: string[] = ["holder"]): ProcInfo {
  return proc(pid, { startTicks, comm: cmdline[0] ?? "", cmdline, pidNs: null });
}

const facts = (
  pid: number,
  argv: string[],
  cgroup = "0::/system.slice/x.service",
  comm = argv[0]?.split("/").pop() ?? "",
  ppid = 1,
): ProcessFacts => ({ pid, ppid, comm: comm.slice(0, 15), argv, cgroup, nsPid: pid });

describe("MasterOnlyTracker", () => {
  const scan = {
    processes: new Map([
      [800, info(800, 5)],
      [801, info(801, 6)],
    ]),
  };

  it("keeps the first cycle that saw a pty held only by masters, while it stays so", () => {
    const tracker = new MasterOnlyTracker();
    expect(tracker.observe([pty(0)], scan, 1_000).get("0:60:0")).toBe(1_000);
    expect(tracker.observe([pty(0)], scan, 9_000).get("0:60:0")).toBe(1_000);
  });

  it.each([
    ["a slave holder came back", [pty(0, { slavePids: [900] })]],
    ["the pty was freed", []],
  ])("starts again after %s", (_why, between) => {
    const tracker = new MasterOnlyTracker();
    tracker.observe([pty(0)], scan, 1_000);
    expect(tracker.observe(between, scan, 2_000).has("0:60:0")).toBe(false);
    expect(tracker.observe([pty(0)], scan, 3_000).get("0:60:0")).toBe(3_000);
    expect(tracker.size).toBe(1);
  });

  it("takes the same index held by another process (or a restarted one) for another allocation", () => {
    const tracker = new MasterOnlyTracker();
    tracker.observe([pty(0)], scan, 1_000);
    expect(tracker.observe([pty(0, { masterPids: [801] })], scan, 2_000).get("0:60:0")).toBe(2_000);
    const restarted = { processes: new Map([[801, info(801, 99)]]) };
    expect(tracker.observe([pty(0, { masterPids: [801] })], restarted, 3_000).get("0:60:0")).toBe(3_000);
  });

  it("never tracks a pty with a slave holder or an exec's", () => {
    const tracker = new MasterOnlyTracker();
    expect(tracker.observe([pty(0, { slavePids: [900] }), pty(1, { owner: "exec" }), pty(2, { masterPids: [] })], scan, 1_000).size).toBe(0);
  });
});

describe("masterHolder", () => {
  const crio = facts(700, ["/usr/bin/crio"]);
  const lookup = (pid: number): ProcessFacts | undefined => (pid === 700 ? crio : undefined);
  it.each<[string, ProcessFacts | undefined, ReturnType<typeof masterHolder>]>([
    [
      "Docker's shim (namespace moby)",
      facts(1, ["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby", "-id", CID]),
      { role: "containerd-shim", runtime: "docker", containerId: null },
    ],
    [
      "a CRI shim (namespace k8s.io)",
      facts(1, ["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", CID]),
      { role: "containerd-shim", runtime: "containerd", containerId: null },
    ],
    [
      "Podman's conmon",
      facts(1, ["/usr/bin/conmon", "-c", CID, "-u", "e".repeat(64), "--exit-command", "/usr/bin/podman", "--exec-attach"]),
      { role: "conmon", runtime: "podman", containerId: CID },
    ],
    ["crio", crio, { role: "crio", runtime: "cri-o", containerId: null }],
    [
      "runc exec run by crio",
      facts(1, ["/usr/bin/runc", "exec", "--process", "/tmp/p", CID], undefined, "runc", 700),
      { role: "oci-runtime-exec", runtime: "cri-o", containerId: CID },
    ],
    ["dockerd", facts(1, ["/usr/bin/dockerd", "-H", "fd://"]), { role: "dockerd", runtime: "docker", containerId: null }],
    ["a process in a Docker container", facts(1, ["tmux"], `0::/docker/${CID}`), { role: "container", runtime: "docker", containerId: CID }],
    ["a host process", facts(1, ["python3", "-c", "..."]), { role: "host", runtime: "none", containerId: null }],
    ["a process that exited", undefined, { role: "host", runtime: "none", containerId: null }],
  ])("%s", (_name, holder, expected) => {
    expect(masterHolder(holder, lookup)).toEqual(expected);
  });
});

describe("markMasterOnly", () => {
  const shim = facts(800, ["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io"], "0::/system.slice/containerd.service", "containerd-shim");
  const host = facts(801, ["python3"]);
  const lookup = (pid: number): ProcessFacts | undefined => (pid === 800 ? shim : pid === 801 ? host : undefined);
  const scan = {
    processes: new Map([
      [800, info(800, 5, shim.argv as string[])],
      [801, info(801, 6, ["python3"])],
    ]),
  };
  const none = new Set<number>();

  it("names a pty once it has been held only by masters for the grace, with the runtime's holder first", () => {
    const ptys = [pty(0, { containerId: CID, runtime: "containerd", masterPids: [801, 800] }), pty(1)];
    const firstSeen = new Map([
      ["0:60:0", 1_000],
      ["0:60:1", 50_000],
    ]);
    markMasterOnly(ptys, { firstSeen, nowMs: 61_000, graceMs: 60_000, scan, lookup, unreadableTtys: none });
    expect(ptys[0]?.masterOnly).toEqual({
      role: "containerd-shim",
      runtime: "containerd",
      containerId: CID,
      holderPid: 800,
      holderCommand: "/usr/bin/containerd-shim-runc-v2 -namespace k8s.io",
      sinceMs: 1_000,
    });
    expect(ptys[1]?.masterOnly).toBeNull();
  });

  it("one look (no first-seen times) names every pty held only by masters now, untimed", () => {
    const ptys = [pty(0, { masterPids: [801] }), pty(1, { masterPids: [801], slavePids: [801] })];
    markMasterOnly(ptys, { firstSeen: null, nowMs: 0, graceMs: 60_000, scan, lookup, unreadableTtys: none });
    expect(ptys[0]?.masterOnly).toMatchObject({ role: "host", runtime: "none", holderPid: 801, sinceMs: null });
    expect(ptys[1]?.masterOnly).toBeNull();
  });

  it.each<[string, ReadonlySet<number> | null, (boolean | undefined)[]]>([
    ["an unreadable process has pts/1 as controlling tty: pts/1 is not named", new Set([1]), [true, false]],
    ["an unreadable process could not be told at all: nothing is named", null, [false, false]],
  ])("%s (it might hold the slave)", (_name, unreadableTtys, named) => {
    const ptys = [pty(0), pty(1)];
    const firstSeen = new Map([
      ["0:60:0", 0],
      ["0:60:1", 0],
    ]);
    markMasterOnly(ptys, { firstSeen, nowMs: 600_000, graceMs: 1_000, scan, lookup, unreadableTtys });
    expect(ptys.map((p) => p.masterOnly !== null)).toEqual(named);
  });

  it("never marks an exec's pty", () => {
    const ptys = [pty(0, { owner: "exec" })];
    markMasterOnly(ptys, { firstSeen: new Map([["0:60:0", 0]]), nowMs: 600_000, graceMs: 1_000, scan, lookup, unreadableTtys: none });
    expect(ptys[0]?.masterOnly).toBeNull();
  });
});
