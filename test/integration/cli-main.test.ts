// The built `ptyreaper` entry point as a user runs it: help, version, usage errors and config errors.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const MAIN = new URL("../../dist/main.js", import.meta.url).pathname;
const version = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;

function ptyreaper(...args: string[]) {
  const result = spawnSync(process.execPath, [MAIN, ...args], { encoding: "utf8", timeout: 30_000, env: { ...process.env, NOTIFY_SOCKET: "" } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

function tempConfig(text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), "ptyreaper-cli-")), "config.yaml");
  writeFileSync(path, text);
  return path;
}

describe("ptyreaper command line", () => {
  it.each([["--help"], ["-h"], ["run", "--help"]])("%s prints the usage and exits 0", (...args) => {
    const { code, stdout } = ptyreaper(...args);
    expect(code).toBe(0);
    expect(stdout).toContain("usage: ptyreaper <command> [options]");
    expect(stdout).toContain("sessions [--json] [--config FILE]");
  });

  it("--version prints the package version", () => {
    expect(ptyreaper("--version")).toMatchObject({ code: 0, stdout: `ptyreaper ${version}\n` });
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

  it("run --once prints one cycle's sessions report on the shipped config", () => {
    const { code, stdout, stderr } = ptyreaper("run", "--config", "config/ptyreaper.yaml", "--once", "--listen", "127.0.0.1:0");
    expect(code).toBe(0);
    // Logs are JSON lines on stderr; stdout is the report alone.
    for (const line of stderr.trim().split("\n").filter(Boolean)) expect(() => JSON.parse(line) as unknown).not.toThrow();
    const report = JSON.parse(stdout) as { pty: { allocated: number; containerCapacity: number } };
    expect(report.pty.containerCapacity).toBeGreaterThan(0);
  });
});
