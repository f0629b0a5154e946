// Steady cycles read no process that held no pty at the last full pass (issue 20), so a process that starts holding a
// session's pty between two full passes is missing from the inventory. The reaper does not depend on it: before any
// signal it reads the session's holders afresh. On the real kernel and a private Docker engine, with full passes 10
// minutes apart: an exec's background job that opens its session's pty, and a process of the container's own that
// opens it, both after the daemon's full pass and both unseen by its steady cycles. The job is signalled with its
// session; the container's process is refused, never signalled.
import { readFileSync, readlinkSync } from "node:fs";
import { cgroupMembers } from "../../src/procfs/cgroupfs.js";
import { describe, expect, it } from "vitest";
import { descendantsOf, dockerCli, isAlive, testContainerName, waitFor } from "./support/index.js";
import { execDetached, type DetachedExec } from "./support/dockerd.js";
import type { RunningDaemon } from "./support/daemon.js";
import { usePrivateEngine } from "./support/private-engine.js";

const CONFIG = `
pollInterval: 1s
fullScanInterval: 10m
policy:
  idleTimeout: 20s
  minAge: 0s
reaper:
  mode: enforce
  grace: 1s
log:
  level: debug
`;

type LogLine = Record<string, unknown>;
interface Report {
  ptys: { devptsDev: string; index: number; execId: string | null; slavePids: number[] }[];
  sessions: { execId: string; pid: number }[];
}

const created: string[] = [];

async function runContainer(suffix: string, cmd: string[]): Promise<string> {
  const name = testContainerName(suffix);
  await dockerCli(["rm", "-f", name]).catch(() => undefined);
  created.push(name);
  await dockerCli(["run", "-d", "--network", "none", "--name", name, "ptyreaper-test/busybox:latest", ...cmd]);
  return name;
}

/**
 * Waits, as a process with no pty, for /tmp/go to hold a path; then opens the pty it names on fd 8, writes a newline
 * to it (its output restarts the session's idle clock, so the session is judged stale only after this process holds
 * it), and becomes a sleep (busybox: shell builtins only). It waits for content (-s), not for the file (-e): the
 * shell's `> /tmp/go` creates the file before `cat` has written into it, and a read in between found it empty.
 */
const OPEN_ON_GO = 'while [ ! -s /tmp/go ]; do sleep 0.2; done; read p < /tmp/go; exec 8<>"$p"; echo >&8; exec sleep 100000';

/** The pid whose fd 8 names /dev/pts/`index`, among `pids`; null while none does. */
function openerOf(pids: readonly number[], index: number): number | null {
  for (const pid of pids) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/8`).endsWith(`/pts/${index}`)) return pid;
    } catch {
      continue; // no fd 8 (yet), or gone
    }
  }
  return null;
}

function ptyIndexOf(pid: number): number {
  const link = readlinkSync(`/proc/${pid}/fd/0`);
  const index = Number(/\/pts\/(\d+)$/.exec(link)?.[1]);
  if (!Number.isInteger(index)) throw new Error(`fd 0 of ${pid} is ${link}, not a pty`);
  return index;
}

const report = async (d: RunningDaemon): Promise<Report> => JSON.parse((await d.get("/sessions")).body) as Report;

describe("holders that appear between full passes (real kernel, private dockerd, enforce, fullScanInterval 10m)", () => {
  const testbed = usePrivateEngine("steady", {
    cleanup: async () => {
      if (created.length > 0) await dockerCli(["rm", "-f", ...created.splice(0)]).catch(() => undefined);
    },
  });

  it("signals an exec's job that opened its pty since the last full pass, and refuses a container process that did", async () => {
    const socket = testbed.engine.socket;
    // A: the exec's shell starts a job with no pty (stdio on /dev/null) that opens the session's pty on /tmp/go. It
    // ignores SIGHUP, so neither the kernel's hangup when the shell ends nor the reaper's first signal ends it.
    const jobName = await runContainer("st-job", ["sleep", "1000000"]);
    const job: DetachedExec = await execDetached(socket, jobName, [
      "sh",
      "-c",
      `(exec </dev/null >/dev/null 2>&1; trap "" HUP; ${OPEN_ON_GO}) & exec sh`,
    ]);
    // B: the container's main program started a process with no pty before any exec; on /tmp/go it opens the pty named there.
    const mainName = await runContainer("st-main", ["sh", "-c", `(${OPEN_ON_GO}) </dev/null >/dev/null 2>&1 & exec sleep 1000000`]);
    const idle: DetachedExec = await execDetached(socket, mainName, ["sh"]);
    const indexes = { job: ptyIndexOf(job.pid), idle: ptyIndexOf(idle.pid) };

    const d = await testbed.startDaemon(CONFIG);
    await waitFor(
      async () => {
        const r = await report(d);
        return [job, idle].every((e) => r.sessions.some((s) => s.execId === e.execId)) ? r : null;
      },
      30_000,
      "both execs to be sessions",
      250,
    );
    expect(await d.metric("ptyreaper_poll_duration_seconds_count")).toBeGreaterThanOrEqual(1);
    // The first cycle was the full pass; the next ones are steady. Now the two processes open the ptys.
    for (const [name, index] of [
      [jobName, indexes.job],
      [mainName, indexes.idle],
    ] as const)
      await dockerCli(["exec", name, "sh", "-c", `echo /dev/pts/${index} > /tmp/go.new && cat /tmp/go.new > /tmp/go`]);
    const jobOpener = await waitFor(() => openerOf(descendantsOf(job.pid), indexes.job), 20_000, "the exec's job to open its pty");
    const mainPid = Number((await dockerCli(["inspect", "--format", "{{.State.Pid}}", mainName])).trim());
    const mainOpener = await waitFor(() => openerOf(descendantsOf(mainPid), indexes.idle), 20_000, "the container's process to open the exec's pty");

    // Two steady cycles later neither is among the inventory's holders: no full pass has read them.
    await d.cycles(2);
    const steady = await report(d);
    const holdersOf = (r: Report, e: DetachedExec): number[] => r.ptys.find((p) => p.execId === e.execId)?.slavePids ?? [];
    expect(holdersOf(steady, job)).not.toContain(jobOpener);
    expect(holdersOf(steady, idle)).not.toContain(mainOpener);
    expect(await d.metric("ptyreaper_poll_duration_seconds_count")).toBeGreaterThanOrEqual(3);
    // Where the reaper looks instead: the container's cgroup lists its processes, the job among them.
    const jobMain = Number((await dockerCli(["inspect", "--format", "{{.State.Pid}}", jobName])).trim());
    const listed = cgroupMembers(readFileSync(`/proc/${jobMain}/cgroup`, "utf8"));
    expect(listed).toEqual(expect.arrayContaining([jobMain, job.pid, jobOpener]));

    // A: reaped, the job among the processes signalled (SIGTERM ends it).
    const reaped = await waitFor(
      () => d.logs().find((l: LogLine) => l.msg === "reaped exec session" && l.execId === job.execId) ?? null,
      120_000,
      "the job's session to be reaped",
      500,
    );
    expect(reaped.execId).toBe(job.execId);
    // The escalation as the daemon logged it, for a run that fails below.
    console.log(JSON.stringify(d.logs().filter((l: LogLine) => l.execId === job.execId && typeof l.msg === "string" && l.level !== 20)));
    const signalledPids = d
      .logs()
      .filter((l: LogLine) => l.msg === "signalled exec session" && l.execId === job.execId)
      .flatMap((l) => l.pids as number[]);
    expect(signalledPids).toContain(jobOpener);
    expect(isAlive(jobOpener)).toBe(false);
    expect(isAlive(job.pid)).toBe(false);

    // B: the exec's shell is signalled; the container's process holding its pty is refused, never signalled.
    const refused = await waitFor(
      () =>
        d
          .logs()
          .find((l: LogLine) => l.msg === "refused to signal a holder of the session's pty" && l.execId === idle.execId && l.target === mainOpener) ??
        null,
      120_000,
      "the container's process to be refused",
      500,
    );
    expect(refused.refusal).toMatch(/^(container_process|not_in_session)$/);
    await waitFor(() => (!isAlive(idle.pid) ? true : null), 60_000, "the idle exec's shell to end");
    for (const line of d.logs().filter((l: LogLine) => l.msg === "signalled exec session")) {
      expect(line.pids as number[], JSON.stringify(line)).not.toContain(mainOpener);
      expect(line.pids as number[], JSON.stringify(line)).not.toContain(mainPid);
    }
    expect(isAlive(mainOpener)).toBe(true);
    expect(await d.metric("ptyreaper_reap_refusals_total", { reason: refused.refusal as string, runtime: "docker" })).toBeGreaterThanOrEqual(1);
  }, 300_000);
});
