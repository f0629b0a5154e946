// ScanWorker on the real kernel: worker threads running the built scanner over a load of real processes, and what happens when a thread dies.
import { execFileSync } from "node:child_process";
import { closeSync, constants, existsSync, mkdtempSync, openSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scanDigest } from "../../bench/compare.js";
import { SyntheticHost } from "../../bench/load.js";
import { PtyreaperError } from "../../src/errors.js";
import { ProcFs } from "../../src/procfs/procfs.js";
import { scanProc } from "../../src/procfs/scan.js";
import { ScanWorker } from "../../src/procfs/worker.js";
import { waitFor } from "./support/index.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

// Worker threads cannot load TypeScript: under vitest ScanWorker runs the build in dist/ (npm test
// builds first). A build older than the sources would test stale code, so that fails here.
function assertFreshBuild(): void {
  const built = join(ROOT, "dist/procfs/worker.js");
  if (!existsSync(built)) throw new Error(`${built} is missing: run npm run build`);
  for (const source of ["worker.ts", "incremental.ts", "scan.ts", "procfs.ts", "parse.ts"]) {
    const path = join(ROOT, "src/procfs", source);
    const js = join(ROOT, "dist/procfs", source.replace(/\.ts$/, ".js"));
    if (!existsSync(js) || statSync(js).mtimeMs < statSync(path).mtimeMs) throw new Error(`${js} is older than ${path}: run npm run build`);
  }
}

/** A stand-in thread's answer to `request`, as the scan thread sends a whole scan (ScanDelta); `ppids`: pid, parent, … */
const wholeAnswer = (ppids: string): string =>
  `{ whole: true, processes: [], processesGone: [], ppids: ${ppids}, ppidsGone: [], ptyFds: { set: [], gone: [] }, ttyTimes: [], ttyTimesGone: [],
     rest: { initDevpts: new Map(), unreadablePids: [], vanished: 0, parseErrors: {}, bootTimeSec: 1, mode: request.mode } }`;

describe("ScanWorker over a load of real processes (real kernel, unshare, python3, worker threads)", () => {
  let load: SyntheticHost;
  let procfs: ProcFs;
  const workers: ScanWorker[] = [];
  let clock = 0;

  beforeAll(async () => {
    assertFreshBuild();
    load = await SyntheticHost.create({ procs: 40, fds: 12, ptys: 6, namespaces: 2, isolated: true });
    procfs = new ProcFs(load.procRoot);
  });

  afterAll(async () => {
    await Promise.all(workers.map((worker) => worker.close()));
    await load?.close();
  });

  const make = (threads: number): ScanWorker => {
    const worker = new ScanWorker({ procRoot: load.procRoot, threads, now: () => clock });
    workers.push(worker);
    return worker;
  };
  const initPids = (): number[] => load.namespaces.map((ns) => ns.pid);
  const full = () => scanDigest(scanProc(procfs, { initPids: initPids() }));

  it.each([1, 2])("with %i thread(s): a full pass, then incremental ones, each equal to scanProc in this thread", async (threads) => {
    const worker = make(threads);
    const first = await worker.scan({ ptyAllocated: load.ptyCount, initPids: initPids() });
    expect(first.mode).toBe("full");
    // Maps came back through structured cloning intact.
    expect(first.processes).toBeInstanceOf(Map);
    expect(first.initDevpts.get(load.namespaces[0]?.pid ?? -1)).toBe(load.namespaces[0]?.devptsDev);
    expect(scanDigest(first)).toEqual(full());

    await load.spawnHolders(3);
    await load.openPtys(1, 2);
    clock += 1_000;
    const second = await worker.scan({ ptyAllocated: load.ptyCount, initPids: initPids() });
    expect(second.mode).toBe("incremental");
    expect(scanDigest(second)).toEqual(full());

    await load.closePtys(1, 2);
    clock += 1_000;
    const third = await worker.scan({ ptyAllocated: load.ptyCount + 1, initPids: initPids() });
    expect(third.mode).toBe("full"); // pty.nr disagreed
    expect(scanDigest(third)).toEqual(full());
  });

  it("answers several calls in order, one pass at a time", async () => {
    const worker = make(2);
    const results = await Promise.all([1, 2, 3].map(() => worker.scan({ ptyAllocated: load.ptyCount, initPids: initPids() })));
    expect(results.map((result) => result.mode)).toEqual(["full", "incremental", "incremental"]);
    worker.requestFullPass();
    expect((await worker.scan({ ptyAllocated: load.ptyCount, initPids: initPids() })).mode).toBe("full");
  });

  it("reports a pass that fails in the thread with a stable code, and keeps the thread", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ptyreaper-noproc-"));
    rmSync(dir, { recursive: true });
    const worker = new ScanWorker({ procRoot: dir, now: () => clock });
    workers.push(worker);
    for (let attempt = 0; attempt < 2; attempt++) {
      const err = await worker.scan({ ptyAllocated: 0 }).catch((error: unknown) => error);
      expect(err).toBeInstanceOf(PtyreaperError);
      expect(err).toMatchObject({ code: "PTYR_SCAN_WORKER", message: expect.stringContaining("pass failed: ENOENT") as string });
    }
  });

  it("a thread that dies fails its call with a clear error and is restarted, with a full pass, on the next", async () => {
    // A stand-in thread speaking the same protocol: it answers, exits on its second request, and answers again once restarted.
    const dir = mkdtempSync(join(tmpdir(), "ptyreaper-crash-"));
    const answered = JSON.stringify(join(dir, "answered"));
    const crashed = JSON.stringify(join(dir, "crashed"));
    const source = `
      import { existsSync, writeFileSync } from "node:fs";
      import { parentPort } from "node:worker_threads";
      parentPort.on("message", (request) => {
        if (existsSync(${answered}) && !existsSync(${crashed})) { writeFileSync(${crashed}, ""); process.exit(3); }
        writeFileSync(${answered}, "");
        parentPort.postMessage({ id: request.id, ok: true, delta: ${wholeAnswer("[7, 1]")} });
      });`;
    const worker = new ScanWorker({ procRoot: "/proc", now: () => clock, workerUrl: new URL(`data:text/javascript,${encodeURIComponent(source)}`) });
    workers.push(worker);
    try {
      expect((await worker.scan({ ptyAllocated: 0 })).mode).toBe("full");
      const err = await worker.scan({ ptyAllocated: 0 }).catch((error: unknown) => error);
      expect(err).toBeInstanceOf(PtyreaperError);
      expect(err).toMatchObject({ code: "PTYR_SCAN_WORKER", message: expect.stringContaining("exit code 3") as string });
      const after = await worker.scan({ ptyAllocated: 0 });
      expect(after.mode).toBe("full"); // the new thread knows nothing: not an incremental pass
      expect(after.ppids.get(7)).toBe(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a thread whose answer cannot be applied (a delta before any whole scan) fails that call and is replaced", async () => {
    // A stand-in thread: its first thread answers with a partial delta; the thread that replaces it answers whole.
    const dir = mkdtempSync(join(tmpdir(), "ptyreaper-step-"));
    const first = JSON.stringify(join(dir, "first"));
    const source = `
      import { existsSync, writeFileSync } from "node:fs";
      import { parentPort } from "node:worker_threads";
      const replaced = existsSync(${first});
      writeFileSync(${first}, "");
      parentPort.on("message", (request) => {
        const delta = ${wholeAnswer("[7, 1]")};
        parentPort.postMessage({ id: request.id, ok: true, delta: { ...delta, whole: replaced } });
      });`;
    const worker = new ScanWorker({ procRoot: "/proc", now: () => clock, workerUrl: new URL(`data:text/javascript,${encodeURIComponent(source)}`) });
    workers.push(worker);
    try {
      await expect(worker.scan({ ptyAllocated: 0 })).rejects.toMatchObject({
        code: "PTYR_SCAN_WORKER",
        message: expect.stringContaining("before any whole scan") as string,
      });
      const after = await worker.scan({ ptyAllocated: 0 });
      expect(after.mode).toBe("full");
      expect(after.ppids.get(7)).toBe(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("after a pass that failed in a thread, the next pass is full", async () => {
    // A stand-in thread: answers its first request, fails its second, answers the rest.
    const source = `
      import { parentPort } from "node:worker_threads";
      let requests = 0;
      parentPort.on("message", (request) => {
        requests++;
        if (requests === 2) return parentPort.postMessage({ id: request.id, ok: false, error: { message: "EIO: i/o error", code: "EIO" } });
        parentPort.postMessage({ id: request.id, ok: true, delta: ${wholeAnswer("[]")} });
      });`;
    const worker = new ScanWorker({ procRoot: "/proc", now: () => clock, workerUrl: new URL(`data:text/javascript,${encodeURIComponent(source)}`) });
    workers.push(worker);
    expect((await worker.scan({ ptyAllocated: 0 })).mode).toBe("full");
    await expect(worker.scan({ ptyAllocated: 0 })).rejects.toMatchObject({
      code: "PTYR_SCAN_WORKER",
      message: expect.stringContaining("pass failed: EIO") as string,
    });
    expect((await worker.scan({ ptyAllocated: 0 })).mode).toBe("full");
    expect((await worker.scan({ ptyAllocated: 0 })).mode).toBe("incremental");
  });

  it("abandons a pass past its deadline, replaces the thread (next pass full), and close() does not wait for the blocked one", async () => {
    // A stand-in thread: the first one blocks in read(2) on a FIFO nobody writes; later ones answer.
    const dir = mkdtempSync(join(tmpdir(), "ptyreaper-deadline-"));
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    const blocked = JSON.stringify(join(dir, "blocked"));
    const source = `
      import { existsSync, readFileSync, writeFileSync } from "node:fs";
      import { parentPort } from "node:worker_threads";
      parentPort.on("message", (request) => {
        if (!existsSync(${blocked})) { writeFileSync(${blocked}, ""); readFileSync(${JSON.stringify(fifo)}); }
        parentPort.postMessage({ id: request.id, ok: true, delta: ${wholeAnswer("[7, 1]")} });
      });`;
    const worker = new ScanWorker({
      procRoot: "/proc",
      now: () => clock,
      passDeadlineMs: 500,
      workerUrl: new URL(`data:text/javascript,${encodeURIComponent(source)}`),
    });
    let writer: number | null = null;
    try {
      await expect(worker.scan({ ptyAllocated: 0 })).rejects.toMatchObject({
        code: "PTYR_SCAN_WORKER",
        message: expect.stringContaining("500 ms deadline") as string,
      });
      const next = await worker.scan({ ptyAllocated: 0 });
      expect(next.mode).toBe("full");
      expect(next.ppids.get(7)).toBe(1);
      expect((await worker.scan({ ptyAllocated: 0 })).mode).toBe("incremental");
      await worker.close(); // resolves although one thread is still in read(2)
      expect(worker.stuckThreads).toBe(1);
    } finally {
      writer = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK); // the reader is there: this cannot fail with ENXIO
      closeSync(writer); // EOF: the blocked thread returns and ends
      await waitFor(() => worker.stuckThreads === 0, 10_000, "the released thread to end");
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses to scan after close()", async () => {
    const worker = make(1);
    await worker.scan({ ptyAllocated: load.ptyCount, initPids: initPids() });
    await worker.close();
    await expect(worker.scan({ ptyAllocated: load.ptyCount })).rejects.toMatchObject({ code: "PTYR_SCAN_WORKER" });
  });
});
