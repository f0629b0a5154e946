// What ptyreaper must never signal, whatever the policy says, on the real kernel and a private Docker engine:
// container inits, a container's own tty, host ptys, exempt containers and execs, young sessions, and
// anything at all while Docker is unreachable. Each protected process records every signal it gets.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cmdlineOf, descendantsOf, hostPty, isAlive, python3, startContainer, testContainerName, waitFor, type HostPty } from "./support/index.js";
import { trackProcess } from "./support/track.js";
import { containerInitPid, execDetached, readRecordedSignals, signalRecorderCmd, type DetachedExec } from "./support/dockerd.js";
import { usePrivateEngine } from "./support/private-engine.js";

/** Everything that can make a session stale is switched on, at its most eager. */
const AGGRESSIVE = `
pollInterval: 1s
policy:
  idleTimeout: 10s
  maxAge: 1s
  minAge: 0s
  pressure:
    high: 0.0001
    low: 0.00005
    minIdle: 10s
  exemptContainers: ["ptyr-test-keep-*"]
reaper:
  grace: 500ms
  maxPerCycle: 100
log:
  level: debug
`;

const HOST_LOGGER_PY = String.raw`
import signal, sys
log = sys.argv[1]
def record(signum, _frame):
    with open(log, "a") as f:
        f.write(signal.Signals(signum).name + "\n")
for name in ["SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGPIPE", "SIGCONT"]:
    signal.signal(getattr(signal, name), record)
with open(log, "a") as f:
    f.write("ready\n")
while True:
    signal.pause()
`;

interface HostSession {
  /** The python process whose controlling tty is the host pty `script` made. */
  pid: number;
  signals(): string[];
}

/** A host login-like session: `script` gives python a host pty; python records every signal. */
async function hostScriptSession(): Promise<HostSession> {
  const dir = mkdtempSync(join(tmpdir(), "ptyr-hostsession-"));
  writeFileSync(join(dir, "logger.py"), HOST_LOGGER_PY);
  const log = join(dir, "signals");
  const script = spawn("script", ["-qfc", `${python3()} ${join(dir, "logger.py")} ${log}`, "/dev/null"], { stdio: ["pipe", "pipe", "pipe"] });
  if (script.pid === undefined) throw new Error("could not start script(1)");
  trackProcess(script.pid, "script (host session)", script);
  const scriptPid = script.pid;
  const pid = await waitFor(
    () => descendantsOf(scriptPid).find((p) => cmdlineOf(p).some((a) => a.endsWith("logger.py"))),
    20_000,
    "the host session's python",
  );
  trackProcess(pid, "host session python");
  await waitFor(() => readFileSync(log, "utf8").includes("ready"), 20_000, "host logger ready");
  return {
    pid,
    signals: () =>
      readFileSync(log, "utf8")
        .split("\n")
        .filter((l) => l && l !== "ready"),
  };
}

type LogLine = Record<string, unknown>;
const signalledLines = (logs: LogLine[]): LogLine[] => logs.filter((l) => l.msg === "signalled exec session");

interface SessionJson {
  execId: string;
  containerName: string;
  state: string;
  detail: string;
  idleSeconds: number;
}
interface SessionsJson {
  docker: { available: boolean };
  ptys: { owner: string; containerName: string | null; slavePids: number[] }[];
  sessions: SessionJson[];
}

describe("never signalled, whatever the policy says (real kernel, private dockerd)", () => {
  let hostPtys: HostPty[] = [];
  const testbed = usePrivateEngine("nosig", {
    teardown: "each",
    cleanup: async () => {
      for (const pty of hostPtys) await pty.close();
      hostPtys = [];
    },
  });

  it("spares container inits, a container's own tty, host ptys and exempt sessions while it reaps the one it may", async () => {
    const plain = testContainerName("ns-plain");
    const withTty = testContainerName("ns-tty");
    const labelled = testContainerName("ns-label");
    const byName = testContainerName("keep-byname");
    await startContainer({ name: plain, cmd: signalRecorderCmd("init-plain") });
    await startContainer({ name: withTty, tty: true, cmd: signalRecorderCmd("init-tty") });
    await startContainer({ name: labelled, labels: { "ptyreaper.exempt": "true" } });
    await startContainer({ name: byName });
    const inits = { plain: await containerInitPid(testbed.engine.socket, plain), tty: await containerInitPid(testbed.engine.socket, withTty) };
    const protectedExecs: [string, string, DetachedExec][] = [
      ["exec-label", labelled, await execDetached(testbed.engine.socket, labelled, signalRecorderCmd("exec-label"))],
      ["exec-name", byName, await execDetached(testbed.engine.socket, byName, signalRecorderCmd("exec-name"))],
      ["exec-env", plain, await execDetached(testbed.engine.socket, plain, signalRecorderCmd("exec-env"), { env: { PTYREAPER_EXEMPT: "1" } })],
    ];
    const control = await execDetached(testbed.engine.socket, plain, signalRecorderCmd("control"));
    hostPtys = [await hostPty()];
    const hostSession = await hostScriptSession();

    const d = await testbed.startDaemon(AGGRESSIVE);
    const startedAt = Date.now();
    // The policy is live: the one unprotected session is escalated all the way (it traps HUP and TERM).
    const reaped = await waitFor(
      () => d.logs().find((l) => l.msg === "reaped exec session" && l.execId === control.execId),
      60_000,
      "the control session to be reaped",
    );
    expect(reaped.reason).toBe("max_age");
    expect(readRecordedSignals(inits.plain, "control")).toEqual(expect.arrayContaining(["HUP", "TERM"]));
    expect(isAlive(control.pid)).toBe(false);
    // Past idleTimeout for everyone (13 s after the start, wall time), and 3 more cycles after the reap; cycles
    // start at least pollInterval (1 s) apart, so n of them take at least n - 1 s.
    await d.cycles(Math.max(3, Math.ceil((13_000 - (Date.now() - startedAt)) / 1_000) + 1));

    for (const [tag, container, exec] of protectedExecs) {
      expect(readRecordedSignals(await containerInitPid(testbed.engine.socket, container), tag), tag).toEqual([]);
      expect(isAlive(exec.pid), tag).toBe(true);
    }
    expect(readRecordedSignals(inits.plain, "init-plain"), "a container's init").toEqual([]);
    expect(readRecordedSignals(inits.tty, "init-tty"), "the init holding its container's own tty").toEqual([]);
    expect(isAlive(inits.plain) && isAlive(inits.tty)).toBe(true);
    expect(hostSession.signals(), "a host session under script(1)").toEqual([]);
    expect(isAlive(hostSession.pid)).toBe(true);
    for (const pty of hostPtys) expect(isAlive(pty.masterPid) && isAlive(pty.slavePid), "a host pty pair").toBe(true);

    const targets = signalledLines(d.logs());
    expect(targets.length).toBeGreaterThanOrEqual(2);
    for (const line of targets) expect(line.execId, JSON.stringify(line)).toBe(control.execId);
    expect(await d.metric("ptyreaper_reaped_sessions_total", { reason: "max_age" })).toBe(1);
    expect(await d.metric("ptyreaper_reap_failures_total")).toBe(0);

    const report = JSON.parse((await d.get("/sessions")).body) as SessionsJson;
    const byExec = new Map(report.sessions.map((s) => [s.execId, s]));
    const label = protectedExecs[0]?.[2].execId ?? "";
    const name = protectedExecs[1]?.[2].execId ?? "";
    const env = protectedExecs[2]?.[2].execId ?? "";
    expect(byExec.get(label)).toMatchObject({ state: "exempt", detail: "exempt: label ptyreaper.exempt=true" });
    expect(byExec.get(name)).toMatchObject({ state: "exempt", detail: `exempt: container name ${byName} matches exemptContainers ptyr-test-keep-*` });
    expect(byExec.get(env)).toMatchObject({ state: "exempt", detail: "exempt: started with PTYREAPER_EXEMPT=1" });
    expect(report.ptys.find((p) => p.slavePids.includes(inits.tty))?.owner).toBe("container");
    expect(report.ptys.find((p) => p.slavePids.includes(hostSession.pid))?.owner).toBe("host");
    expect(report.sessions.filter((s) => s.containerName === withTty)).toEqual([]);
  }, 180_000);

  it("spares a session younger than minAge even when idleTimeout is long past and pressure is high", async () => {
    const name = testContainerName("ns-young");
    await startContainer({ name });
    const young = await execDetached(testbed.engine.socket, name, signalRecorderCmd("young"));
    const init = await containerInitPid(testbed.engine.socket, name);
    const d = await testbed.startDaemon(AGGRESSIVE.replace("minAge: 0s", "minAge: 1h").replace("maxAge: 1s", "maxAge: 1h"));
    const seen = await waitFor(
      async () => {
        const report = JSON.parse((await d.get("/sessions")).body) as SessionsJson;
        const s = report.sessions.find((x) => x.execId === young.execId);
        return s && s.idleSeconds >= 12 ? s : null;
      },
      60_000,
      "the young session to be idle past idleTimeout",
      500,
    );
    expect(seen.state).not.toBe("stale");
    // The pressure policy is in force too: one allocated pty already reaches high (0.0001 of capacity).
    expect(await d.metric("ptyreaper_pty_usage_ratio")).toBeGreaterThanOrEqual(0.0001);
    expect(seen.detail).toMatch(/^younger than minAge 1h \(age \d+s\)$/);
    await d.cycles(3);
    expect(signalledLines(d.logs())).toEqual([]);
    expect(readRecordedSignals(init, "young")).toEqual([]);
    expect(isAlive(young.pid)).toBe(true);
  }, 120_000);

  it("signals nothing while its Docker socket does not exist", async () => {
    const name = testContainerName("ns-nodocker");
    await startContainer({ name });
    const old = await execDetached(testbed.engine.socket, name, signalRecorderCmd("nodocker"));
    const init = await containerInitPid(testbed.engine.socket, name);
    const d = await testbed.startDaemon(AGGRESSIVE, [], { DOCKER_HOST: `unix://${testbed.engine.root}/missing.sock` });
    await d.cycles(14); // past idleTimeout and maxAge (≥ 13 s at 1 s a cycle), a dozen cycles
    expect(await d.metric("ptyreaper_docker_up")).toBe(0);
    expect((await d.get("/readyz")).status).toBe(503);
    expect((await d.get("/healthz")).status).toBe(200);
    const report = JSON.parse((await d.get("/sessions")).body) as SessionsJson;
    expect(report.docker.available).toBe(false);
    expect(report.sessions).toEqual([]);
    expect(signalledLines(d.logs())).toEqual([]);
    expect(await d.metric("ptyreaper_reaped_sessions_total", { reason: "max_age" })).toBe(0);
    expect(readRecordedSignals(init, "nodocker")).toEqual([]);
    expect(isAlive(old.pid)).toBe(true);
  }, 120_000);
});
