// The /proc scan in worker threads, so the daemon's event loop keeps answering while a pass reads; a pass that never ends is abandoned.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { ptyKey, type ProcScan } from "../domain/types.js";
import { PtyreaperError } from "../errors.js";
import { RescanPolicy, scanWithPolicy, DEFAULT_FULL_RESCAN_EVERY_MS, type ModalScan, type ScanMode } from "./incremental.js";
import { bpfFinder } from "./native.js";
import { ProcFs } from "./procfs.js";
import { IncrementalScanner, mergeTimes, type ScanOptions } from "./scan.js";
import { DeltaReceiver, DeltaSender, type ScanDelta } from "./scan-delta.js";

/**
 * What one pass may spend reading processes before it stops and reports what it has (see
 * IncrementalScanner): a cycle completes whatever a container does to its fd tables or argv.
 */
export const DEFAULT_PASS_BUDGET_MS = 2_000;
/**
 * A pass not answered by then is abandoned and its thread replaced: the budget bounds the reads
 * between processes, this bounds one read that never returns. Under systemd's 60 s watchdog.
 */
export const DEFAULT_PASS_DEADLINE_MS = 20_000;
/** How long close() waits for a thread to end; one blocked in a /proc read does not. */
const TERMINATE_WAIT_MS = 500;

export interface ScanWorkerOptions {
  procRoot: string;
  /** A full pass at least this often (config fullScanInterval). Default DEFAULT_FULL_RESCAN_EVERY_MS. */
  fullRescanEveryMs?: number;
  /**
   * Threads sharing /proc between them (pid % threads). Default 1: the native reader already reads
   * each batch on NATIVE_THREADS threads of its own (readlinkat from a /proc/PID/fd dirfd, which
   * scales). More of these help only the JS reader, and little: its full-path lookups under /proc
   * contend in the kernel (measured on Linux 6.18, 2 cpus: 1.0–1.5× for 2). Each costs ~15 MB.
   */
  threads?: number;
  now?: () => number;
  /**
   * Whether full passes may use the BPF finder (default true): only where bpfFinder allows it (CAP_BPF
   * and CAP_PERFMON, the object built, the host's pid namespace); otherwise every fd link is read.
   */
  bpfFinder?: boolean;
  /** Default DEFAULT_PASS_BUDGET_MS. */
  passBudgetMs?: number;
  /** Default DEFAULT_PASS_DEADLINE_MS. */
  passDeadlineMs?: number;
  /**
   * The worker script. Default: this module, compiled. Under vitest this module is TypeScript,
   * which a worker thread cannot load, so the default is then the build's copy in dist/ (npm run
   * build first; `npm test` does).
   */
  workerUrl?: URL;
}

/**
 * A full pass by the JS reader makes ~20 MB of short-lived strings (a link text and a path per fd). Left alone,
 * V8 grows the thread's nursery to 32 MB and lets the old generation fill with each pass's
 * result before collecting it: ~40 MB more RSS, a third of the daemon's budget. A small nursery
 * and an old-generation ceiling far above what the scanner keeps (a few MB per 10k processes)
 * make it collect early (measured: 4 vs 2 MB nursery, 64 to 256 MB ceiling, all within noise).
 * Reaching the ceiling ends the thread, which is restarted on the next scan.
 */
const SCAN_THREAD_HEAP = { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 256 };

interface PassRequest {
  id: number;
  mode: ScanMode;
  initPids: number[];
  wholeArgvPids: number[];
  budgetMs: number;
}

type PassReply = { id: number; ok: true; delta: ScanDelta } | { id: number; ok: false; error: { message: string; code?: string; stack?: string } };

interface ThreadData {
  ptyreaperScanWorker: true;
  procRoot: string;
  partition: { index: number; count: number } | null;
  bpfFinder: boolean;
}

/** One worker thread and the passes waiting on it. */
class ScanThread {
  readonly worker: Worker;
  dead: Error | null = null;
  /** The thread has ended (a terminate() that never ends means it is blocked in the kernel). */
  exited = false;
  private readonly pending = new Map<number, { resolve: (scan: ModalScan) => void; reject: (err: Error) => void }>();
  private nextId = 1;
  /** The thread's last answer, which its next one (a delta) is applied to. */
  private readonly received = new DeltaReceiver();

  constructor(url: URL, data: ThreadData, label: string) {
    this.worker = new Worker(url, { workerData: data, resourceLimits: SCAN_THREAD_HEAP });
    this.worker.unref(); // an idle scanner must not keep the process alive
    this.worker.on("message", (reply: PassReply) => {
      const waiter = this.pending.get(reply.id);
      if (!waiter) return;
      this.pending.delete(reply.id);
      if (reply.ok) {
        let scan: ModalScan;
        try {
          scan = this.received.apply(reply.delta);
        } catch (err) {
          // Out of step with the thread (it cannot happen while replies keep their order): start over with a new thread.
          waiter.reject(new PtyreaperError("PTYR_SCAN_WORKER", `${label}: ${(err as Error).message}`, { cause: err }));
          this.fail("its answers are out of step", err);
          void this.stop(0);
          return;
        }
        waiter.resolve(scan);
      } else {
        const cause = Object.assign(new Error(reply.error.message), { code: reply.error.code, stack: reply.error.stack });
        waiter.reject(new PtyreaperError("PTYR_SCAN_WORKER", `${label}: pass failed: ${reply.error.message}`, { cause }));
      }
    });
    const fail = (reason: string, cause?: unknown): void => {
      if (this.dead) return;
      this.dead = new PtyreaperError("PTYR_SCAN_WORKER", `${label} stopped: ${reason}; it is restarted on the next scan`, { cause });
      for (const waiter of this.pending.values()) waiter.reject(this.dead);
      this.pending.clear();
    };
    this.worker.on("error", (err) => fail(err.message, err));
    this.worker.on("messageerror", (err) => fail(`unreadable reply (${err.message})`, err));
    this.worker.on("exit", (code) => {
      this.exited = true;
      fail(`exit code ${code}`);
    });
    this.fail = fail;
  }

  private readonly fail: (reason: string, cause?: unknown) => void;

  /** A pass not answered within `deadlineMs` fails, and the thread is terminated (the next scan starts another). */
  pass(mode: ScanMode, options: ScanOptions, budgetMs: number, deadlineMs: number): Promise<ModalScan> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    let timer: NodeJS.Timeout | undefined;
    return new Promise<ModalScan>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.ref(); // keep the process alive while a pass is owed
      timer = setTimeout(() => {
        this.fail(`pass took longer than its ${deadlineMs} ms deadline`);
        void this.stop(0);
      }, deadlineMs);
      const request: PassRequest = { id, mode, initPids: [...(options.initPids ?? [])], wholeArgvPids: [...(options.wholeArgvPids ?? [])], budgetMs };
      this.worker.postMessage(request);
    }).finally(() => {
      clearTimeout(timer);
      if (this.pending.size === 0) this.worker.unref();
    });
  }

  /**
   * Fails what is owed and terminates the thread; true when it ended within `waitMs`. A thread
   * blocked in a read cannot end until the read returns: it is left unreferenced, not waited for.
   */
  async stop(waitMs: number): Promise<boolean> {
    this.fail("stopped");
    this.worker.unref();
    if (this.exited) return true;
    const ended = this.worker.terminate().then(
      () => true,
      () => true,
    );
    let timer: NodeJS.Timeout | undefined;
    // Not unref'd: with nothing else left to do, Node would start exiting and wait on the thread forever.
    const waited = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(this.exited), waitMs);
    });
    try {
      return await Promise.race([ended, waited]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * The daemon's scanner: an IncrementalScanner per thread, each over its share of the pids, and
 * here the rescan decision (scanWithPolicy) across all of them, forgotten when a thread restarts.
 * Scans never overlap: a call waits for the last. A pass past its deadline fails and its thread
 * is replaced; close() never waits for a pass.
 */
export class ScanWorker {
  private threads: (ScanThread | null)[];
  private readonly policy: RescanPolicy;
  private readonly url: URL;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** Every thread started, until it has ended: one blocked in the kernel stays here. */
  private readonly started = new Set<ScanThread>();

  constructor(private readonly options: ScanWorkerOptions) {
    const count = Math.max(1, Math.floor(options.threads ?? 1));
    this.threads = Array.from({ length: count }, () => null);
    this.policy = new RescanPolicy(options.fullRescanEveryMs ?? DEFAULT_FULL_RESCAN_EVERY_MS);
    this.url = options.workerUrl ?? defaultWorkerUrl();
  }

  /** `ptyAllocated` is the kernel's pty.nr, read just before. */
  scan(options: ScanOptions & { ptyAllocated: number }): Promise<ModalScan> {
    const run = this.queue.then(() => this.scanNow(options));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** The next scan reads everything (a full pass), whatever the timer says. */
  requestFullPass(): void {
    this.policy.forget();
  }

  /** Fails a scan in progress and ends the threads, waiting for none longer than TERMINATE_WAIT_MS. */
  async close(): Promise<void> {
    this.closed = true;
    this.threads = this.threads.map(() => null);
    await Promise.all([...this.started].map((thread) => thread.stop(TERMINATE_WAIT_MS)));
  }

  /**
   * Threads that have not ended, after close(): blocked in a /proc read. Node joins worker threads
   * on exit, so the entry file must then end the process without joining (exitWithoutJoining).
   */
  get stuckThreads(): number {
    return [...this.started].filter((thread) => !thread.exited).length;
  }

  private async scanNow(options: ScanOptions & { ptyAllocated: number }): Promise<ModalScan> {
    if (this.closed) throw new PtyreaperError("PTYR_SCAN_WORKER", "scan worker closed");
    if (this.startThreads()) this.policy.forget(); // a new thread knows nothing yet: every share must be read in full
    return scanWithPolicy(this.policy, (this.options.now ?? Date.now)(), options.ptyAllocated, (mode) => this.passAll(mode, options));
  }

  /** Starts missing or crashed threads; true when any was (re)started. */
  private startThreads(): boolean {
    let started = false;
    const count = this.threads.length;
    this.threads = this.threads.map((thread, index) => {
      if (thread && !thread.dead) return thread;
      started = true;
      const data: ThreadData = {
        ptyreaperScanWorker: true,
        procRoot: this.options.procRoot,
        partition: count > 1 ? { index, count } : null,
        bpfFinder: this.options.bpfFinder ?? true,
      };
      const made = new ScanThread(this.url, data, count > 1 ? `scan worker ${index + 1}/${count}` : "scan worker");
      this.started.add(made);
      made.worker.once("exit", () => this.started.delete(made));
      return made;
    });
    return started;
  }

  private async passAll(mode: ScanMode, options: ScanOptions): Promise<ModalScan> {
    try {
      const budgetMs = this.options.passBudgetMs ?? DEFAULT_PASS_BUDGET_MS;
      const deadlineMs = this.options.passDeadlineMs ?? DEFAULT_PASS_DEADLINE_MS;
      const parts = await Promise.all(
        this.threads.map((thread) => (thread ? thread.pass(mode, options, budgetMs, deadlineMs) : Promise.reject(new Error("no thread")))),
      );
      return { ...mergeScans(parts), mode };
    } catch (err) {
      this.policy.forget(); // a thread that failed a pass starts over: the next pass is full
      throw err;
    }
  }
}

/** One scan from the shares of several threads (disjoint pids). */
export function mergeScans(parts: readonly ProcScan[]): ProcScan {
  const [first, ...rest] = parts;
  if (!first) throw new Error("mergeScans: nothing to merge");
  if (rest.length === 0) return first;
  const merged: ProcScan = {
    processes: new Map(first.processes),
    ppids: new Map(first.ppids),
    ptyFds: [...first.ptyFds],
    ttyTimes: new Map(first.ttyTimes),
    initDevpts: new Map(first.initDevpts),
    unreadablePids: [...first.unreadablePids],
    vanished: first.vanished,
    parseErrors: { ...first.parseErrors },
    bootTimeSec: first.bootTimeSec,
    ...(first.cut ? { cut: { ...first.cut } } : {}),
    // Every thread decides alike (the same capabilities and object): the first one's outcome speaks for them.
    ...(first.finder !== undefined ? { finder: first.finder } : {}),
    ...(first.pidListing !== undefined ? { pidListing: first.pidListing } : {}),
  };
  for (const part of rest) {
    for (const [pid, info] of part.processes) merged.processes.set(pid, info);
    for (const [pid, ppid] of part.ppids) merged.ppids.set(pid, ppid);
    merged.ptyFds.push(...part.ptyFds);
    for (const fd of part.ptyFds) {
      const times = fd.role === "slave" ? part.ttyTimes.get(ptyKey(fd.devptsDev, fd.index)) : undefined;
      if (times) mergeTimes(merged.ttyTimes, fd.devptsDev, fd.index, times);
    }
    for (const [pid, dev] of part.initDevpts) merged.initDevpts.set(pid, dev);
    merged.unreadablePids.push(...part.unreadablePids);
    merged.vanished += part.vanished;
    for (const [kind, count] of Object.entries(part.parseErrors)) merged.parseErrors[kind] = (merged.parseErrors[kind] ?? 0) + count;
    if (part.cut) merged.cut = { unread: (merged.cut?.unread ?? 0) + part.cut.unread };
  }
  return merged;
}

function defaultWorkerUrl(): URL {
  const here = new URL(import.meta.url);
  if (!here.pathname.endsWith(".ts")) return here;
  const built = new URL("../../dist/procfs/worker.js", here);
  if (!existsSync(fileURLToPath(built))) {
    throw new PtyreaperError("PTYR_SCAN_WORKER", `${fileURLToPath(built)} is missing: a worker thread runs the build (npm run build)`);
  }
  return built;
}

/** The thread's side: answer each pass request with this thread's share of /proc. */
function serveScans(data: ThreadData): void {
  const port = parentPort;
  if (!port) return;
  const finder = data.bpfFinder ? bpfFinder(data.procRoot) : { path: null, reason: "switched off for this scanner" };
  const scanner = new IncrementalScanner(new ProcFs(data.procRoot), {
    now: Date.now,
    finder,
    ...(data.partition ? { partition: data.partition } : {}),
  });
  // Only what changed since the last answer crosses to the main thread (ScanDelta).
  const sender = new DeltaSender();
  port.on("message", (request: PassRequest) => {
    let reply: PassReply;
    try {
      const scan = scanner.pass({ initPids: request.initPids, wholeArgvPids: request.wholeArgvPids }, request.mode, request.budgetMs);
      reply = { id: request.id, ok: true, delta: sender.delta(scan, scanner.parentChanges()) };
    } catch (err) {
      const error = err as Error & { code?: string };
      // A pass that failed half-way may have left partial state: the next one starts over, and is sent whole.
      scanner.forget();
      sender.forget();
      reply = { id: request.id, ok: false, error: { message: error.message, stack: error.stack, ...(error.code ? { code: error.code } : {}) } };
    }
    port.postMessage(reply);
  });
}

if (!isMainThread && (workerData as Partial<ThreadData> | null)?.ptyreaperScanWorker === true) serveScans(workerData as ThreadData);
