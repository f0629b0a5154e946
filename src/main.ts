#!/usr/bin/env node
// Entry point: argv, env, signals and exit codes live here and nowhere else.
// Each command is imported when it runs, so `--help` or `check-config` never load Docker, HTTP or metrics code.
import { existsSync, readFileSync } from "node:fs";
import { COMMAND_HELP, DEFAULT_CONFIG_PATH, HELP } from "./cli/help.js";
import type { CliIo, Command } from "./cli/io.js";
import { ConfigError, EXIT, PtyreaperError, UsageError, errorMessage } from "./errors.js";
import type { ScanWorker } from "./procfs/worker.js";

/** "0.1.0 (revision 1a2b3c4d5e6f)": the revision file is written by `npm run build`; "unknown" without git. */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
  let revision = "unknown";
  try {
    revision = readFileSync(new URL("./revision.txt", import.meta.url), "utf8").trim() || "unknown";
  } catch {
    // Built by plain tsc, without scripts/write-revision.mjs: the revision is not known.
  }
  return `${pkg.version} (revision ${revision})`;
}

// A reader that went away (`ptyreaper install | head -1`) is not a failure of the command: the
// rest of the output is dropped and the command still finishes what it started.
const open = { stdout: true, stderr: true };
for (const name of ["stdout", "stderr"] as const) {
  process[name].on("error", (err: NodeJS.ErrnoException) => {
    open[name] = false;
    if (err.code !== "EPIPE" && name === "stdout" && open.stderr) process.stderr.write(`ptyreaper: cannot write to stdout: ${err.message}\n`);
  });
}

const io: CliIo = {
  stdout: (text) => void (open.stdout && process.stdout.write(text)),
  stderr: (text) => void (open.stderr && process.stderr.write(text)),
  env: process.env,
  cwd: process.cwd(),
  defaultConfigPath: existsSync(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : null,
  readSecret: (prompt) => readSecret(prompt),
};

/** Standard input: all of it when piped; one line without echo on a terminal (raw mode, so nothing is shown). */
function readSecret(prompt: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    return new Promise((resolve, reject) => {
      let text = "";
      stdin.setEncoding("utf8");
      stdin.on("data", (chunk: string) => (text += chunk));
      stdin.on("end", () => resolve(text));
      stdin.on("error", reject);
    });
  }
  return new Promise((resolve, reject) => {
    let line = "";
    // Echo off before the prompt shows: whatever is typed once it is visible must not appear.
    stdin.setRawMode(true);
    io.stderr(prompt);
    stdin.setEncoding("utf8");
    const done = (error: Error | null): void => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.removeListener("data", onData);
      io.stderr("\n");
      if (error) reject(error);
      else resolve(line);
    };
    const onData = (chunk: string): void => {
      for (const char of chunk) {
        if (char === "\r" || char === "\n") return done(null);
        if (char === "\u0003" || char === "\u0004") return done(new UsageError("no password given"));
        if (char === "\u007f" || char === "\b") line = line.slice(0, -1);
        else line += char;
      }
    };
    stdin.on("data", onData);
    stdin.resume();
  });
}

/** The daemon's scanner, once made: its threads decide how the process may exit. */
let scanWorker: ScanWorker | null = null;

const commands: Record<string, Command> = {
  sessions: async (args, cli) => (await import("./cli/sessions.js")).sessionsCommand(args, cli),
  "check-config": async (args, cli) => (await import("./cli/check-config.js")).checkConfigCommand(args, cli),
  install: async (args, cli) => (await import("./cli/install.js")).installCommand(args, cli),
  uninstall: async (args, cli) => (await import("./cli/install.js")).uninstallCommand(args, cli),
  "hash-password": async (args, cli) => (await import("./cli/hash-password.js")).hashPasswordCommand(args, cli),
  run: async (args, cli) => {
    const [{ runCommand }, { createNotifier }, { ScanWorker }] = await Promise.all([
      import("./cli/run.js"),
      import("./systemd/notify.js"),
      import("./procfs/worker.js"),
    ]);
    return runCommand(args, cli, {
      onSignal: (signal, handler) => process.on(signal, handler),
      notifier: createNotifier(process.env),
      // A full scan takes hundreds of ms on a busy host: off the event loop, so scrapes stay fast.
      makeScanner: (config) => (scanWorker = new ScanWorker({ procRoot: config.procRoot, fullRescanEveryMs: config.fullScanInterval })),
      version: version(),
      isTerminal: (stream) => process[stream].isTTY === true,
    });
  },
};

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === "-h" || first === "--help" || first === "help") {
    io.stdout(HELP);
    return first === undefined ? EXIT.usage : EXIT.ok;
  }
  if (first === "-V" || first === "-v" || first === "--version") {
    io.stdout(`ptyreaper ${version()}\n`);
    return EXIT.ok;
  }
  const command = commands[first];
  if (!command) throw new UsageError(`unknown ${first.startsWith("-") ? "option" : "command"} "${first}"; see ptyreaper --help`);
  if (rest.includes("-h") || rest.includes("--help")) {
    io.stdout(COMMAND_HELP[first] ?? HELP);
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
  if (err instanceof PtyreaperError && (err.code === "PTYR_CONFIG_READ" || err.code === "PTYR_LISTEN")) return EXIT.config;
  return EXIT.failure;
}

// A throw no guard caught leaves the daemon in a state nobody knows: say so in one line, exit
// non-zero, and let systemd (Restart=on-failure) start a clean process. Never carry on.
const fatal =
  (what: string) =>
  (err: unknown): void => {
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
    // A scan thread blocked in a /proc read would hold the exit forever: Node joins threads on exit.
    if (scanWorker && scanWorker.stuckThreads > 0) {
      process.stderr.write(`ptyreaper: ${scanWorker.stuckThreads} scan thread(s) blocked in a /proc read; exiting without them\n`);
      // Loaded here, not at start: only the daemon has scan threads (the CLI starts fast without it).
      void import("./procfs/native.js").then(({ exitWithoutJoining }) => exitWithoutJoining(code));
    }
  },
  (err: unknown) => {
    process.exitCode = exitCodeFor(err);
  },
);
