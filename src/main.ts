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
import { exitWithoutJoining } from "./procfs/native.js";

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

/** The daemon's scanner, once made: its threads decide how the process may exit. */
let scanWorker: ScanWorker | null = null;

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
      makeScanner: (config) => (scanWorker = new ScanWorker({ procRoot: config.procRoot })),
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

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // A scan thread blocked in a /proc read would hold the exit forever: Node joins threads on exit.
    if (scanWorker && scanWorker.stuckThreads > 0) {
      process.stderr.write(`ptyreaper: ${scanWorker.stuckThreads} scan thread(s) blocked in a /proc read; exiting without them\n`);
      exitWithoutJoining(code);
    }
  },
  (err: unknown) => {
    process.exitCode = exitCodeFor(err);
  },
);
