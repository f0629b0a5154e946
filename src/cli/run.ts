// `ptyreaper run`: the long-running service, or one cycle with --once.
import { pino, type Logger } from "pino";
import { createDaemon, type LifecycleNotifier, type Scanner } from "../app.js";
import { loadConfig, withOverrides } from "../config/load.js";
import type { Config } from "../config/types.js";
import { errorMessage, ConfigError, EXIT } from "../errors.js";
import { loadWebConfig, WebConfigReloader } from "../http/webconfig.js";
import { sessionsReport } from "./render.js";
import { parseFlags } from "./flags.js";
import type { CliIo } from "./io.js";

export const RUN_USAGE = "usage: ptyreaper run [--config FILE] [--listen HOST:PORT] [--dry-run] [--once]";

export type StopSignal = "SIGTERM" | "SIGINT";

/** What main.ts provides: process signals, systemd notification, a scanner, a version. */
export interface RunEnvironment {
  onSignal(signal: StopSignal | "SIGHUP", handler: () => void): void;
  notifier: LifecycleNotifier;
  /** Built per config (a worker thread over its procRoot); default in-process. */
  makeScanner?: (config: Config) => Scanner;
  version: string;
  /** Where logs go; stdout by default (the journal under systemd). */
  logDestination?: NodeJS.WritableStream;
}

/** Shutdown must finish within this; pending escalations are logged and abandoned. */
const STOP_DEADLINE_MS = 4_000;

export async function runCommand(args: string[], io: CliIo, runEnv: RunEnvironment): Promise<number> {
  const flags = parseFlags(
    args,
    { config: { type: "string" }, listen: { type: "string" }, "dry-run": { type: "boolean" }, once: { type: "boolean" } },
    RUN_USAGE,
  );
  const configPath = flags.config ?? null;
  const load = (): Config => withOverrides(loadConfig(configPath, io.env), { listen: flags.listen, dryRun: flags["dry-run"] });
  const config = load();
  const web = config.webConfigFile === null ? undefined : loadWebConfig(config.webConfigFile);
  const logger: Logger = pino(
    { level: config.log.level, base: { service: "ptyreaper" }, timestamp: pino.stdTimeFunctions.isoTime },
    // With --once stdout carries the report, so logs go to stderr.
    runEnv.logDestination ?? (flags.once ? process.stderr : process.stdout),
  );
  const daemon = createDaemon({
    config,
    logger,
    version: runEnv.version,
    notifier: runEnv.notifier,
    scanner: runEnv.makeScanner?.(config),
    web,
    webReload: web && config.webConfigFile !== null ? new WebConfigReloader(config.webConfigFile, web) : undefined,
  });

  if (flags.once) {
    const snapshot = await daemon.runOnce();
    await daemon.stop();
    if (!snapshot) return EXIT.failure;
    io.stdout(JSON.stringify(sessionsReport(snapshot.inventory, snapshot.docker, snapshot.takenAtMs, snapshot.decisions), null, 2) + "\n");
    return EXIT.ok;
  }

  try {
    await daemon.start();
  } catch (err) {
    await daemon.stop().catch(() => undefined);
    throw err;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: StopSignal): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, "stopping");
      const deadline = setTimeout(() => {
        logger.error("shutdown took too long; exiting anyway");
        resolve(EXIT.failure);
      }, STOP_DEADLINE_MS);
      deadline.unref();
      daemon.stop().then(
        () => {
          clearTimeout(deadline);
          resolve(EXIT.ok);
        },
        (err: unknown) => {
          logger.error({ err }, "error while stopping");
          clearTimeout(deadline);
          resolve(EXIT.failure);
        },
      );
    };
    runEnv.onSignal("SIGTERM", () => stop("SIGTERM"));
    runEnv.onSignal("SIGINT", () => stop("SIGINT"));
    runEnv.onSignal("SIGHUP", () => {
      try {
        daemon.reload(load());
      } catch (err) {
        const problems = err instanceof ConfigError ? err.problems : [errorMessage(err)];
        logger.error({ problems, config: configPath }, "config reload rejected; the running config stays in force");
      }
    });
  });
}
