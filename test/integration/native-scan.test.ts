// The native fd-link reader (build/Release/ptyscan.node) on the real /proc: same ProcScan as the JS reads, in this thread and in scan threads.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ptyKey, type ProcScan } from "../../src/domain/types.js";
import { WANT_FD_COUNT, WANT_FD_STAT, WANT_LINKS, WANT_STAT, loadNativeFdLinks, type FdLink, type NativeFdLinks } from "../../src/procfs/native.js";
import { mayBePty } from "../../src/procfs/parse.js";
import { ProcFs } from "../../src/procfs/procfs.js";
import { IncrementalScanner, scanProc } from "../../src/procfs/scan.js";
import { ScanWorker } from "../../src/procfs/worker.js";
import { cleanupAll, hostPty, killAndWait, nsPty, procState, python3, startHelper, waitFor } from "./support/index.js";
import { trackProcess } from "./support/track.js";

afterAll(cleanupAll);

/** The addon must be built here (npm ci builds it): a missing one fails every test, loudly. */
function nativeReader(): NativeFdLinks {
  const load = loadNativeFdLinks({ env: {} });
  if (load.reader === null) throw new Error(`native scan helper not loaded: ${load.reason} (run npm ci or npx node-gyp rebuild)`);
  return load.reader;
}

/** What a scan says about the given processes: their pty fds, info, parents, their ptys' times and devpts instances. */
function about(scan: ProcScan, pids: readonly number[]): unknown {
  const mine = new Set(pids);
  const ptyFds = scan.ptyFds.filter((fd) => mine.has(fd.pid)).sort((a, b) => a.pid - b.pid || a.fd - b.fd);
  const keys = [...new Set(ptyFds.map((fd) => ptyKey(fd.devptsDev, fd.index)))].sort();
  return {
    ptyFds,
    processes: pids.map((pid) => scan.processes.get(pid) ?? null),
    ppids: pids.map((pid) => scan.ppids.get(pid) ?? null),
    // With times: the native reader's stat gives them, and idleness is judged by them.
    ttyTimes: keys.filter((key) => scan.ttyTimes.has(key)).map((key) => [key, scan.ttyTimes.get(key)]),
    initDevpts: pids.map((pid) => scan.initDevpts.get(pid) ?? null),
    unreadable: scan.unreadablePids.filter((pid) => mine.has(pid)),
  };
}

describe("native fd-link reader", () => {
  it("loads, and is what a ProcFs over the real /proc uses unless switched off", () => {
    expect(nativeReader()).not.toBeNull();
    expect(new ProcFs("/proc").native).not.toBeNull();
    expect(new ProcFs("/proc", { native: null }).native).toBeNull();
    expect(loadNativeFdLinks({ env: { PTYREAPER_NATIVE_SCAN: "0" } })).toEqual({ reader: null, reason: "PTYREAPER_NATIVE_SCAN=0" });
  });

  it("filters links exactly as mayBePty does (the C mirror of one definition)", () => {
    const root = mkdtempSync(join(tmpdir(), "ptyr-native-"));
    try {
      const targets = [
        "/dev/pts/3",
        "/dev/ptmx",
        "/dev/pts/ptmx",
        "/dev/console",
        "/dev/tty1",
        "/dev/null",
        "pipe:[123]",
        "socket:[9]",
        "anon_inode:[eventfd]",
        "/tmp/pts-notes (deleted)",
        "/opt/ptmx-tool",
        "relative/pts/0",
        "/dev/ttyS0",
        "/var/log/console.log",
        "/",
      ];
      mkdirSync(join(root, "7", "fd"), { recursive: true });
      targets.forEach((target, fd) => symlinkSync(target, join(root, "7", "fd", String(fd))));
      const links = nativeReader().readOne(root, 7);
      const got = [...links].sort((a, b) => Number(a.fd) - Number(b.fd)).map(({ fd, target }) => ({ fd, target }));
      const expected = targets.map((target, fd) => ({ fd: String(fd), target })).filter(({ target }) => mayBePty(target));
      expect(got).toEqual(expected);
      expect(expected.length).toBeGreaterThan(4); // the table exercises both sides of the filter
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("reports a vanished process as ENOENT, per process in a batch, and reads the rest", () => {
    const reader = nativeReader();
    const gone = 0x3fffffff; // above any pid_max
    let thrown: unknown = null;
    try {
      reader.readOne("/proc", gone);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toMatchObject({ code: "ENOENT" });
    const batch = reader.read("/proc", [gone, process.pid], 2);
    expect(batch.get(gone)).toMatchObject({ code: "ENOENT" });
    expect(Array.isArray(batch.get(process.pid))).toBe(true);
  });

  it("reads each process's fd count as the JS reads make it, one thread or many, with or without links", async () => {
    const sleeper = spawn("sleep", ["600"], { stdio: "ignore" });
    trackProcess(sleeper.pid ?? 0, "fd count sleeper", sleeper);
    try {
      const pids = [sleeper.pid ?? 0, process.pid];
      const js = new ProcFs("/proc", { native: null });
      await waitFor(() => (procState(sleeper.pid ?? 0) === "S" ? true : null), 10_000, "sleeper asleep");
      const gone = 0x3fffffff;
      for (const want of [WANT_STAT | WANT_FD_COUNT, WANT_STAT | WANT_FD_COUNT | WANT_LINKS | WANT_FD_STAT]) {
        for (const threads of [1, 2]) {
          const batch = nativeReader().readBatch("/proc", [...pids, gone], threads, want);
          expect(batch.stats.get(sleeper.pid ?? 0)).toBe(js.statText(sleeper.pid ?? 0));
          expect(batch.fdCounts.get(sleeper.pid ?? 0)).toBe(js.fdCount(sleeper.pid ?? 0));
          expect(batch.fdCounts.get(sleeper.pid ?? 0)).toBe(readdirSync(`/proc/${sleeper.pid ?? 0}/fd`).length);
          expect(batch.fdCounts.get(process.pid)).toBeGreaterThan(3);
          expect(batch.fdCounts.has(gone)).toBe(false); // unreadable: the caller reads it and meets the error
          expect(batch.stats.has(gone)).toBe(false);
        }
      }
    } finally {
      await killAndWait(sleeper.pid ?? 0, sleeper);
    }
  });

  it("stats each pty-looking link and reads a master's fdinfo as Node's own calls do", async () => {
    const host = await hostPty();
    try {
      const links = nativeReader().read("/proc", [host.masterPid, host.slavePid], 2);
      let checked = 0;
      for (const pid of [host.masterPid, host.slavePid]) {
        const list = links.get(pid);
        if (!Array.isArray(list)) throw new Error(`no links for ${pid}: ${list instanceof Error ? list.message : "none"}`);
        for (const link of list as readonly FdLink[]) {
          if (!link.stat) continue; // a console or a closed fd: read again in JS
          const st = statSync(`/proc/${pid}/fd/${link.fd}`);
          const { dev, ino, rdev, atimeMs, mtimeMs } = link.stat;
          expect({ dev, ino, rdev, atimeMs, mtimeMs, chr: link.stat.isCharacterDevice() }).toEqual({
            dev: st.dev,
            ino: st.ino,
            rdev: st.rdev,
            atimeMs: st.atimeMs,
            mtimeMs: st.mtimeMs,
            chr: st.isCharacterDevice(),
          });
          // fdinfo only for a master (ptmx): its tty-index is all the scan reads of it.
          const isMaster = link.stat.rdev === statSync("/dev/ptmx").rdev;
          expect(link.fdinfo).toBe(isMaster ? readFileSync(`/proc/${pid}/fdinfo/${link.fd}`, "utf8") : undefined);
          checked++;
        }
      }
      // The master (ptmx, with its tty-index) and the slave (/dev/pts/N) at least.
      expect(checked).toBeGreaterThanOrEqual(2);
    } finally {
      await host.close();
    }
  });

  it("folds fds naming one pty end into one entry with a count, masters apart by index, as the JS reads do", async () => {
    // Two ptys; the slave of the first dup'd 3,000 times, each master dup'd 500 times.
    const script = [
      "import os, pty, sys, time",
      "m1, s1 = pty.openpty(); m2, s2 = pty.openpty()",
      "[os.dup(s1) for _ in range(3000)]; [os.dup(m1) for _ in range(500)]; [os.dup(m2) for _ in range(500)]",
      "print(os.ttyname(s1), os.ttyname(s2), flush=True)",
      "time.sleep(120)",
    ].join("\n");
    const { child, pid, first: names } = await startHelper(python3(), ["-c", script], "dup'd pty holder");
    try {
      const [first, second] = names.split(" ").map((name) => Number(name.split("/").at(-1)));
      const native = scanProc(new ProcFs("/proc", { native: nativeReader() }));
      const js = scanProc(new ProcFs("/proc", { native: null }));
      expect(about(native, [pid])).toEqual(about(js, [pid]));
      const mine = native.ptyFds
        .filter((fd) => fd.pid === pid)
        .map((fd) => `${fd.role} ${fd.index} ×${fd.fdCount ?? 1}`)
        .sort();
      expect(mine).toEqual([`master ${first} ×501`, `master ${second} ×501`, `slave ${first} ×3001`, `slave ${second} ×1`].sort());
    } finally {
      await killAndWait(pid, child);
    }
  });

  it("gives the same ProcScan as the JS reads for host ptys and ptys in private devpts instances", async () => {
    const host = await hostPty();
    const ns = await nsPty({ count: 2 });
    const nsDevtmpfs = await nsPty({ count: 1, ptmx: "/dev/ptmx" });
    const pids = [host.masterPid, host.slavePid, ns.pid, nsDevtmpfs.pid];
    const initPids = [ns.pid];

    const native = scanProc(new ProcFs("/proc", { native: nativeReader() }), { initPids });
    const js = scanProc(new ProcFs("/proc", { native: null }), { initPids });
    expect(about(native, pids)).toEqual(about(js, pids));
    // And the result is right, not only equal: every pty found on its own instance, masters and slaves.
    const found = (scan: ProcScan, pid: number): string[] =>
      scan.ptyFds
        .filter((fd) => fd.pid === pid)
        .map((fd) => `${fd.role} ${fd.devptsDev} ${fd.index}`)
        .sort();
    expect(found(native, ns.pid)).toEqual([
      `master ${ns.devptsDev} 0`,
      `master ${ns.devptsDev} 1`,
      `slave ${ns.devptsDev} 0`,
      `slave ${ns.devptsDev} 1`,
    ]);
    expect(found(native, nsDevtmpfs.pid)).toEqual([`master ${nsDevtmpfs.devptsDev} 0`, `slave ${nsDevtmpfs.devptsDev} 0`]);
    expect(found(native, host.masterPid).some((line) => line.startsWith("master ") && line.endsWith(` ${host.index}`))).toBe(true);
    expect(native.initDevpts.get(ns.pid)).toBe(ns.devptsDev);
    // Processes denied to root are the same ones either way.
    expect(new Set(native.unreadablePids)).toEqual(new Set(js.unreadablePids));

    // The incremental scanner reads one process at a time through the same reader.
    const incremental = new IncrementalScanner(new ProcFs("/proc", { native: nativeReader() }), { now: Date.now });
    expect(about(incremental.pass({ initPids }, "full"), pids)).toEqual(about(js, pids));

    await Promise.all([host.close(), ns.close(), nsDevtmpfs.close()]);
  });

  it("reads asynchronously exactly what it reads synchronously, leaving the JS thread free meanwhile", async () => {
    const ns = await nsPty({ count: 2 });
    const reader = nativeReader();
    const pids = new ProcFs("/proc").pids();
    const want = WANT_STAT | WANT_LINKS | WANT_FD_STAT;
    let turns = 0;
    const ticking = setInterval(() => turns++, 0);
    const pending = reader.readBatchAsync("/proc", pids, 2, want);
    if (pending === null) throw new Error("this build of the addon has no scanFdLinksAsync (npm run install)");
    const early = await pending;
    clearInterval(ticking);
    const now = reader.readBatch("/proc", pids, 2, want);
    // The holder's links, each with its stat and fdinfo, are what the synchronous call reads (times aside: a pty's may move).
    const shape = (links: unknown): unknown =>
      Array.isArray(links)
        ? (links as FdLink[]).map(({ fd, target, count, stat, fdinfo }) => ({
            fd,
            target,
            count,
            dev: stat?.dev,
            ino: stat?.ino,
            rdev: stat?.rdev,
            fdinfo,
          }))
        : links;
    expect(shape(early.links?.get(ns.pid))).toEqual(shape(now.links?.get(ns.pid)));
    expect((early.links?.get(ns.pid) as FdLink[]).length).toBe(4);
    expect(early.stats.get(ns.pid)).toBe(now.stats.get(ns.pid));
    expect(turns).toBeGreaterThan(0); // timers ran while the addon's threads read
    // A root that cannot be opened answers an error per pid, as the synchronous call does.
    const missing = await reader.readBatchAsync("/nonexistent-proc", [1, 2], 2, want);
    expect([...(missing?.links?.values() ?? [])].map((links) => (links as NodeJS.ErrnoException).code)).toEqual(["ENOENT", "ENOENT"]);
    await ns.close();
  });

  it("scanProc with an early read gives the scan it gives without, and reads processes started since", async () => {
    const host = await hostPty();
    const procfs = new ProcFs("/proc", { native: nativeReader() });
    const early = await procfs.batchOfAllAsync(2);
    if (early === null) throw new Error("this build of the addon has no scanFdLinksAsync (npm run install)");
    const ns = await nsPty({ count: 2 }); // started after the early read: the pass must read it itself
    const pids = [host.masterPid, host.slavePid, ns.pid];
    const withEarly = scanProc(procfs, { initPids: [ns.pid] }, early);
    const without = scanProc(new ProcFs("/proc", { native: null }), { initPids: [ns.pid] });
    expect(about(withEarly, pids)).toEqual(about(without, pids));
    const found = withEarly.ptyFds
      .filter((fd) => fd.pid === ns.pid)
      .map((fd) => `${fd.role} ${fd.devptsDev} ${fd.index}`)
      .sort();
    expect(found).toEqual([`master ${ns.devptsDev} 0`, `master ${ns.devptsDev} 1`, `slave ${ns.devptsDev} 0`, `slave ${ns.devptsDev} 1`]);
    expect(withEarly.ptyFds.some((fd) => fd.pid === host.slavePid && fd.role === "slave" && fd.index === host.index)).toBe(true);
    await Promise.all([host.close(), ns.close()]);
  });

  it("loads and reads inside a worker thread (a context-aware addon)", async () => {
    const { Worker } = await import("node:worker_threads");
    const { defaultAddonPath } = await import("../../src/procfs/native.js");
    const code = `
      const { parentPort, workerData } = require("node:worker_threads");
      const addon = require(workerData.path);
      const answer = addon.scanFdLinks("/proc", Int32Array.of(process.pid), ["pts", "ptmx", "console"], 1);
      parentPort.postMessage(Array.from(answer.status));`;
    const worker = new Worker(code, { eval: true, workerData: { path: defaultAddonPath() } });
    const status = await new Promise((resolve, reject) => {
      worker.once("message", resolve);
      worker.once("error", reject);
    });
    await worker.terminate();
    expect(status).toEqual([0]);
  });

  it("works in scan threads, and PTYREAPER_NATIVE_SCAN=0 makes them use the JS reads with the same result", async () => {
    const ns = await nsPty({ count: 2 });
    const scanWith = async (env: string | undefined): Promise<ProcScan> => {
      const saved = process.env.PTYREAPER_NATIVE_SCAN;
      if (env === undefined) delete process.env.PTYREAPER_NATIVE_SCAN;
      else process.env.PTYREAPER_NATIVE_SCAN = env;
      // Threads copy the environment when started. No budget: this compares whole passes, on a machine others load.
      const worker = new ScanWorker({ procRoot: "/proc", threads: 2, passBudgetMs: Number.POSITIVE_INFINITY });
      try {
        return await worker.scan({ ptyAllocated: 0, initPids: [ns.pid] });
      } finally {
        await worker.close();
        if (saved === undefined) delete process.env.PTYREAPER_NATIVE_SCAN;
        else process.env.PTYREAPER_NATIVE_SCAN = saved;
      }
    };
    const native = await scanWith(undefined);
    const js = await scanWith("0");
    expect(about(native, [ns.pid])).toEqual(about(js, [ns.pid]));
    expect(native.ptyFds.filter((fd) => fd.pid === ns.pid)).toHaveLength(4);
    await ns.close();
  });
});
