// The lifecycle a fault or safety test file shares: a private dockerd for the whole file, daemons on it, and their teardown.
import { afterAll, afterEach, beforeAll } from "vitest";
import { cleanupAll } from "./index.js";
import { startDaemon, type RunningDaemon } from "./daemon.js";
import { startPrivateDockerd, type PrivateDockerd, type PrivateDockerdOptions } from "./dockerd.js";

export interface PrivateEngineOptions {
  /**
   * When the daemons are stopped, `cleanup` runs and the harness ends what it started (cleanupAll):
   * "each" after every test, "file" (the default) once after the file's last test.
   */
  teardown?: "each" | "file";
  /** The file's own teardown (host ptys, helper processes): after the daemons stop, before cleanupAll. */
  cleanup?: () => Promise<void>;
  /** Timeout of each teardown hook. */
  teardownTimeoutMs?: number;
  /** Passed to startPrivateDockerd (a TCP listener on loopback). */
  engine?: PrivateDockerdOptions;
}

export interface PrivateEngineTestbed {
  /** The running engine; there from beforeAll on. */
  readonly engine: PrivateDockerd;
  /** Starts `ptyreaper run` with DOCKER_HOST on this engine (unless `env` names another); teardown stops it. */
  startDaemon(yaml: string, extraArgs?: string[], env?: Record<string, string>): Promise<RunningDaemon>;
}

/**
 * Registers the hooks: beforeAll starts a private dockerd tagged `tag` and points DOCKER_HOST (so the
 * harness's containers) at it; teardown stops the daemons, runs `cleanup`, cleanupAll, and finally destroys
 * the engine. Every teardown step runs even when one before it fails, so the engine never outlives the file.
 */
export function usePrivateEngine(tag: string, options: PrivateEngineOptions = {}): PrivateEngineTestbed {
  const { teardown = "file", cleanup, teardownTimeoutMs = 120_000 } = options;
  let engine: PrivateDockerd | null = null;
  const daemons = trackDaemons();

  beforeAll(async () => {
    engine = await startPrivateDockerd(tag, options.engine);
    process.env.DOCKER_HOST = engine.host;
  });

  const fileCleanup = cleanup ? [cleanup] : [];
  const harnessCleanup = [
    // A test that stopped the engine and failed before starting it again: only the engine can remove its containers.
    async () => {
      if (engine && engine.pid === null) await engine.start();
    },
    cleanupAll,
  ];

  if (teardown === "each") afterEach(() => runAll([...daemons.stopSteps(), ...fileCleanup, ...harnessCleanup]), teardownTimeoutMs);
  afterAll(
    () => runAll([...(teardown === "file" ? [...daemons.stopSteps(), ...fileCleanup] : []), ...harnessCleanup, async () => engine?.destroy()]),
    teardownTimeoutMs,
  );

  const running = (): PrivateDockerd => {
    if (!engine) throw new Error(`private dockerd "${tag}" is not running: its beforeAll has not run or failed`);
    return engine;
  };

  return {
    get engine() {
      return running();
    },
    startDaemon: (yaml, extraArgs = [], env = {}) => daemons.start(yaml, extraArgs, { DOCKER_HOST: running().host, ...env }),
  };
}

/** Starts daemons and remembers them, so that a teardown can stop each still running. */
export function trackDaemons(): {
  start(yaml: string, extraArgs?: string[], env?: Record<string, string>): Promise<RunningDaemon>;
  /** A step for each daemon started since the last call that is still running. */
  stopSteps(): (() => Promise<unknown>)[];
} {
  const daemons: RunningDaemon[] = [];
  return {
    async start(yaml, extraArgs = [], env = {}) {
      const daemon = await startDaemon(yaml, extraArgs, env);
      daemons.push(daemon);
      return daemon;
    },
    stopSteps: () =>
      daemons
        .splice(0)
        // One that exited on its own (a test's SIGTERM) has nothing left to stop.
        .filter((d) => d.child.exitCode === null && d.child.signalCode === null)
        .map((d) => () => d.stop()),
  };
}

/** Runs every step in order, even after one fails; then throws what failed. */
export async function runAll(steps: readonly (() => Promise<unknown>)[]): Promise<void> {
  const failures: unknown[] = [];
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      failures.push(err);
    }
  }
  if (failures.length === 1) throw failures[0];
  if (failures.length > 1) throw new AggregateError(failures, `teardown: ${failures.map((err) => (err as Error).message).join("; ")}`);
}
