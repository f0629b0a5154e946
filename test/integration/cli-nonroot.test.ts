// `ptyreaper sessions` as an unprivileged user on the real kernel: unreadable processes are counted
// and reported, Docker's refusal is explained, and nothing is fatal.
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupAll, hostPty, type HostPty } from "./support/index.js";
import type { SessionsReport } from "../../src/domain/report.js";

const SESSIONS = new URL("../../dist/cli/sessions.js", import.meta.url).href;

/**
 * Loads the built command as root (the checkout may sit where nobody cannot read), then drops to
 * uid/gid 65534 before it touches /proc or the Docker socket.
 */
function asNobody(...args: string[]) {
  const script = `
    const { sessionsCommand } = await import(${JSON.stringify(SESSIONS)});
    process.setgroups([]); process.setgid(65534); process.setuid(65534);
    const io = { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t), env: process.env, cwd: process.cwd() };
    process.exitCode = await sessionsCommand(${JSON.stringify(args.slice(1))}, io);`;
  const result = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 });
  if (result.error) throw result.error;
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("ptyreaper sessions without root", () => {
  let pty: HostPty;
  beforeAll(async () => {
    pty = await hostPty(); // held by root: invisible to nobody
  });
  afterAll(async () => {
    await cleanupAll();
  });

  it("counts unreadable processes and says Docker refused, exiting 0", () => {
    const { code, stdout, stderr } = asNobody("sessions", "--json");
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as SessionsReport;
    expect(report.unreadableProcesses).toBeGreaterThan(0);
    expect(report.ptys.some((p) => p.slavePids.includes(pty.slavePid))).toBe(false);
    expect(report.pty.allocated).toBeGreaterThanOrEqual(1);
    expect(report.pty.discrepancy).toMatch(/could not be read/);
    expect(report.docker.available).toBe(false);
    expect(report.docker.error).toMatch(/permission denied|not found|refused/);
  });

  it("says so in one line under the table", () => {
    const { code, stdout } = asNobody("sessions");
    expect(code).toBe(0);
    expect(stdout).toMatch(/^\(\d+ process\(es\) could not be read: ptyreaper needs root to see every holder\)$/m);
  });
});
