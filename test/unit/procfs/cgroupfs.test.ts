// A container's processes from its cgroup listing: which /proc/PID/cgroup texts lead where, and what is read there.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cgroupDirs, cgroupMembers } from "../../../src/procfs/cgroupfs.js";

const ID = "a".repeat(64);

describe("cgroupDirs", () => {
  it.each([
    {
      case: "v2",
      text: `0::/system.slice/docker-${ID}.scope\n`,
      dirs: [`/r/system.slice/docker-${ID}.scope`, `/r/unified/system.slice/docker-${ID}.scope`],
    },
    {
      case: "hybrid: the v2 line first, then v1 pids",
      text: `8:pids:/docker/${ID}\n4:memory:/docker/${ID}\n0::/docker/${ID}\n`,
      dirs: [`/r/docker/${ID}`, `/r/unified/docker/${ID}`, `/r/pids/docker/${ID}`],
    },
    { case: "v1 only", text: `12:cpu,cpuacct:/docker/${ID}\n3:pids:/docker/${ID}\n`, dirs: [`/r/pids/docker/${ID}`] },
    { case: "the root", text: "0::/\n", dirs: ["/r", "/r/unified"] },
    { case: "another cgroup namespace's view", text: `0::/../../kubepods/pod1/${ID}\n`, dirs: [] },
    { case: "nothing", text: "", dirs: [] },
  ])("$case", ({ text, dirs }) => {
    expect(cgroupDirs(text, "/r")).toEqual(dirs);
  });
});

describe("cgroupMembers", () => {
  const root = mkdtempSync(join(tmpdir(), "ptyr-cgroupfs-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const unified = join(root, "unified", "docker", ID);
  mkdirSync(unified, { recursive: true });
  writeFileSync(join(unified, "cgroup.procs"), "1201\n1187\n1300\n");
  const pids = join(root, "pids", "docker", "b".repeat(64));
  mkdirSync(pids, { recursive: true });
  writeFileSync(join(pids, "cgroup.procs"), "77\n");

  it("lists the pids of the cgroup the text names, from the first place it can be read", () => {
    expect(cgroupMembers(`8:pids:/docker/${ID}\n0::/docker/${ID}\n`, root)).toEqual([1201, 1187, 1300]);
    expect(cgroupMembers(`8:pids:/docker/${"b".repeat(64)}\n`, root)).toEqual([77]);
  });

  it("is null where the listing cannot be read: no such cgroup here, a path above the namespace", () => {
    expect(cgroupMembers("0::/system.slice/gone.scope\n", root)).toBeNull();
    expect(cgroupMembers(`0::/../docker/${ID}\n`, root)).toBeNull();
  });
});
