// bcrypt compares on worker threads with a cap on how many wait: a password storm costs those threads, never the event loop.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import bcrypt from "bcryptjs";
import { PtyreaperError } from "../errors.js";

/** Over the cap: the compare was not run. The caller answers at once (429) rather than queue. */
export class BcryptBusyError extends PtyreaperError {
  constructor(readonly inFlight: number) {
    super("PTYR_AUTH_BUSY", `${inFlight} bcrypt compares already in flight`);
  }
}

export interface BcryptPoolOptions {
  /**
   * Threads. Default 1: on a small host a second one would take the core the poll loop and the scan
   * worker share, and a scraper's credentials are checked once and then cached.
   */
  threads?: number;
  /**
   * Compares running or waiting, across threads. Default 4: at cost 10 (~110 ms with bcryptjs) the
   * last one waits under half a second, at cost 12 under two.
   */
  maxInFlight?: number;
  /** The thread script; default this module, compiled (under vitest: the build's copy in dist/, as the scan worker). */
  workerUrl?: URL;
  /**
   * A thread with nothing to do for this long ends (default 60 s): a cached scraper needs none, so
   * its ~10 MB are given back after the first check or a storm, and the next check starts one again.
   */
  idleMs?: number;
}

/** bcryptjs' heap needs are tiny; the thread's RSS (~10 MB) is V8 itself. */
const BCRYPT_THREAD_HEAP = { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 };

interface CompareRequest {
  id: number;
  password: string;
  hash: string;
}
type CompareReply = { id: number; same: boolean } | { id: number; error: string };

interface ThreadData {
  ptyreaperBcryptWorker: true;
}

class BcryptThread {
  readonly worker: Worker;
  readonly pending = new Map<number, { resolve: (same: boolean) => void; reject: (err: Error) => void }>();
  dead = false;
  private idleTimer: NodeJS.Timeout | null = null;

  constructor(
    url: URL,
    private readonly idleMs: number,
  ) {
    const data: ThreadData = { ptyreaperBcryptWorker: true };
    this.worker = new Worker(url, { workerData: data, resourceLimits: BCRYPT_THREAD_HEAP, name: "bcrypt" });
    // Idle threads never keep the process alive; the server's close() ends them.
    this.worker.unref();
    this.worker.on("message", (reply: CompareReply) => {
      const waiter = this.pending.get(reply.id);
      if (!waiter) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) this.endWhenIdle();
      if ("error" in reply) waiter.reject(new PtyreaperError("PTYR_AUTH_WORKER", reply.error));
      else waiter.resolve(reply.same);
    });
    const fail = (err: Error): void => {
      this.dead = true;
      for (const waiter of this.pending.values())
        waiter.reject(new PtyreaperError("PTYR_AUTH_WORKER", `bcrypt thread failed: ${err.message}`, { cause: err }));
      this.pending.clear();
    };
    this.worker.on("error", fail);
    this.worker.on("exit", (code) => fail(new Error(`exited with code ${code}`)));
  }

  send(request: CompareRequest, waiter: { resolve: (same: boolean) => void; reject: (err: Error) => void }): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    this.pending.set(request.id, waiter);
    this.worker.postMessage(request);
  }

  private endWhenIdle(): void {
    this.idleTimer = setTimeout(() => {
      if (this.pending.size > 0) return;
      this.dead = true; // the pool starts a new one for the next compare
      void this.worker.terminate();
    }, this.idleMs);
    this.idleTimer.unref();
  }

  stop(): Promise<number> {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    return this.worker.terminate();
  }
}

/**
 * Runs bcrypt compares on `threads` worker threads, started at the first compare (a daemon without
 * basic auth starts none). At most `maxInFlight` compares run or wait; beyond that compare() fails at
 * once with BcryptBusyError, so a storm of wrong passwords is refused in microseconds instead of
 * queueing without bound.
 */
export class BcryptPool {
  private readonly threadCount: number;
  readonly maxInFlight: number;
  private readonly url: URL | null;
  private readonly idleMs: number;
  private threads: BcryptThread[] = [];
  private nextId = 1;
  private inFlight = 0;
  private closed = false;

  constructor(options: BcryptPoolOptions = {}) {
    this.threadCount = Math.max(1, Math.floor(options.threads ?? 1));
    this.maxInFlight = Math.max(1, Math.floor(options.maxInFlight ?? 4));
    this.url = options.workerUrl ?? null;
    this.idleMs = options.idleMs ?? 60_000;
  }

  /** Threads running now, for tests. */
  get threadsRunning(): number {
    return this.threads.filter((t) => !t.dead).length;
  }

  compare(password: string, hash: string): Promise<boolean> {
    if (this.closed) return Promise.reject(new PtyreaperError("PTYR_AUTH_WORKER", "bcrypt pool closed"));
    if (this.inFlight >= this.maxInFlight) return Promise.reject(new BcryptBusyError(this.inFlight));
    let thread: BcryptThread;
    try {
      thread = this.leastBusy();
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err))); // no thread script: the caller answers 500
    }
    const id = this.nextId++;
    this.inFlight++;
    return new Promise<boolean>((resolve, reject) => {
      thread.send({ id, password, hash }, { resolve, reject });
    }).finally(() => {
      this.inFlight--;
    });
  }

  /** Ends the threads; compares still waiting fail. */
  async close(): Promise<void> {
    this.closed = true;
    const threads = this.threads;
    this.threads = [];
    await Promise.all(threads.map((t) => t.stop()));
  }

  private leastBusy(): BcryptThread {
    this.threads = this.threads.filter((t) => !t.dead);
    if (this.threads.length < this.threadCount) {
      const made = new BcryptThread(this.url ?? defaultWorkerUrl(), this.idleMs);
      this.threads.push(made);
      return made;
    }
    let best = this.threads[0] as BcryptThread;
    for (const t of this.threads) if (t.pending.size < best.pending.size) best = t;
    return best;
  }
}

function defaultWorkerUrl(): URL {
  const here = new URL(import.meta.url);
  if (!here.pathname.endsWith(".ts")) return here;
  const built = new URL("../../dist/http/bcrypt-pool.js", here);
  if (!existsSync(fileURLToPath(built))) {
    throw new PtyreaperError("PTYR_AUTH_WORKER", `${fileURLToPath(built)} is missing: a worker thread runs the build (npm run build)`);
  }
  return built;
}

/** The thread's side: one compare per message, in order. */
function serveCompares(): void {
  const port = parentPort;
  if (!port) return;
  port.on("message", (request: CompareRequest) => {
    let reply: CompareReply;
    try {
      reply = { id: request.id, same: bcrypt.compareSync(request.password, request.hash) };
    } catch (err) {
      reply = { id: request.id, error: err instanceof Error ? err.message : String(err) };
    }
    port.postMessage(reply);
  });
}

if (!isMainThread && (workerData as Partial<ThreadData> | null)?.ptyreaperBcryptWorker === true) serveCompares();
