// IncrementalScanner on the real kernel: a load of real processes and devpts namespaces that changes between passes equals a fresh scanProc each time.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scanDifferences, scanDigest } from "../../bench/compare.js";
import { SyntheticHost } from "../../bench/load.js";
import type { ProcScan } from "../../src/domain/types.js";
import type { ModalScan } from "../../src/procfs/incremental.js";
import { ProcFs } from "../../src/procfs/procfs.js";
import { IncrementalScanner, scanProc } from "../../src/procfs/scan.js";

/** The real /proc, counting the fd links read per pid: an idle process must cost no link reads. */
class CountingProcFs extends ProcFs {
  readonly linkReads = new Map<number, number>();
  override fdLink(pid: number, fd: string): string {
    this.linkReads.set(pid, (this.linkReads.get(pid) ?? 0) + 1);
    return super.fdLink(pid, fd);
  }
  override fdLinkIfOpen(pid: number, fd: string): string | null {
    this.linkReads.set(pid, (this.linkReads.get(pid) ?? 0) + 1);
    return super.fdLinkIfOpen(pid, fd);
  }
}

// Everything runs in a private PID namespace with its own /proc (SyntheticHost isolated), so the
// scans see only this test's processes: other work on the machine cannot make them differ.
describe("IncrementalScanner on a changing load of real processes (real kernel, unshare, python3)", () => {
  let load: SyntheticHost;
  let procfs: CountingProcFs;
  let scanner: IncrementalScanner;
  let clock = 0;

  beforeAll(async () => {
    load = await SyntheticHost.create({ procs: 30, fds: 16, ptys: 8, namespaces: 2, isolated: true });
    procfs = new CountingProcFs(load.procRoot);
    scanner = new IncrementalScanner(procfs, { now: () => clock, fullRescanEveryMs: 60_000 });
  });

  afterAll(async () => {
    await load?.close();
  });

  const initPids = (): number[] => load.namespaces.map((ns) => ns.pid);

  /** An incremental scan, then a full one: they must agree on everything but order and race counts. */
  async function scanBoth(ptyAllocated = load.ptyCount): Promise<{ inc: ModalScan; full: ProcScan }> {
    clock += 1_000;
    const inc = await scanner.scan({ ptyAllocated, initPids: initPids() });
    const full = scanProc(procfs, { initPids: initPids() });
    expect(scanDifferences(inc, full)).toEqual([]);
    expect(scanDigest(inc)).toEqual(scanDigest(full));
    return { inc, full };
  }

  it("first pass is full, finds every pty of the load on its own devpts instance, and equals scanProc", async () => {
    const { inc } = await scanBoth();
    expect(inc.mode).toBe("full");
    for (const ns of load.namespaces) {
      expect(inc.initDevpts.get(ns.pid)).toBe(ns.devptsDev);
      for (const pty of ns.ptys) {
        const holders = inc.ptyFds.filter((fd) => fd.devptsDev === ns.devptsDev && fd.index === pty.index);
        // The slave's fds 0-2 name one pty end: one entry, counted.
        expect(holders.map((fd) => `${fd.role} ${fd.pid} ×${fd.fdCount ?? 1}`).sort()).toEqual([`master ${ns.pid} ×1`, `slave ${pty.slavePid} ×3`]);
      }
    }
  });

  it("an idle load: incremental, and no fd link of an idle process is read again", async () => {
    clock += 1_000;
    procfs.linkReads.clear();
    const inc = await scanner.scan({ ptyAllocated: load.ptyCount, initPids: initPids() });
    expect(inc.mode).toBe("incremental");
    const idle = [...load.holderPids, ...load.namespaces.flatMap((ns) => ns.ptys.map((pty) => pty.slavePid))];
    expect(idle.filter((pid) => procfs.linkReads.has(pid))).toEqual([]);
    expect(scanDigest(inc)).toEqual(scanDigest(scanProc(procfs, { initPids: initPids() })));
  });

  it("processes started and killed between passes", async () => {
    const old = load.holderPids.slice(0, 5);
    await load.killHolders(old);
    const added = await load.spawnHolders(6);
    const { inc } = await scanBoth();
    expect(inc.mode).toBe("incremental");
    for (const pid of old) expect(inc.ppids.has(pid)).toBe(false);
    for (const pid of added) expect(inc.ppids.has(pid)).toBe(true);
  });

  it("ptys opened by a namespace that already existed: found without a full pass", async () => {
    const made = await load.openPtys(0, 3);
    const { inc } = await scanBoth();
    expect(inc.mode).toBe("incremental");
    const ns = load.namespaces[0];
    for (const pty of made)
      expect(inc.ptyFds).toContainEqual({
        pid: ns?.pid,
        fd: expect.any(Number) as number,
        role: "master",
        devptsDev: ns?.devptsDev,
        index: pty.index,
      });
  });

  it("ptys closed between passes", async () => {
    const ns = load.namespaces[1];
    const gone = ns?.ptys.at(-1);
    await load.closePtys(1, 1);
    const { inc } = await scanBoth();
    expect(inc.mode).toBe("incremental");
    expect(inc.ptyFds.some((fd) => fd.devptsDev === ns?.devptsDev && fd.index === gone?.index)).toBe(false);
  });

  it("a holder that swaps a /dev/null fd for a pty slave (no allocation, same fd count): found by the next full pass, its release by the next steady one", async () => {
    const ns = load.namespaces[0];
    const index = ns?.ptys[0]?.index ?? -1;
    const fd = await load.adopt(0, index);
    clock += 1_000;
    const steady = await scanner.scan({ ptyAllocated: load.ptyCount, initPids: initPids() });
    expect(steady.mode).toBe("incremental");
    // Not seen between full passes: the reaper reads a session's holders afresh before any signal.
    expect(steady.ptyFds.some((held) => held.pid === ns?.pid && held.fd === fd)).toBe(false);
    clock += 60_000;
    const { inc } = await scanBoth();
    expect(inc.mode).toBe("full");
    expect(inc.ptyFds).toContainEqual({ pid: ns?.pid, fd, role: "slave", devptsDev: ns?.devptsDev, index });
    await load.release(0);
    const after = (await scanBoth()).inc;
    expect(after.mode).toBe("incremental");
    expect(after.ptyFds.some((held) => held.pid === ns?.pid && held.fd === fd)).toBe(false);
  });

  it("tty times set on a slave show on the next incremental pass", async () => {
    const ns = load.namespaces[1];
    const pty = ns?.ptys[0];
    await load.touch(1, 0, 1_800_000_000, 1_800_000_100);
    const { inc } = await scanBoth();
    expect(inc.mode).toBe("incremental");
    expect(inc.ttyTimes.get(`${ns?.devptsDev}:${pty?.index}`)).toEqual({ atimeMs: 1_800_000_000_000, mtimeMs: 1_800_000_100_000 });
  });

  it("goes full at once when pty.nr says there is a pty it did not find", async () => {
    expect((await scanBoth(load.ptyCount + 1)).inc.mode).toBe("full");
    expect((await scanBoth(load.ptyCount)).inc.mode).toBe("full"); // the gap moved back
    expect((await scanBoth()).inc.mode).toBe("incremental");
  });

  it("goes full once fullRescanEveryMs has passed", async () => {
    clock += 60_000;
    expect((await scanBoth()).inc.mode).toBe("full");
  });
});
