// scanProc on the real kernel's /proc: host ptys, ptys in private devpts instances, pty.nr, and churn mid-scan.
import { readdirSync, readlinkSync, statSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { ptyKey, type ProcScan, type PtyFd } from "../../src/domain/types.js";
import { isDenied } from "../../src/errors.js";
import { formatDev } from "../../src/procfs/parse.js";
import { ProcFs } from "../../src/procfs/procfs.js";
import { scanProc } from "../../src/procfs/scan.js";
import { cleanupAll, hostPty, nsPty, ptyChurn, ptyNr, sleep } from "./support/index.js";

const procfs = new ProcFs("/proc");
/** The host's devpts instance: st_dev of the /dev/pts this process sees (the top one when stacked). */
const HOST_DEVPTS = formatDev(statSync("/dev/pts").dev);

afterAll(cleanupAll);

function fdsOf(scan: ProcScan, devptsDev: string, index: number): PtyFd[] {
  return scan.ptyFds.filter((fd) => fd.devptsDev === devptsDev && fd.index === index);
}

function holders(scan: ProcScan, devptsDev: string, index: number): { masters: number[]; slaves: number[] } {
  const fds = fdsOf(scan, devptsDev, index);
  const pids = (role: string): number[] => [...new Set(fds.filter((fd) => fd.role === role).map((fd) => fd.pid))].sort((a, b) => a - b);
  return { masters: pids("master"), slaves: pids("slave") };
}

/** Whether reading /proc/PID/fd links fails with EACCES/EPERM (false when readable or gone). */
function linksDenied(pid: number): boolean {
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) readlinkSync(`/proc/${pid}/fd/${fd}`);
    return false;
  } catch (err) {
    return isDenied(err);
  }
}

function distinctKeys(scan: ProcScan): Set<string> {
  return new Set(scan.ptyFds.map((fd) => ptyKey(fd.devptsDev, fd.index)));
}

describe("scanProc on the real /proc", () => {
  it("reports as unreadable only processes whose fd links the kernel refuses even to root", () => {
    expect(process.getuid?.()).toBe(0);
    const scan = scanProc(procfs);
    // A sandbox's own init may be protected from ptrace-mode reads; every such pid must really be one.
    for (const pid of scan.unreadablePids) expect(linksDenied(pid), `pid ${pid}`).toBe(true);
    expect(scan.unreadablePids).not.toContain(process.pid);
  });

  it("finds a host pty with its master and slave holders on the host's devpts instance", async () => {
    const pty = await hostPty();
    const scan = scanProc(procfs);

    expect(holders(scan, HOST_DEVPTS, pty.index)).toEqual({ masters: [pty.masterPid], slaves: [pty.slavePid] });
    expect(scan.processes.get(pty.masterPid)).toMatchObject({ pid: pty.masterPid, containerId: null, nsPids: [pty.masterPid] });
    expect(scan.processes.get(pty.slavePid)).toMatchObject({ pid: pty.slavePid, ppid: pty.masterPid, containerId: null });
    expect(scan.ttyTimes.has(ptyKey(HOST_DEVPTS, pty.index))).toBe(true);

    await pty.close();
    expect(fdsOf(scanProc(procfs), HOST_DEVPTS, pty.index).filter((fd) => fd.pid === pty.masterPid || fd.pid === pty.slavePid)).toEqual([]);
  });

  it("maps a master opened through devtmpfs /dev/ptmx to the host's devpts instance", async () => {
    const pty = await hostPty(); // python's openpty() opens /dev/ptmx
    const masterFd = fdsOf(scanProc(procfs), HOST_DEVPTS, pty.index).find((fd) => fd.role === "master");
    expect(masterFd).toBeDefined();
    const fd = String(masterFd?.fd);
    // The fd itself lives on devtmpfs, not on devpts: the scan had to resolve the instance.
    expect(procfs.fdLink(pty.masterPid, fd)).toBe("/dev/ptmx");
    expect(formatDev(procfs.fdStat(pty.masterPid, fd).dev)).not.toBe(HOST_DEVPTS);
    expect(procfs.fdinfoTtyIndex(pty.masterPid, fd)).toBe(pty.index);
    await pty.close();
  });

  it("finds ptys in a private PID + mount namespace under their own devpts instance", async () => {
    const ns = await nsPty({ count: 3 });
    expect(ns.devptsDev).not.toBe(HOST_DEVPTS);
    expect(ns.indexes).toEqual([0, 1, 2]); // a new instance numbers from 0
    const scan = scanProc(procfs);

    for (const index of ns.indexes) {
      expect(holders(scan, ns.devptsDev, index)).toEqual({ masters: [ns.pid], slaves: [ns.pid] });
    }
    expect(scan.processes.get(ns.pid)).toMatchObject({ nsPids: [ns.pid, 1], pidNs: ns.pidNs, containerId: null });
    expect(scan.processes.get(ns.pid)?.pidNs).not.toBe(procfs.namespace(process.pid, "pid"));
    // pid 1 of its namespace, like a container's init: the scan resolves the devpts it sees
    expect(scan.initDevpts.get(ns.pid)).toBe(ns.devptsDev);
    await ns.close();
  });

  it("keeps the same index in two devpts instances apart as two ptys", async () => {
    const first = await nsPty({ count: 2 });
    const second = await nsPty({ count: 2 });
    expect(first.devptsDev).not.toBe(second.devptsDev);
    expect(second.indexes).toEqual(first.indexes);
    const keys = distinctKeys(scanProc(procfs));

    for (const index of first.indexes) {
      expect(keys.has(ptyKey(first.devptsDev, index))).toBe(true);
      expect(keys.has(ptyKey(second.devptsDev, index))).toBe(true);
    }
    const scan = scanProc(procfs);
    expect(holders(scan, first.devptsDev, 0).masters).toEqual([first.pid]);
    expect(holders(scan, second.devptsDev, 0).masters).toEqual([second.pid]);
    await Promise.all([first.close(), second.close()]);
  });

  it("maps masters opened through devtmpfs /dev/ptmx inside a namespace to that namespace's devpts", async () => {
    // There /dev/ptmx resolves to the devpts mounted on the namespace's own /dev/pts, not the host's.
    const ns = await nsPty({ count: 2, ptmx: "/dev/ptmx" });
    const scan = scanProc(procfs);
    for (const index of ns.indexes) {
      expect(holders(scan, ns.devptsDev, index)).toEqual({ masters: [ns.pid], slaves: [ns.pid] });
    }
    const masters = scan.ptyFds.filter((fd) => fd.pid === ns.pid && fd.role === "master");
    expect(masters.map((fd) => procfs.fdLink(ns.pid, String(fd.fd)))).toEqual(["/dev/ptmx", "/dev/ptmx"]);
    expect(masters.every((fd) => fd.devptsDev === ns.devptsDev)).toBe(true);
    await ns.close();
  });

  it("decodes slave indexes above 255 (minor numbers past one byte)", async () => {
    const ns = await nsPty({ count: 300 });
    const scan = scanProc(procfs);
    const found = fdsOf(scan, ns.devptsDev, 299);
    expect(found.map((fd) => fd.role).sort()).toEqual(["master", "slave"]);
    const indexes = new Set(scan.ptyFds.filter((fd) => fd.devptsDev === ns.devptsDev).map((fd) => fd.index));
    expect(indexes.size).toBe(300);
    expect(Math.max(...indexes)).toBe(299);
    await ns.close();
  });

  it("finds as many distinct ptys as the kernel has allocated (pty.nr)", async () => {
    const host = await hostPty();
    const ns = await nsPty({ count: 4 });
    // pty.nr is global: another process may open or close a pty during the scan, so a run counts only
    // when nr did not move; a stable run that still disagrees is retried a few times, then fails.
    const attempts: string[] = [];
    let matched = false;
    for (let attempt = 0; attempt < 5 && !matched; attempt++) {
      const before = ptyNr();
      const scan = scanProc(procfs);
      const after = ptyNr();
      const found = distinctKeys(scan).size;
      attempts.push(`nr ${before}→${after}, found ${found}, unreadable pids ${scan.unreadablePids.join(",") || "none"}`);
      matched = before === after && found === before;
      if (!matched) await sleep(200); // no daemon: a pause for another process's pty opens to settle before retrying
    }
    expect(matched, attempts.join("; ")).toBe(true);
    expect(ptyNr()).toBeGreaterThanOrEqual(5);
    await Promise.all([host.close(), ns.close()]);
  });

  it("keeps scanning while pty holders appear and vanish, counting them as vanished", async () => {
    const stable = await hostPty();
    const churn = await ptyChurn({ durationMs: 4_000, maxSpawns: 20_000, width: 8 });
    let churnDone = false;
    void churn.done.finally(() => (churnDone = true));
    let scans = 0;
    let vanished = 0;
    const parseErrors: Record<string, number> = {};
    while (!churnDone && scans < 300) {
      const scan = scanProc(procfs); // must not throw
      scans++;
      vanished += scan.vanished;
      for (const [kind, count] of Object.entries(scan.parseErrors)) parseErrors[kind] = (parseErrors[kind] ?? 0) + count;
      // the long-lived pty is found in every scan, whatever vanished around it
      expect(holders(scan, HOST_DEVPTS, stable.index)).toEqual({ masters: [stable.masterPid], slaves: [stable.slavePid] });
      await sleep(1); // a turn of the event loop, not a window: lets the churn's exit be noticed
    }
    const spawned = await churn.stop();
    expect(spawned).toBeGreaterThan(0);
    expect(scans).toBeGreaterThan(1);
    expect(vanished, `${scans} scans while ${spawned} holders came and went`).toBeGreaterThan(0);
    expect(parseErrors, "a process exiting mid-scan is not a parse error").toEqual({});
    await stable.close();
  });
});
