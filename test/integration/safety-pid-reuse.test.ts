// PID reuse on the real kernel and a real (private) Docker engine: a target exits between two signals of an
// escalation and the kernel hands its pid to a new process in the same container, on the same pty; nothing
// ptyreaper sends may reach that new process. It keeps holding the pty, so the session ends as a counted failure.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, readlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { describe, expect, it } from "vitest";
import { isAlive, killAndWait, procState, python3, startContainer, testContainerName, waitFor } from "./support/index.js";
import { trackProcess } from "./support/track.js";
import { containerInitPid, execDetached } from "./support/dockerd.js";
import { usePrivateEngine } from "./support/private-engine.js";

const CONFIG = `
pollInterval: 1s
policy:
  idleTimeout: 10s
  minAge: 0s
reaper:
  grace: 6s
log:
  level: debug
`;

/**
 * Takes over a pid: opens the victim's pty slave while the victim lives, then (on "go", once the victim
 * is dead and reaped) forks into the container's PID namespace and cgroups with /proc/sys/kernel/ns_last_pid
 * set to pid - 1, until the kernel gives a child exactly that pid. The child logs every catchable signal.
 */
const IMPOSTER_PY = String.raw`
import ctypes, json, os, signal, sys, time
target, init_pid, slave_fd, log_path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWPID = 0x20000000
slave = os.open("/proc/%d/fd/%d" % (target, slave_fd), os.O_RDWR | os.O_NOCTTY)
ns = os.open("/proc/%d/ns/pid" % init_pid, os.O_RDONLY)
procs = []
for line in open("/proc/%d/cgroup" % init_pid):
    _, controllers, path = line.rstrip("\n").split(":", 2)
    base = "/sys/fs/cgroup/" + (controllers.replace("name=", "") if controllers else "unified")
    if os.path.exists(base + path + "/cgroup.procs"):
        procs.append(base + path + "/cgroup.procs")
print(json.dumps({"ready": True, "cgroups": len(procs)}), flush=True)
sys.stdin.readline()
if libc.setns(ns, CLONE_NEWPID) != 0:
    raise OSError(ctypes.get_errno(), "setns")
for attempt in range(1, 20001):
    r, w = os.pipe()
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(target - 1))
    pid = os.fork()
    if pid == 0:
        os.close(w)
        if os.read(r, 1) != b"1":
            os._exit(0)
        for p in procs:
            with open(p, "w") as f:
                f.write("0")
        names = ["SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGPIPE", "SIGCONT"]
        def record(signum, _frame):
            with open(log_path, "a") as f:
                f.write(signal.Signals(signum).name + "\n")
        for name in names:
            signal.signal(getattr(signal, name), record)
        with open(log_path, "a") as f:
            f.write("ready\n")
        while True:
            signal.pause()
    os.close(r)
    if pid == target:
        os.write(w, b"1")
        os.close(w)
        print(json.dumps({"pid": pid, "attempts": attempt}), flush=True)
        sys.stdin.readline()
        sys.exit(0)
    os.write(w, b"0")
    os.close(w)
    os.waitpid(pid, 0)
print(json.dumps({"error": "pid %d was not handed out in 20000 forks" % target}), flush=True)
`;

interface Imposter {
  /** Kills the victim (by pid), waits until it is reaped, then takes its pid; resolves with the imposter's pid. */
  takeOver(victimPid: number): Promise<{ pid: number; attempts: number; atMs: number }>;
  /** Signals the imposter recorded. */
  signals(): string[];
  close(): Promise<void>;
}

async function prepareImposter(victimPid: number, initPid: number, slaveFd: number): Promise<Imposter> {
  const logPath = join(mkdtempSync(join(tmpdir(), "ptyr-imposter-")), "signals");
  const child: ChildProcess = spawn(python3(), ["-c", IMPOSTER_PY, String(victimPid), String(initPid), String(slaveFd), logPath], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  if (child.pid === undefined) throw new Error("could not start python3");
  trackProcess(child.pid, "imposter parent", child);
  let stderr = "";
  child.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
  const nextLine = async (what: string): Promise<Record<string, unknown>> => {
    const next = await Promise.race([
      lines.next(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`imposter: no ${what} within 20s: ${stderr}`)), 20_000).unref()),
    ]);
    if (next.done) throw new Error(`imposter exited before ${what}: ${stderr}`);
    return JSON.parse(next.value) as Record<string, unknown>;
  };
  const ready = await nextLine("ready line");
  expect(ready.cgroups, "imposter found the container's cgroups").toBeGreaterThan(0);
  let imposterPid: number | null = null;
  return {
    async takeOver(pid: number) {
      process.kill(pid, "SIGKILL"); // the victim is our own exec'd process
      await waitFor(() => procState(pid) === null, 10_000, `victim ${pid} to be reaped`, 5);
      child.stdin?.write("go\n");
      const result = await nextLine("takeover result");
      if (typeof result.pid !== "number") throw new Error(`imposter failed: ${JSON.stringify(result)} ${stderr}`);
      imposterPid = result.pid;
      trackProcess(imposterPid, "imposter on a reused pid");
      await waitFor(() => readFileSync(logPath, "utf8").includes("ready"), 10_000, "imposter to install its handlers");
      return { pid: result.pid, attempts: Number(result.attempts), atMs: Date.now() };
    },
    signals: () =>
      readFileSync(logPath, "utf8")
        .split("\n")
        .filter((l) => l !== "" && l !== "ready"),
    async close() {
      if (imposterPid !== null) await killAndWait(imposterPid);
      await killAndWait(child.pid as number, child);
    },
  };
}

type LogLine = Record<string, unknown>;
const signalled = (logs: LogLine[], execId: string): LogLine[] => logs.filter((l) => l.msg === "signalled exec session" && l.execId === execId);
const logTime = (line: LogLine): number => Date.parse(String(line.time));

describe("PID reuse between two signals of an escalation (real kernel, private dockerd)", () => {
  let imposter: Imposter | null = null;
  // The harness and every daemon talk to the private engine only.
  const testbed = usePrivateEngine("pidreuse", {
    teardown: "each",
    cleanup: async () => {
      await imposter?.close();
      imposter = null;
    },
  });

  it("never signals a new process that took the exec's own pid, even in the same container on the same pty", async () => {
    const name = testContainerName("pidreuse-leader");
    await startContainer({ name });
    // SIGHUP is ignored, so the escalation has to go on to SIGTERM: that is when the pid has been reused.
    const victim = await execDetached(testbed.engine.socket, name, ["sh", "-c", 'trap "" HUP; exec sleep 1000000']);
    imposter = await prepareImposter(victim.pid, await containerInitPid(testbed.engine.socket, name), 1);

    const d = await testbed.startDaemon(CONFIG);
    const hup = await waitFor(() => signalled(d.logs(), victim.execId)[0], 60_000, "SIGHUP to the victim");
    expect(hup).toMatchObject({ signal: "SIGHUP", pids: [victim.pid] });

    const taken = await imposter.takeOver(victim.pid);
    expect(taken.pid).toBe(victim.pid);
    // Same pid, same PID namespace and cgroup, holding the same pty: only the start time differs.
    const initPid = await containerInitPid(testbed.engine.socket, name);
    expect(readFileSync(`/proc/${taken.pid}/cgroup`, "utf8")).toBe(readFileSync(`/proc/${initPid}/cgroup`, "utf8"));
    expect(readlinkSync(`/proc/${taken.pid}/ns/pid`)).toBe(readlinkSync(`/proc/${initPid}/ns/pid`));

    const refused = await waitFor(
      () => d.logs().find((l) => l.msg === "pid no longer the scanned process: not signalled" && l.pid === victim.pid),
      30_000,
      "the reaper to notice the pid was reused",
    );
    expect(logTime(refused)).toBeGreaterThanOrEqual(taken.atMs - 1_000);
    const end = await waitFor(
      () =>
        d
          .logs()
          .find(
            (l) =>
              (l.msg === "reaped exec session" || l.msg === "exec session not reaped" || l.msg === "failed to reap exec session") &&
              l.execId === victim.execId,
          ),
      30_000,
      "the escalation to end",
    );
    // The imposter still holds the pty, so it is never released: a counted failure naming it, never "reaped".
    expect(end.result).toBe("failed");
    expect(String(end.why)).toContain(`${taken.pid} (pid_reused)`);
    // A few more cycles (and retries): nothing else is sent.
    await d.cycles(3);
    expect(signalled(d.logs(), victim.execId).map((l) => l.signal)).toEqual(["SIGHUP"]);
    expect(imposter.signals()).toEqual([]);
    expect(isAlive(taken.pid)).toBe(true);
    console.log(`pid reuse (exec pid): pid ${taken.pid} taken over after ${taken.attempts} fork(s); imposter got no signal`);
  }, 120_000);

  it("never signals a new process that took the pid of one of the session's jobs", async () => {
    const name = testContainerName("pidreuse-job");
    await startContainer({ name });
    // The shell waits for its job (so the job's pid is freed the moment it dies), then becomes a sleep.
    const victim = await execDetached(testbed.engine.socket, name, ["sh", "-c", 'trap "" HUP; sleep 1000000 & wait; exec sleep 1000000']);
    const job = await waitFor(
      () => {
        const children = readFileSync(`/proc/${victim.pid}/task/${victim.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
        return children[0];
      },
      10_000,
      "the session's background job",
    );
    imposter = await prepareImposter(job, await containerInitPid(testbed.engine.socket, name), 1);

    const d = await testbed.startDaemon(CONFIG);
    const hup = await waitFor(() => signalled(d.logs(), victim.execId)[0], 60_000, "SIGHUP to the session");
    expect(hup.signal).toBe("SIGHUP");
    expect([...(hup.pids as number[])].sort()).toEqual([victim.pid, job].sort());

    const taken = await imposter.takeOver(job);
    expect(taken.pid).toBe(job);

    const end = await waitFor(
      () =>
        d
          .logs()
          .find(
            (l) =>
              (l.msg === "reaped exec session" || l.msg === "exec session not reaped" || l.msg === "failed to reap exec session") &&
              l.execId === victim.execId,
          ),
      40_000,
      "the escalation to end",
    );
    expect(end.result).toBe("failed");
    expect(String(end.why)).toContain(`${taken.pid} (not_in_session)`);
    await d.cycles(3);
    const later = signalled(d.logs(), victim.execId).filter((l) => l.signal !== "SIGHUP");
    expect(later.length).toBeGreaterThan(0); // the real exec process was escalated to SIGTERM ...
    for (const line of later) expect(line.pids).toEqual([victim.pid]); // ... and only it
    expect(imposter.signals()).toEqual([]);
    expect(isAlive(taken.pid)).toBe(true);
    expect(isAlive(victim.pid)).toBe(false);
    console.log(`pid reuse (job pid): pid ${taken.pid} taken over after ${taken.attempts} fork(s); imposter got no signal`);
  }, 120_000);
});
