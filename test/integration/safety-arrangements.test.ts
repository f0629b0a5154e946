// The arrangements of issue 10 on the real kernel and a private Docker engine, side by side under one daemon in
// enforce mode with a short idleTimeout: --init with a console redirect, a wrapper entrypoint that does not exec,
// an exec that traps HUP/TERM and forks after SIGHUP, two containers on the host's /dev/pts, and --pid=host.
// Each asserts which processes are alive afterwards, which signals they recorded, and which ptys the kernel
// still counts (the daemon's /sessions inventory is the kernel's list of allocated ptys with their holders).
import { execFile } from "node:child_process";
import { readFileSync, readlinkSync, statSync } from "node:fs";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { cmdlineOf, descendantsOf, dockerCli, hostPty, isAlive, testContainerName, waitFor, type HostPty } from "./support/index.js";
import { containerInitPid, execDetached, readRecordedSignals, signalRecorderCmd, type DetachedExec } from "./support/dockerd.js";
import { MAIN, type RunningDaemon } from "./support/daemon.js";
import { usePrivateEngine } from "./support/private-engine.js";

const run = promisify(execFile);

const CONFIG = `
pollInterval: 1s
policy:
  idleTimeout: 20s
  minAge: 0s
reaper:
  mode: enforce
  grace: 1s
  maxPerCycle: 20
log:
  level: debug
`;

type LogLine = Record<string, unknown>;
interface Report {
  ptys: { devptsDev: string; index: number; owner: string; containerName: string | null; execId: string | null; slavePids: number[] }[];
  sessions: { execId: string; containerName: string; pid: number }[];
}

const created: string[] = [];

/** `docker run -d` with extra flags; removed by the file's cleanup. */
async function runContainer(suffix: string, flags: string[], cmd: string[]): Promise<string> {
  const name = testContainerName(suffix);
  await dockerCli(["rm", "-f", name]).catch(() => undefined);
  created.push(name);
  await dockerCli(["run", "-d", "--network", "none", "--name", name, ...flags, "ptyreaper-test/busybox:latest", ...cmd]);
  return name;
}

/** devpts instance ("major:minor", st_dev of the slave, as the daemon keys it) and index of the pty on fd 0 of pid. */
function stdinPty(pid: number): { dev: string; index: number } {
  const link = readlinkSync(`/proc/${pid}/fd/0`);
  const index = Number(/\/pts\/(\d+)$/.exec(link)?.[1]);
  if (!Number.isInteger(index)) throw new Error(`fd 0 of ${pid} is ${link}, not a pty`);
  const st = statSync(`/proc/${pid}/fd/0`);
  const major = Math.floor(st.dev / 256) & 0xfff;
  const minor = (st.dev & 0xff) | (Math.floor(st.dev / 4096) & 0xfff00);
  return { dev: `${major}:${minor}`, index };
}

const report = async (d: RunningDaemon): Promise<Report> => JSON.parse((await d.get("/sessions")).body) as Report;
const signalled = (d: RunningDaemon, execId: string): LogLine[] => d.logs().filter((l) => l.msg === "signalled exec session" && l.execId === execId);
const ended = (d: RunningDaemon, execId: string): LogLine | undefined =>
  d
    .logs()
    .find(
      (l) =>
        l.execId === execId &&
        (l.msg === "reaped exec session" || (l.msg === "failed to reap exec session" && l.retry === false) || l.msg === "exec session not reaped"),
    );
const running = async (name: string): Promise<boolean> => (await dockerCli(["inspect", "--format", "{{.State.Running}}", name])).trim() === "true";

/** The shell's sh -c: a background job writes to the container's console; the exec then becomes an idle shell. */
const CONSOLE_REDIRECT = ["sh", "-c", "sleep 100000 > /proc/1/fd/1 & exec sh"];

describe("issue 10 arrangements (real kernel, private dockerd, enforce)", () => {
  let control: HostPty | null = null;
  const testbed = usePrivateEngine("arrange", {
    cleanup: async () => {
      await control?.close();
      control = null;
      if (created.length > 0) await dockerCli(["rm", "-f", ...created.splice(0)]).catch(() => undefined);
    },
  });

  it("reaps each exec's own pty only: consoles, main processes, inits, other containers and host processes survive", async () => {
    const socket = testbed.engine.socket;
    // 1. --init with a console: docker-init → the recorder loop, both on the console pty.
    const initName = await runContainer("ar-init", ["-t", "--init"], signalRecorderCmd("init-main"));
    // 2. A wrapper entrypoint that does not exec: PID 1 sh waits for the loop it started.
    const [, , recorder] = signalRecorderCmd("wrap-main");
    const wrapName = await runContainer("ar-wrap", ["-t"], ["sh", "-c", `sh -c '${recorder}'; echo wrapper-done`]);
    // 3. An exec that ignores TERM and forks a job holding the tty when it gets HUP.
    const trapName = await runContainer("ar-trap", [], ["sleep", "1000000"]);
    // 4. Two containers on the host's /dev/pts: the exec's pty comes from the host's devpts instance.
    const sharedA = await runContainer("ar-shared-a", ["-v", "/dev/pts:/dev/pts"], ["sleep", "1000000"]);
    const sharedB = await runContainer("ar-shared-b", ["-v", "/dev/pts:/dev/pts"], signalRecorderCmd("shared-b-main"));
    // 5. --pid=host: no PID namespace, State.Pid is a host pid like any other.
    const pidHostName = await runContainer("ar-pidhost", ["--pid=host"], ["sleep", "1000000"]);
    control = await hostPty();

    const mains = {
      init: await containerInitPid(socket, initName),
      wrap: await containerInitPid(socket, wrapName),
      trap: await containerInitPid(socket, trapName),
      sharedA: await containerInitPid(socket, sharedA),
      sharedB: await containerInitPid(socket, sharedB),
      pidHost: await containerInitPid(socket, pidHostName),
    };
    const execs: Record<string, DetachedExec> = {
      init: await execDetached(socket, initName, CONSOLE_REDIRECT),
      wrap: await execDetached(socket, wrapName, CONSOLE_REDIRECT),
      // On HUP it forks a job that ignores HUP and TERM from birth (inherited ignored dispositions, so a HUP sent
      // in the same step, as the reaper re-reads right after signalling, cannot kill it before it is set up):
      // only a SIGKILL sent to the job itself ends it.
      trap: await execDetached(socket, trapName, [
        "sh",
        "-c",
        `trap "trap '' HUP; sleep 100000 &" HUP; trap "" TERM; while :; do sleep 1 & wait $!; done`,
      ]),
      shared: await execDetached(socket, sharedA, ["sh"]),
      pidHost: await execDetached(socket, pidHostName, signalRecorderCmd("pidhost-exec")),
    };
    // The other container (B) holds A's exec pty open: a holder the reaper may never signal.
    const sharedPty = stdinPty(execs.shared?.pid ?? 0);
    const foreign = await execDetached(socket, sharedB, ["sh", "-c", `exec sleep 100000 < /dev/pts/${sharedPty.index}`], { tty: false });
    await waitFor(() => readlinkSync(`/proc/${foreign.pid}/fd/0`).endsWith(`/pts/${sharedPty.index}`), 10_000, "B's sleep to hold A's exec pty");
    const consoles = { init: stdinPty(mains.init), wrap: stdinPty(mains.wrap) };
    // The loops under docker-init and the wrapper: the container's own, started before any exec.
    const loops = { init: childrenOf(mains.init)[0] ?? 0, wrap: childrenOf(mains.wrap)[0] ?? 0 };
    expect(loops.init).toBeGreaterThan(0);
    expect(loops.wrap).toBeGreaterThan(0);

    // `ptyreaper sessions` (before any daemon runs): one session per exec, the consoles as `container`.
    const cli = JSON.parse(
      (await run(process.execPath, [MAIN, "sessions", "--json"], { timeout: 60_000, env: { ...process.env, DOCKER_HOST: testbed.engine.host } }))
        .stdout,
    ) as Report;
    for (const [tag, exec] of Object.entries(execs))
      expect(
        cli.sessions.filter((s) => s.execId === exec.execId),
        `cli ${tag}`,
      ).toHaveLength(1);
    for (const [tag, pty] of Object.entries(consoles)) {
      expect(cli.ptys.find((p) => p.devptsDev === pty.dev && p.index === pty.index)?.owner, `cli ${tag} console`).toBe("container");
    }

    const d = await testbed.startDaemon(CONFIG);

    // Before any reaping: exactly one session per exec, and the consoles are the container's.
    const before = await waitFor(
      async () => {
        const r = await report(d);
        return Object.values(execs).every((e) => r.sessions.some((s) => s.execId === e.execId)) ? r : null;
      },
      30_000,
      "every exec to be a session",
      250,
    );
    for (const [tag, exec] of Object.entries(execs)) {
      expect(
        before.sessions.filter((s) => s.execId === exec.execId),
        tag,
      ).toHaveLength(1);
      expect(
        before.ptys.filter((p) => p.execId === exec.execId),
        tag,
      ).toHaveLength(1);
    }
    for (const [tag, pty] of Object.entries(consoles)) {
      expect(before.ptys.find((p) => p.devptsDev === pty.dev && p.index === pty.index)?.owner, `${tag} console`).toBe("container");
    }

    // The job the trap forks once SIGHUP came: it lives only from SIGHUP to SIGKILL (two graces), so it is
    // watched for in /proc from now on, not only once the daemon's log says SIGHUP was sent (a late log read
    // on a loaded host would miss it).
    const forkedJob = waitFor(
      () => descendantsOf(execs.trap?.pid ?? 0).find((pid) => cmdlineOf(pid).join(" ") === "sleep 100000"),
      150_000,
      "the job forked on SIGHUP",
      10,
    );
    const results = await waitFor(
      () => {
        const done = Object.fromEntries(Object.entries(execs).map(([tag, e]) => [tag, ended(d, e.execId)]));
        return Object.values(done).every(Boolean) ? (done as Record<string, LogLine>) : null;
      },
      150_000,
      "every session's escalation to end",
      500,
    );
    await d.cycles(3); // a few more cycles: nothing else may be sent
    const after = await report(d);
    const held = (pty: { dev: string; index: number }) => after.ptys.find((p) => p.devptsDev === pty.dev && p.index === pty.index);

    // 1 and 2: the exec's own shell and its job are gone and their pty released; the container is untouched.
    for (const tag of ["init", "wrap"] as const) {
      const exec = execs[tag] as DetachedExec;
      expect(results[tag]?.msg, tag).toBe("reaped exec session");
      expect(isAlive(exec.pid), `${tag} exec shell`).toBe(false);
      expect(
        after.ptys.some((p) => p.execId === exec.execId),
        `${tag} exec pty`,
      ).toBe(false);
      expect(isAlive(mains[tag]) && isAlive(loops[tag]), `${tag} main process and loop`).toBe(true);
      expect(readRecordedSignals(mains[tag], `${tag}-main`), `${tag} loop's signals`).toEqual([]);
      expect(held(consoles[tag])?.owner, `${tag} console still allocated`).toBe("container");
      expect(await running(tag === "init" ? initName : wrapName)).toBe(true);
      for (const line of signalled(d, exec.execId)) {
        for (const pid of line.pids as number[]) expect([mains[tag], loops[tag]], `${tag}: ${JSON.stringify(line)}`).not.toContain(pid);
      }
    }
    // 3: released in the end: the job forked on SIGHUP got the later signals.
    const trapExec = execs.trap as DetachedExec;
    expect(results.trap?.msg).toBe("reaped exec session");
    const trapLines = signalled(d, trapExec.execId);
    expect(trapLines.map((l) => l.signal)).toEqual(["SIGHUP", "SIGTERM", "SIGKILL"]);
    const job = await forkedJob;
    expect(trapLines[2]?.pids, "the job forked on SIGHUP got SIGKILL").toContain(job);
    expect(isAlive(job)).toBe(false);
    expect(isAlive(trapExec.pid)).toBe(false);
    expect(after.ptys.some((p) => p.execId === trapExec.execId)).toBe(false);
    expect(isAlive(mains.trap)).toBe(true);
    // 4: B's process holds A's exec pty: never signalled, so the pty is never released: a counted failure, not "reaped".
    const sharedExec = execs.shared as DetachedExec;
    expect(results.shared?.msg).toBe("failed to reap exec session");
    expect(isAlive(sharedExec.pid)).toBe(false);
    expect(isAlive(foreign.pid), "the other container's holder").toBe(true);
    expect(isAlive(mains.sharedA) && isAlive(mains.sharedB)).toBe(true);
    expect(readRecordedSignals(mains.sharedB, "shared-b-main")).toEqual([]);
    const leftover = held(sharedPty);
    expect(leftover?.slavePids).toContain(foreign.pid);
    expect(leftover?.owner, "held only by the other container, tied to no exec").toBe("unattributed");
    for (const line of signalled(d, sharedExec.execId)) expect(line.pids).not.toContain(foreign.pid);
    // 5: --pid=host: only the exec's own processes; the main process and a host pty pair are untouched.
    const pidHostExec = execs.pidHost as DetachedExec;
    expect(results.pidHost?.msg).toBe("reaped exec session");
    expect(readRecordedSignals(mains.pidHost, "pidhost-exec")).toEqual(expect.arrayContaining(["HUP", "TERM"]));
    expect(isAlive(pidHostExec.pid)).toBe(false);
    expect(after.ptys.some((p) => p.execId === pidHostExec.execId)).toBe(false);
    expect(isAlive(mains.pidHost)).toBe(true);
    expect(isAlive(control.masterPid) && isAlive(control.slavePid), "host pty pair").toBe(true);
    expect(after.ptys.find((p) => p.slavePids.includes(control?.slavePid ?? -1))?.owner).toBe("host");

    // Across all: nothing but the sessions' own processes was ever signalled.
    const protectedPids = new Set([...Object.values(mains), ...Object.values(loops), foreign.pid, control.masterPid, control.slavePid, 1, d.pid]);
    for (const line of d.logs().filter((l) => l.msg === "signalled exec session")) {
      for (const pid of line.pids as number[]) expect(protectedPids.has(pid), JSON.stringify(line)).toBe(false);
    }
    expect(await d.metric("ptyreaper_reaped_sessions_total", { reason: "idle" })).toBe(4);
    expect(await d.metric("ptyreaper_reap_failures_total")).toBeGreaterThanOrEqual(1);
    expect(await d.metric("ptyreaper_signal_info", { method: "pidfd" })).toBe(1);
  }, 300_000);
});

function childrenOf(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
}
