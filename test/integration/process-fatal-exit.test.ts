// The built entry point as a real Node process: an error no guard caught ends it with one fatal line and a non-zero exit (systemd restarts it).
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const MAIN = new URL("../../dist/main.js", import.meta.url).pathname;

/**
 * Runs `ptyreaper --version` with a preloaded module that fails right after the version is written:
 * main.ts has set its handlers by then (they come before main() runs), and nothing else keeps Node busy.
 */
function runWithLateFailure(failure: string) {
  const preload = join(mkdtempSync(join(tmpdir(), "ptyreaper-fatal-")), "fail-later.mjs");
  writeFileSync(
    preload,
    `const write = process.stdout.write.bind(process.stdout);\n` +
      `process.stdout.write = (...args) => { const done = write(...args); setTimeout(() => { ${failure} }, 20); return done; };\n`,
  );
  const result = spawnSync(process.execPath, ["--import", preload, MAIN, "--version"], {
    encoding: "utf8",
    timeout: 30_000,
    env: { ...process.env, NOTIFY_SOCKET: "" },
  });
  return { code: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

describe("process-level handlers in main.ts", () => {
  it("a control run: without a failure --version exits 0 and prints nothing on stderr", () => {
    const run = runWithLateFailure("/* nothing */");
    expect(run).toMatchObject({ code: 0, stderr: "" });
  });

  it.each([
    ["unhandled promise rejection", "void Promise.reject(new Error('injected rejection'));", "injected rejection"],
    ["uncaught exception", "throw new Error('injected throw');", "injected throw"],
  ])("%s: one fatal line with the stack, exit 1", (what, failure, message) => {
    const run = runWithLateFailure(failure);
    expect(run.stdout).toMatch(/^ptyreaper \d/);
    expect(run.code).toBe(1);
    const lines = run.stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^ptyreaper: fatal: ${what}, exiting for a restart: "Error: ${message}\\\\n +at `));
  });
});
