// CRI-O from a committed /proc fixture (not installable here): one `kubectl exec -it` holds two ptys, both go to one session.
import type { Stats } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ptyKey } from "../../../src/domain/types.js";
import { ProcFs } from "../../../src/procfs/procfs.js";
import { scanProc } from "../../../src/procfs/scan.js";
import { attribute } from "../../../src/domain/attribution.js";
import { processFactsLookup, readProcessFacts } from "../../../src/runtimes/facts.js";
import { buildInventory } from "../../../src/domain/inventory.js";
import { mergeRuntimeViews, ptyRuntimeOf } from "../../../src/domain/runtime-sessions.js";

const ROOT = fileURLToPath(new URL("../../fixtures/proc/crio-exec", import.meta.url));
const ID = "9a3f5e2c1b7d4e6f8a0b2c4d6e8f0a1b3c5d7e9f1a2b4c6d8e0f2a4b6c8d0e1f";
const UID = "5d1c8a2e-9b3f-4c7d-8e6a-1f2b3c4d5e6f";

/** new_encode_dev(), as st_dev / st_rdev carry it. */
function dev(major: number, minor: number): number {
  return (minor & 0xff) + major * 256 + (minor - (minor & 0xff)) * 4096;
}
const HOST_PTS = dev(0, 24);
const CONTAINER_PTS = dev(0, 50);
const DEVTMPFS = dev(0, 6);
const PTMX = dev(5, 2);
const slave = (instance: number, index: number): { rdev: number; dev: number } => ({ rdev: dev(136, index), dev: instance });

// What stat(2) says about each pty-looking fd: links alone cannot carry devices.
const FD_STATS: Record<string, { rdev: number; dev: number }> = {
  "700/15": { rdev: PTMX, dev: DEVTMPFS }, // crio opened /dev/ptmx: host pty 4
  "720/0": slave(HOST_PTS, 4),
  "720/1": slave(HOST_PTS, 4),
  "720/2": slave(HOST_PTS, 4),
  "720/7": { rdev: PTMX, dev: CONTAINER_PTS }, // received from runc init over the console socket
  "721/0": slave(CONTAINER_PTS, 0),
  "721/1": slave(CONTAINER_PTS, 0),
  "721/2": slave(CONTAINER_PTS, 0),
  "721/10": { rdev: dev(5, 0), dev: DEVTMPFS }, // /dev/tty: not a pty end
  "722/0": slave(CONTAINER_PTS, 0),
  "722/1": slave(CONTAINER_PTS, 0),
  "722/2": slave(CONTAINER_PTS, 0),
};

class FixtureProcFs extends ProcFs {
  override fdStat(pid: number, fd: string): Stats {
    const fake = FD_STATS[`${pid}/${fd}`];
    if (!fake) throw new Error(`fixture: no stat for ${pid}/fd/${fd}`);
    return { isCharacterDevice: () => true, rdev: fake.rdev, dev: fake.dev, ino: 2, atimeMs: 0, mtimeMs: 0 } as unknown as Stats;
  }
}

const procfs = new FixtureProcFs(ROOT);
const scan = scanProc(procfs);
const lookup = processFactsLookup(procfs);
const HOST_KEY = ptyKey("0:24", 4);
const CONTAINER_KEY = ptyKey("0:50", 0);

/** Attribution of every slave holder of `key`, with the master's holder as the scan found it. */
function attributeHoldersOf(key: string) {
  const fds = scan.ptyFds.filter((fd) => ptyKey(fd.devptsDev, fd.index) === key);
  const masterPid = fds.find((fd) => fd.role === "master")?.pid;
  const master = masterPid === undefined ? null : (readProcessFacts(procfs, masterPid) ?? null);
  const slaveHolders = [...new Set(fds.filter((fd) => fd.role === "slave").map((fd) => fd.pid))].sort();
  return slaveHolders.map((pid) => ({
    pid,
    masterPid,
    attribution: attribute(readProcessFacts(procfs, pid) as NonNullable<ReturnType<typeof readProcessFacts>>, master, lookup),
  }));
}

describe("CRI-O exec fixture", () => {
  it("the scan finds two ptys for the one exec: one in the host's devpts, one in the container's", () => {
    const keys = new Set(scan.ptyFds.map((fd) => ptyKey(fd.devptsDev, fd.index)));
    expect([...keys].sort()).toEqual([HOST_KEY, CONTAINER_KEY].sort());
    expect(procfs.ptyLimits().allocated).toBe(keys.size);
  });

  it("host pty: crio holds the master, runc exec the slave; attributed to CRI-O with runc as the session", () => {
    const [holder, ...others] = attributeHoldersOf(HOST_KEY);
    expect(others).toEqual([]);
    expect(holder).toMatchObject({ pid: 720, masterPid: 700, attribution: { runtime: "cri-o", containerId: ID, role: "exec", sessionPid: 720 } });
  });

  it("container pty: runc exec holds the master, the shell and its child the slave; same session, with the pod", () => {
    const holders = attributeHoldersOf(CONTAINER_KEY);
    expect(holders.map((h) => h.pid)).toEqual([721, 722]);
    for (const holder of holders) {
      expect(holder.masterPid).toBe(720);
      expect(holder.attribution).toMatchObject({ runtime: "cri-o", containerId: ID, podUid: UID, role: "exec", sessionPid: 720 });
    }
  });

  it("the container's init and conmon hold no pty and are not the session", () => {
    const holders = new Set(scan.ptyFds.map((fd) => fd.pid));
    expect(holders.has(710) || holders.has(711)).toBe(false);
  });

  it("runc exec not run by crio is not CRI-O's", () => {
    const runc = readProcessFacts(procfs, 720);
    const shell = readProcessFacts(procfs, 721);
    if (!runc || !shell) throw new Error("fixture processes missing");
    const orphanedRunc = { ...runc, ppid: 1 };
    const result = attribute(shell, runc, (pid) => (pid === 720 ? orphanedRunc : lookup(pid)));
    expect(result.runtime).toBe("unknown");
  });

  it("in the inventory (no CRI-O adapter): both ptys are counted and shown as CRI-O's, and no session is made to reap", () => {
    const merged = mergeRuntimeViews([], scan, lookup);
    const inventory = buildInventory(scan, { allocated: 2, max: 4096, reserve: 1024 }, merged.views, {
      runtimeOf: ptyRuntimeOf(merged.containerRuntimes, lookup),
    });
    expect(inventory.ptys.map((p) => [p.key, p.runtime])).toEqual([
      [HOST_KEY, "cri-o"],
      [CONTAINER_KEY, "cri-o"],
    ]);
    expect(inventory.sessions).toEqual([]);
  });
});
