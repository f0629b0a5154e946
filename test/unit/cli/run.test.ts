// `ptyreaper run` through its command function: the startup line, reload metrics, a taken port, the default config.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { runCommand, type RunEnvironment, type StopSignal } from "../../../src/cli/run.js";
import type { CliIo } from "../../../src/cli/io.js";
import { PtyreaperError } from "../../../src/errors.js";

const dir = mkdtempSync(join(tmpdir(), "ptyreaper-run-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A small fixture /proc: a scan of the real one would hold the event loop on a busy host. */
const PROC = new URL("../../fixtures/proc/mixed-host", import.meta.url).pathname;

/** Docker off and a short interval: these tests are about the command, not the engine. */
function config(name: string, extra = ""): string {
  const path = join(dir, name);
  writeFileSync(path, `pollInterval: 1s\nlisten: 127.0.0.1:0\nprocRoot: ${PROC}\ndocker: {enabled: false}\n${extra}`);
  return path;
}

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

function harness(defaultConfigPath: string | null = null) {
  const lines: string[] = [];
  let out = "";
  const handlers = new Map<string, () => void>();
  const io: CliIo = { stdout: (t) => (out += t), stderr: () => undefined, env: {}, cwd: dir, defaultConfigPath };
  const runEnv: RunEnvironment = {
    onSignal: (signal, handler) => handlers.set(signal, handler),
    notifier: { ready() {}, watchdog() {}, stopping() {}, status() {}, watchdogIntervalMs: null, flush: () => Promise.resolve(), close() {} },
    version: "9.9.9 (revision test)",
    logDestination: new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(...chunk.toString().split("\n").filter(Boolean));
        done();
      },
    }),
  };
  return {
    io,
    runEnv,
    out: () => out,
    logs: (): LogLine[] => lines.map((l) => JSON.parse(l) as LogLine),
    signal: (name: StopSignal | "SIGHUP") => handlers.get(name)?.(),
  };
}

async function waitFor<T>(get: () => T | undefined | null | false, what: string): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const value = get();
    if (value) return value;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function metric(address: string, name: string): Promise<string[]> {
  const body = await (await fetch(`${address}/metrics`)).text();
  return body.split("\n").filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `));
}

/** /metrics serves one text for up to a second: wait for the next one to carry the change. */
async function metricBecomes(address: string, name: string, want: string[]): Promise<string[]> {
  let got: string[] = [];
  for (let i = 0; i < 40; i++) {
    got = await metric(address, name);
    if (JSON.stringify(got) === JSON.stringify(want)) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return got;
}

describe("run", () => {
  it("logs version, config file, policy and a readable pollInterval at start; reload success and failure show in metrics", async () => {
    const path = config("reload.yaml");
    const h = harness();
    const running = runCommand(["--config", path], h.io, h.runEnv);
    const started = await waitFor(() => h.logs().find((l) => l.msg === "ptyreaper started"), "the startup line");
    expect(started).toMatchObject({ version: "9.9.9 (revision test)", config: path, mode: "enforce", pollInterval: "1s", docker: "disabled" });
    expect(started.policy).toMatch(
      /^enforce; idleTimeout 4h \(input and output\), maxAge off, minAge 1m, orphanGrace 2m, pressure 0\.8\/0\.7 after 10m idle, grace 10s, at most 20 per cycle$/,
    );
    const address = String(started.address);
    expect(await metric(address, "ptyreaper_config_last_reload_successful")).toEqual(["ptyreaper_config_last_reload_successful 1"]);
    expect(await metric(address, "ptyreaper_config_info")).toEqual([`ptyreaper_config_info{mode="enforce",file="${path}"} 1`]);
    expect(await metric(address, "ptyreaper_runtime_enabled")).toEqual(['ptyreaper_runtime_enabled{runtime="docker"} 0']);
    expect(await metric(address, "ptyreaper_docker_up")).toEqual([]);
    const loadedAt = Number((await metric(address, "ptyreaper_config_last_reload_success_timestamp_seconds"))[0]?.split(" ")[1]);
    expect(loadedAt).toBeGreaterThan(Date.now() / 1000 - 60);

    writeFileSync(path, "pollInterval: soon\n");
    h.signal("SIGHUP");
    const failed = ["ptyreaper_config_last_reload_successful 0"];
    expect(await metricBecomes(address, "ptyreaper_config_last_reload_successful", failed)).toEqual(failed);
    const rejected = h.logs().find((l) => l.msg.startsWith("config reload rejected"));
    expect(rejected?.problems).toEqual([expect.stringMatching(/^pollInterval: /)]);
    expect(rejected?.source).toBe(path);

    writeFileSync(path, `pollInterval: 1s\nlisten: 127.0.0.1:0\nprocRoot: ${PROC}\ndocker: {enabled: false}\nreaper: {mode: dry-run}\n`);
    h.signal("SIGHUP");
    const dryRun = [`ptyreaper_config_info{mode="dry-run",file="${path}"} 1`];
    expect(await metricBecomes(address, "ptyreaper_config_info", dryRun)).toEqual(dryRun);
    expect(await metric(address, "ptyreaper_config_last_reload_successful")).toEqual(["ptyreaper_config_last_reload_successful 1"]);

    h.signal("SIGTERM");
    expect(await running).toBe(0);
  }, 30_000);

  it("a taken port: the error is logged before anything else about stopping, and it is PTYR_LISTEN (exit 78)", async () => {
    const first = harness();
    const running = runCommand(["--config", config("first.yaml")], first.io, first.runEnv);
    const started = await waitFor(() => first.logs().find((l) => l.msg === "ptyreaper started"), "the first daemon");
    const taken = String(started.address).replace("http://", "");

    const second = harness();
    const attempt = runCommand(["--config", config("second.yaml"), "--listen", taken], second.io, second.runEnv);
    await expect(attempt).rejects.toBeInstanceOf(PtyreaperError);
    await expect(attempt).rejects.toMatchObject({ code: "PTYR_LISTEN" });
    await expect(attempt).rejects.toThrow(new RegExp(`^cannot listen on ${taken}: .*EADDRINUSE`));
    const messages = second.logs().map((l) => l.msg);
    // Setup lines may come first (the signal method on a host without pidfds); nothing about stopping may.
    const cannot = messages.indexOf("cannot start");
    expect(cannot).toBeGreaterThanOrEqual(0);
    expect(messages.slice(0, cannot).filter((m) => /stop/i.test(m))).toEqual([]);
    expect(second.logs()[cannot]?.err).toMatchObject({ code: "EADDRINUSE" });
    expect(cannot).toBeLessThan(messages.indexOf("ptyreaper stopped"));

    first.signal("SIGTERM");
    expect(await running).toBe(0);
  }, 30_000);

  it("without --config, uses the installed config when it exists; --config wins over it", async () => {
    const installed = config("installed.yaml", "reaper: {mode: dry-run}\n");
    const h = harness(installed);
    expect(await runCommand(["--once"], h.io, h.runEnv)).toBe(0);
    const report = JSON.parse(h.out()) as { docker: { available: boolean; error: string } };
    // The built-in defaults would have Docker enabled: "disabled in config" proves the file was read.
    expect(report.docker.error).toMatch(/disabled in config/);

    const other = join(dir, "other.yaml");
    writeFileSync(other, `procRoot: ${PROC}\ndocker: {enabled: true, socket: /nonexistent/docker.sock, timeout: 200ms}\n`);
    const flagged = harness(installed);
    expect(await runCommand(["--once", "--config", other, "--listen", "127.0.0.1:0"], flagged.io, flagged.runEnv)).toBe(0);
    expect((JSON.parse(flagged.out()) as { docker: { error: string } }).docker.error).toMatch(/nonexistent/);
  }, 30_000);

  it("names the environment variables that override the file", async () => {
    const h = harness();
    const io = { ...h.io, env: { PTYREAPER_MODE: "dry-run" } };
    expect(await runCommand(["--once", "--config", config("env.yaml")], io, h.runEnv)).toBe(0);
    expect(h.logs().find((l) => l.msg === "environment overrides in force")?.overrides).toEqual(["PTYREAPER_MODE=dry-run (reaper.mode)"]);
  });

  it("rejects an unknown --log-format as a usage error", async () => {
    const h = harness();
    await expect(runCommand(["--log-format", "yaml"], h.io, h.runEnv)).rejects.toThrow(/--log-format: expected text or json, got "yaml"/);
  });
});
