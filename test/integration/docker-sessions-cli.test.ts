// `ptyreaper sessions` on the real kernel and Docker engine: leaked exec shells, a live session,
// a container's own tty and a host pty, each attributed correctly, totals matching pty/nr.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  attachedExecSession,
  cleanupAll,
  containerPid,
  dockerRunTty,
  hostPty,
  leakExecSession,
  requireDocker,
  sleep,
  startContainer,
  testContainerName,
  type AttachedExecSession,
  type ExecSessionHandle,
  type HostPty,
} from "./support/index.js";
import type { SessionsReport } from "../../src/domain/report.js";

const run = promisify(execFile);
const MAIN = new URL("../../dist/main.js", import.meta.url).pathname;

async function sessionsJson(): Promise<SessionsReport> {
  const { stdout } = await run(process.execPath, [MAIN, "sessions", "--json"], { timeout: 60_000 });
  return JSON.parse(stdout) as SessionsReport;
}

/** The kernel count moves when anything on the host opens a pty: retry until one report is consistent. */
async function consistentReport(): Promise<SessionsReport> {
  let report = await sessionsJson();
  for (let i = 0; i < 5 && report.pty.found !== report.pty.allocated; i++) {
    await sleep(500); // no daemon (the one-shot CLI): a pause for another process's pty opens to settle
    report = await sessionsJson();
  }
  return report;
}

describe("ptyreaper sessions on a real Docker engine", () => {
  const victim = testContainerName("sessions-victim");
  const ttyName = testContainerName("sessions-tty");
  let victimId = "";
  let ttyId = "";
  let leaked: ExecSessionHandle[] = [];
  let live: AttachedExecSession;
  let host: HostPty;

  beforeAll(async () => {
    await requireDocker();
    victimId = await startContainer({ name: victim });
    ttyId = await dockerRunTty(ttyName);
    leaked = [await leakExecSession(victim), await leakExecSession(victim)];
    live = await attachedExecSession(victim);
    host = await hostPty();
  }, 180_000);

  afterAll(async () => {
    await cleanupAll();
  }, 120_000);

  it("finds both leaked shells as exec sessions with their exec id, container and pid", async () => {
    const report = await consistentReport();
    expect(report.docker).toEqual({ available: true, error: null });
    for (const session of leaked) {
      const found = report.sessions.find((s) => s.execId === session.execId);
      expect(found, `session ${session.execId}`).toMatchObject({
        containerId: victimId,
        containerName: victim,
        pid: session.shellPid,
        command: "sh",
      });
      const pty = report.ptys.find((p) => p.execId === session.execId);
      expect(pty?.owner).toBe("exec");
      expect(pty?.slavePids).toContain(session.shellPid);
      expect(pty?.masterPids.length).toBeGreaterThan(0); // the shim
    }
  });

  it("shows the container's own tty as owner container and the host pty as host", async () => {
    const report = await consistentReport();
    const init = await containerPid(ttyName);
    const own = report.ptys.find((p) => p.slavePids.includes(init));
    expect(own).toMatchObject({ owner: "container", containerId: ttyId, containerName: ttyName, execId: null });
    const hostOwned = report.ptys.find((p) => p.slavePids.includes(host.slavePid));
    expect(hostOwned).toMatchObject({ owner: "host", containerId: null, index: host.index });
    expect(hostOwned?.masterPids).toContain(host.masterPid);
  });

  it("counts exactly the ptys the kernel has allocated", async () => {
    const report = await consistentReport();
    expect(report.pty.found).toBe(report.pty.allocated);
    expect(report.ptys.length).toBe(report.pty.allocated);
    expect(report.pty.containerCapacity).toBe(report.pty.max - report.pty.reserve - 1);
  });

  it("idle time grows for leaked shells while a session that gets input stays fresh", async () => {
    const before = await sessionsJson();
    // tty atime moves with 8-second granularity: wait past it while typing into the live session.
    for (let i = 0; i < 6; i++) {
      live.sendInput("true\r");
      await sleep(2_000); // typing pace across the atime granularity: idle time is wall time
    }
    const after = await sessionsJson();
    for (const session of leaked) {
      const a = before.sessions.find((s) => s.execId === session.execId);
      const b = after.sessions.find((s) => s.execId === session.execId);
      expect(b?.idleSeconds).toBeGreaterThanOrEqual((a?.idleSeconds ?? 0) + 10);
    }
    const liveAfter = after.sessions.find((s) => s.execId === live.execId);
    expect(liveAfter?.idleSeconds).toBeLessThanOrEqual(10);
    const leakedAfter = after.sessions.find((s) => s.execId === leaked[0]?.execId);
    expect(leakedAfter?.idleSeconds).toBeGreaterThan(liveAfter?.idleSeconds ?? 0);
  }, 60_000);

  it("prints a w-like table with the kernel usage header", async () => {
    const { stdout } = await run(process.execPath, [MAIN, "sessions"], { timeout: 60_000 });
    const lines = stdout.split("\n");
    expect(lines[0]).toMatch(/^ptys \d+ of \d+, containers can use \d+ \([\d.]+% used\); docker: available$/);
    // A "note:" line comes first when ptys came or went during the scan (other work on the host).
    const header = lines[1]?.startsWith("note: ") ? lines[2] : lines[1];
    expect(header).toMatch(/^CONTAINER\s+EXEC\s+PID\s+TTY\s+IDLE\s+OUT-IDLE\s+AGE\s+OWNER\s+CLIENT\s+COMMAND$/);
    for (const session of leaked) {
      const row = lines.find((l) => l.includes(session.execId.slice(0, 12)));
      expect(row, `row for ${session.execId}`).toBeDefined();
      expect(row).toContain(victim);
      expect(row).toContain(String(session.shellPid));
      // Its client was killed before anything looked: one look cannot tell gone from unknown.
      expect(row).toMatch(/\sexec\s+unknown\s+sh$/);
    }
  });
});
