// The built `ptyreaper` entry point as a user runs it: help, version, usage errors and config errors.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import bcrypt from "bcryptjs";
import { describe, expect, it } from "vitest";

const MAIN = new URL("../../dist/main.js", import.meta.url).pathname;
const version = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;

function ptyreaper(...args: string[]) {
  const result = spawnSync(process.execPath, [MAIN, ...args], { encoding: "utf8", timeout: 30_000, env: { ...process.env, NOTIFY_SOCKET: "" } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const shellQuote = (text: string): string => `'${text.replace(/'/g, "'\\''")}'`;

function tempConfig(text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), "ptyreaper-cli-")), "config.yaml");
  writeFileSync(path, text);
  return path;
}

describe("ptyreaper command line", () => {
  it.each([["--help"], ["-h"]])("%s prints the usage, the environment and the exit codes, and exits 0", (...args) => {
    const { code, stdout } = ptyreaper(...args);
    expect(code).toBe(0);
    expect(stdout).toContain("usage: ptyreaper <command> [options]");
    expect(stdout).toContain("sessions [--json] [--config FILE]");
    expect(stdout).toContain("install [--root DIR] [--prefix DIR] [--dry-run]");
    expect(stdout).toContain("uninstall [--root DIR] [--prefix DIR] [--purge] [--dry-run]");
    expect(stdout).toMatch(/^ {2}PTYREAPER_MODE +reaper\.mode/m);
    expect(stdout).toMatch(/^ {2}DOCKER_HOST +docker\.socket/m);
    expect(stdout).toMatch(/^ {2}64 +usage error/m);
    expect(stdout).toMatch(/^ {2}78 +config error/m);
  });

  it.each([
    ["run", /^usage: ptyreaper run \[--config FILE\].*--log-format/],
    ["sessions", /^usage: ptyreaper sessions \[--json\] \[--config FILE\]/],
    ["check-config", /^usage: ptyreaper check-config FILE/],
    ["install", /^usage: ptyreaper install \[--root DIR\] \[--prefix DIR\] \[--dry-run\]/],
    ["uninstall", /^usage: ptyreaper uninstall .*--purge/],
  ])("%s --help describes that command only, exit 0", (command, usage) => {
    const { code, stdout } = ptyreaper(command, "--help");
    expect(code).toBe(0);
    expect(stdout).toMatch(usage);
    expect(stdout).not.toContain("usage: ptyreaper <command>");
  });

  it.each([["--version"], ["-V"], ["-v"]])("%s prints the package version and the git revision it was built from", (flag) => {
    const head = execFileSync("git", ["rev-parse", "--short=12", "HEAD"], { encoding: "utf8" }).trim();
    const { code, stdout } = ptyreaper(flag);
    expect(code).toBe(0);
    // Built from this checkout (npm run build): its HEAD, "-dirty" when the tree has changes.
    expect(stdout).toMatch(new RegExp(`^ptyreaper ${version.replace(/\./g, "\\.")} \\(revision ${head}(-dirty)?\\)\n$`));
  });

  it.each([
    [["install", "--prefix", "relative", "--dry-run"], /^ptyreaper: --prefix must be an absolute path, got "relative"; usage: ptyreaper install/],
    [["check-config", "--bogus"], /^ptyreaper: unknown option "--bogus"; usage: ptyreaper check-config FILE\n$/],
    [["run", "--log-format", "xml"], /^ptyreaper: --log-format: expected text or json, got "xml"/],
  ])("%j is a usage error: exit 64, one line", (args, message) => {
    const { code, stderr, stdout } = ptyreaper(...args);
    expect(code).toBe(64);
    expect(stderr).toMatch(message);
    expect(stderr.trim().split("\n")).toHaveLength(1);
    expect(stdout).toBe("");
  });

  it.each([
    ["install --root R | head -1", (root: string) => `${shellQuote(MAIN)} install --root ${shellQuote(root)} | head -1`],
    ["install --dry-run | true", (root: string) => `${shellQuote(MAIN)} install --dry-run --root ${shellQuote(root)} | true`],
  ])("%s: a reader that stops early is no failure (exit 0, no stack trace)", (_name, pipeline) => {
    const root = mkdtempSync(join(tmpdir(), "ptyreaper-epipe-"));
    try {
      const result = spawnSync("bash", ["-c", `set -o pipefail; ${shellQuote(process.execPath)} ${pipeline(root)}`], {
        encoding: "utf8",
        timeout: 60_000,
      });
      expect(result.stderr).not.toMatch(/EPIPE|\n\s+at /);
      expect(result.status).toBe(0);
    } finally {
      spawnSync(process.execPath, [MAIN, "uninstall", "--root", root, "--purge"], { encoding: "utf8" });
      rmSync(root, { recursive: true, force: true });
    }
  });

  it.each([
    [["frobnicate"], /^ptyreaper: unknown command "frobnicate"; see ptyreaper --help\n$/],
    [["--frobnicate"], /^ptyreaper: unknown option "--frobnicate"; see ptyreaper --help\n$/],
    [["sessions", "--frob"], /^ptyreaper: Unknown option '--frob'; usage: ptyreaper sessions \[--json\] \[--config FILE\]\n$/],
    [["run", "extra"], /^ptyreaper: Unexpected argument 'extra'; usage: ptyreaper run/],
    [["run", "--config"], /^ptyreaper: Option '--config <value>' argument missing; usage: ptyreaper run/],
  ])("%j is a one-line usage error with exit 64", (args, message) => {
    const { code, stderr, stdout } = ptyreaper(...args);
    expect(code).toBe(64);
    expect(stderr).toMatch(message);
    expect(stderr.trim().split("\n")).toHaveLength(1);
    expect(stdout).toBe("");
  });

  it("a broken config stops run with one line per problem and exit 78, before anything starts", () => {
    const path = tempConfig("pollInterval: soon\npolicy:\n  idelTimeout: 4h\n");
    const { code, stderr, stdout } = ptyreaper("run", "--config", path, "--once");
    expect(code).toBe(78);
    expect(stdout).toBe("");
    const lines = stderr.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines.every((line) => line.startsWith(`ptyreaper: ${path}: `))).toBe(true);
    expect(stderr).toMatch(/pollInterval: .*"soon"/);
    expect(stderr).toMatch(/policy\.idelTimeout: unknown key.*idleTimeout/);
    expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it("a missing config file is one line and exit 78", () => {
    const { code, stderr } = ptyreaper("run", "--config", "/nonexistent/ptyreaper.yaml", "--once");
    expect(code).toBe(78);
    expect(stderr.trim().split("\n")).toHaveLength(1);
    expect(stderr).toContain("/nonexistent/ptyreaper.yaml");
  });

  it("a bad --listen is a config error naming the flag", () => {
    const { code, stderr } = ptyreaper("run", "--listen", "nowhere", "--once");
    expect(code).toBe(78);
    expect(stderr).toMatch(/^ptyreaper: command line: --listen: /);
    expect(stderr.trim().split("\n")).toHaveLength(1);
  });

  it("--log-format text writes readable lines, not JSON", () => {
    const { code, stdout, stderr } = ptyreaper(
      "run",
      "--config",
      "config/ptyreaper.yaml",
      "--once",
      "--listen",
      "127.0.0.1:0",
      "--log-format",
      "text",
      "--dry-run",
    );
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toHaveProperty("pty");
    const lines = stderr.trim().split("\n").filter(Boolean);
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines.filter((l) => !l.startsWith(" "))) {
      expect(() => JSON.parse(line) as unknown).toThrow();
      expect(line).toMatch(/^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] (TRACE|DEBUG|INFO|WARN|ERROR|FATAL)/);
    }
  });

  it("run --once prints one cycle's sessions report on the shipped config", () => {
    const { code, stdout, stderr } = ptyreaper("run", "--config", "config/ptyreaper.yaml", "--once", "--listen", "127.0.0.1:0");
    expect(code).toBe(0);
    // Logs are JSON lines on stderr; stdout is the report alone.
    for (const line of stderr.trim().split("\n").filter(Boolean)) expect(() => JSON.parse(line) as unknown).not.toThrow();
    const report = JSON.parse(stdout) as { pty: { allocated: number; containerCapacity: number } };
    expect(report.pty.containerCapacity).toBeGreaterThan(0);
  });

  describe("hash-password", () => {
    it("hashes one piped line for basic_auth_users, with the cost asked for", async () => {
      const result = spawnSync(process.execPath, [MAIN, "hash-password", "--cost", "4"], {
        input: "correct horse\n",
        encoding: "utf8",
        timeout: 30_000,
      });
      expect(result.stderr).toBe("");
      expect(result.status).toBe(0);
      expect(result.stdout).toMatch(/^\$2b\$04\$[./A-Za-z0-9]{53}\n$/);
      expect(await bcrypt.compare("correct horse", result.stdout.trim())).toBe(true);
    });

    it("on a terminal prompts on stderr and does not echo what is typed", async () => {
      // A real pty: the child waits for the prompt before typing, so the tty cannot echo ahead of raw mode.
      const typed = "hunter2-typed";
      const driver = [
        "import os, pty, sys",
        "pid, fd = pty.fork()",
        "if pid == 0: os.execv(sys.argv[1], [sys.argv[1], sys.argv[2], 'hash-password', '--cost', '4'])",
        "out = b''",
        "while b'not echoed' not in out: out += os.read(fd, 1024)",
        "os.write(fd, sys.argv[3].encode() + b'\\r')",
        "while True:",
        "    try: chunk = os.read(fd, 1024)",
        "    except OSError: break",
        "    if not chunk: break",
        "    out += chunk",
        "_, status = os.waitpid(pid, 0)",
        "sys.stdout.write(out.decode())",
        "sys.exit(os.waitstatus_to_exitcode(status))",
      ].join("\n");
      const result = spawnSync("python3", ["-c", driver, process.execPath, MAIN, typed], { encoding: "utf8", timeout: 30_000 });
      expect(result.status).toBe(0);
      expect(result.stdout).toContain("password (not echoed): ");
      expect(result.stdout).not.toContain(typed);
      const hash = /\$2b\$04\$[./A-Za-z0-9]{53}/.exec(result.stdout)?.[0] ?? "";
      expect(await bcrypt.compare(typed, hash)).toBe(true);
    });

    it.each([
      [["--cost", "3"], "x\n", /^ptyreaper: --cost must be a whole number from 4 to 31, got "3"; usage: ptyreaper hash-password/],
      [[], "", /^ptyreaper: the password is empty \(read from standard input\)$/],
      [[], "a\nb\n", /^ptyreaper: the password spans several lines/],
      [[], `${"x".repeat(73)}\n`, /^ptyreaper: the password is 73 bytes; bcrypt uses only the first 72/],
    ])("refuses %j with one line and exit 64", (args, input, message) => {
      const result = spawnSync(process.execPath, [MAIN, "hash-password", ...args], { input, encoding: "utf8", timeout: 30_000 });
      expect(result.stdout).toBe("");
      expect(result.stderr.trim()).toMatch(message);
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
      expect(result.status).toBe(64);
    });
  });
});
