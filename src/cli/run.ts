// `ptyreaper run`: the long-running service, or one cycle with --once.
import { pino, type DestinationStream, type Logger } from "pino";
import { createDaemon, type Scanner } from "../app.js";
import { appliedOverrides, configPathFor, loadConfig, withOverrides } from "../config/load.js";
import type { Config } from "../config/types.js";
import { errorMessage, ConfigError, EXIT, PtyreaperError, UsageError } from "../errors.js";
import { sessionsReport } from "../domain/report.js";
import { loadWebConfig, WebConfigReloader } from "../http/webconfig.js";
import { parseFlags } from "./flags.js";
import { RUN_USAGE } from "./help.js";
import type { CliIo } from "./io.js";
import type { Notifier } from "../systemd/notify.js";

export { RUN_USAGE };

export type StopSignal = "SIGTERM" | "SIGINT";

/** What main.ts provides: process signals, systemd notification, a scanner, a version. */
export interface RunEnvironment {
  onSignal(signal: StopSignal | "SIGHUP", handler: () => void): void;
  notifier: Notifier;
  /** Built per config (a worker thread over its procRoot); default in-process. */
  makeScanner?: (config: Config) => Scanner;
  version: string;
  /** Where logs go; stdout by default (the journal under systemd). */
  logDestination?: NodeJS.WritableStream;
  /** Whether a standard stream is a terminal: logs are then text for a person, else JSON lines. */
  isTerminal?: (stream: "stdout" | "stderr") => boolean;
}

export type LogFormat = "text" | "json";

/** Listen failures that a restart cannot fix until someone changes the address or frees the port. */
const LISTEN_ERRORS = new Set(["EADDRINUSE", "EADDRNOTAVAIL", "EACCES"]);

/** pino writing JSON lines, or readable text through pino-pretty (loaded only then). */
export async function makeLogger(
  level: Config["log"]["level"],
  format: LogFormat,
  destination: NodeJS.WritableStream | 1 | 2,
  colorize = false,
): Promise<Logger> {
  const options = { level, base: { service: "ptyreaper" }, timestamp: pino.stdTimeFunctions.isoTime };
  if (format === "json") return pino(options, typeof destination === "number" ? pino.destination({ fd: destination, sync: true }) : destination);
  const { default: pretty } = await import("pino-pretty");
  const stream: DestinationStream = pretty({
    destination,
    sync: true,
    colorize,
    translateTime: "SYS:yyyy-mm-dd HH:MM:ss.l",
    ignore: "pid,hostname,service",
  });
  return pino(options, stream);
}

/** Shutdown must finish within this; pending escalations are logged and abandoned. */
const STOP_DEADLINE_MS = 4_000;

export async function runCommand(args: string[], io: CliIo, runEnv: RunEnvironment): Promise<number> {
  const flags = parseFlags(
    args,
    {
      config: { type: "string" },
      listen: { type: "string" },
      "dry-run": { type: "boolean" },
      once: { type: "boolean" },
      "log-format": { type: "string" },
    },
    RUN_USAGE,
  );
  const format = flags["log-format"];
  if (format !== undefined && format !== "text" && format !== "json") {
    throw new UsageError(`--log-format: expected text or json, got ${JSON.stringify(format)}; ${RUN_USAGE}`);
  }
  const configPath = configPathFor(flags.config, io.defaultConfigPath);
  const load = (): Config => withOverrides(loadConfig(configPath, io.env), { listen: flags.listen, dryRun: flags["dry-run"] });
  const config = load();
  const web = config.webConfigFile === null ? undefined : loadWebConfig(config.webConfigFile);
  // With --once stdout carries the report, so logs go to stderr.
  const logStream = flags.once ? "stderr" : "stdout";
  const onTerminal = runEnv.logDestination === undefined && (runEnv.isTerminal?.(logStream) ?? false);
  const logger = await makeLogger(
    config.log.level,
    format ?? (onTerminal ? "text" : "json"),
    runEnv.logDestination ?? (logStream === "stderr" ? 2 : 1),
    onTerminal,
  );
  // Variables that override the file are said once, so that nobody hunts the file for a setting it lacks.
  const overrides = appliedOverrides(config, io.env);
  if (overrides.length > 0) logger.info({ overrides }, "environment overrides in force");
  const daemon = createDaemon({
    config,
    logger,
    version: runEnv.version,
    notifier: runEnv.notifier,
    scanner: runEnv.makeScanner?.(config),
    configPath,
    web,
    webReload: web && config.webConfigFile !== null ? new WebConfigReloader(config.webConfigFile, web) : undefined,
  });

  if (flags.once) {
    const snapshot = await daemon.runOnce();
    await daemon.stop();
    if (!snapshot) return EXIT.failure;
    io.stdout(
      JSON.stringify(
        sessionsReport(snapshot.inventory, snapshot.docker, snapshot.takenAtMs, { decisions: snapshot.decisions, commandLine: "full" }),
        null,
        2,
      ) + "\n",
    );
    return EXIT.ok;
  }

  try {
    await daemon.start();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException | null)?.code;
    const where = `${config.listen.host}:${config.listen.port}`;
    // The cause first: "ptyreaper stopped" must not be the last thing a reader of the journal sees first.
    logger.error({ err, listen: where }, "cannot start");
    await daemon.stop().catch(() => undefined);
    if (code !== undefined && LISTEN_ERRORS.has(code)) {
      // Exit 78: the unit's RestartPreventExitStatus stops systemd from retrying an address that is taken.
      throw new PtyreaperError("PTYR_LISTEN", `cannot listen on ${where}: ${errorMessage(err)} (set listen, PTYREAPER_LISTEN or --listen)`, {
        cause: err,
      });
    }
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
        daemon.metrics.configReloadFailed();
        const problems = err instanceof ConfigError ? err.problems : [errorMessage(err)];
        // source: the file, or "environment" when a variable is at fault.
        const source = err instanceof ConfigError ? err.source : configPath;
        logger.error({ problems, source, config: configPath }, "config reload rejected; the running config stays in force");
      }
    });
  });
}
