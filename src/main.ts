#!/usr/bin/env node
// Entry point: argv, env, signals and exit codes live here and nowhere else.
import { readFileSync } from "node:fs";
import { checkConfigCommand } from "./cli/check-config.js";
import { installCommand, uninstallCommand } from "./cli/install.js";
import type { CliIo, Command } from "./cli/io.js";
import { runCommand } from "./cli/run.js";
import { sessionsCommand } from "./cli/sessions.js";
import { ConfigError, EXIT, PtyreaperError, UsageError, errorMessage } from "./errors.js";
import { createNotifier } from "./systemd/notify.js";
import { ScanWorker } from "./procfs/worker.js";

const HELP = `ptyreaper — keeps container hosts from running out of pseudo-terminals

usage: ptyreaper <command> [options]

commands:
  run [--config FILE] [--listen HOST:PORT] [--dry-run] [--once]
                          the daemon: scan, decide, reap, serve /metrics
  sessions [--json] [--config FILE]
                          every pty and the exec session holding it, like w(1)
  check-config FILE       validate a config file (exit 78 when invalid)
  install [--root DIR] [--prefix DIR]
                          install the program, the systemd unit and the default config
  uninstall [--root DIR] [--prefix DIR] [--purge]

options:
  -h, --help              this help
  -V, --version           the version
`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

const io: CliIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
  cwd: process.cwd(),
};

const commands: Record<string, Command> = {
  sessions: sessionsCommand,
  "check-config": checkConfigCommand,
  install: installCommand,
  uninstall: uninstallCommand,
  run: (args) =>
    runCommand(args, io, {
      onSignal: (signal, handler) => process.on(signal, handler),
      notifier: createNotifier(process.env),
      // A full scan takes hundreds of ms on a busy host: off the event loop, so scrapes stay fast.
      makeScanner: (config) => new ScanWorker({ procRoot: config.procRoot }),
      version: version(),
    }),
};

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === "-h" || first === "--help" || first === "help") {
    io.stdout(HELP);
    return first === undefined ? EXIT.usage : EXIT.ok;
  }
  if (first === "-V" || first === "--version") {
    io.stdout(`ptyreaper ${version()}\n`);
    return EXIT.ok;
  }
  const command = commands[first];
  if (!command) throw new UsageError(`unknown ${first.startsWith("-") ? "option" : "command"} "${first}"; see ptyreaper --help`);
  if (rest.includes("-h") || rest.includes("--help")) {
    io.stdout(HELP);
    return EXIT.ok;
  }
  return command(rest, io);
}

/** Every failure ends as one line on stderr and a sysexits code, never a stack trace. */
function exitCodeFor(err: unknown): number {
  if (err instanceof ConfigError) {
    for (const problem of err.problems) io.stderr(`ptyreaper: ${err.source}: ${problem}\n`);
    return EXIT.config;
  }
  io.stderr(`ptyreaper: ${errorMessage(err)}\n`);
  if (err instanceof UsageError) return EXIT.usage;
  if (err instanceof PtyreaperError && err.code === "PTYR_CONFIG_READ") return EXIT.config;
  return EXIT.failure;
}

// A throw no guard caught leaves the daemon in a state nobody knows: say so in one line, exit
// non-zero, and let systemd (Restart=on-failure) start a clean process. Never carry on.
const fatal = (what: string) => (err: unknown): void => {
  try {
    const detail = err instanceof Error ? (err.stack ?? err.message) : String(err);
    io.stderr(`ptyreaper: fatal: ${what}, exiting for a restart: ${JSON.stringify(detail)}\n`);
  } finally {
    // Even when stderr is gone (EPIPE): exit, never loop through this handler.
    process.exit(EXIT.failure);
  }
};
process.on("uncaughtException", fatal("uncaught exception"));
process.on("unhandledRejection", fatal("unhandled promise rejection"));

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.exitCode = exitCodeFor(err);
  },
);
