// PID reuse inside the reaper's own check-then-send window, on the real kernel with the native pidfd helper:
// while the check runs, the target dies and the kernel gives its pid to a new process (ns_last_pid). Through
// a pidfd nothing reaches the new process; the kill(2) fallback, run the same way, does: that is the window.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { describe, expect, it } from "vitest";
import { isAlive, killAndWait, python3, waitFor } from "./support/index.js";
import { trackProcess } from "./support/track.js";
import { KillSignaller, PidfdSignaller, loadPidfdAddon, type Signaller } from "../../src/reaper/signaller.js";

/** Starts `sleep` and reaps it the moment it dies, so its pid is free at once; prints the sleep's pid. */
const HOLDER_PY = String.raw`
import subprocess, sys
p = subprocess.Popen(["sleep", "1000000"])
print(p.pid, flush=True)
p.wait()
sys.stdin.readline()
`;

/**
 * Kills the target (our own sleep), waits until it is reaped, then forks with ns_last_pid = pid - 1 until a
 * child gets exactly that pid. The child detaches, records every SIGUSR1/SIGTERM/SIGHUP it gets, and waits.
 */
const TAKEOVER_PY = String.raw`
import json, os, signal, sys, time
target, log_path = int(sys.argv[1]), sys.argv[2]
os.kill(target, signal.SIGKILL)
for _ in range(2000):
    try:
        open("/proc/%d/stat" % target).close()
        time.sleep(0.005)
    except FileNotFoundError:
        break
for attempt in range(1, 40001):
    r, w = os.pipe()
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(target - 1))
    pid = os.fork()
    if pid == 0:
        os.close(w)
        if os.read(r, 1) != b"1":
            os._exit(0)
        os.setsid()
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        def record(signum, _frame):
            with open(log_path, "a") as f:
                f.write(signal.Signals(signum).name + "\n")
        for s in (signal.SIGUSR1, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, record)
        with open(log_path, "a") as f:
            f.write("ready\n")
        while True:
            signal.pause()
    os.close(r)
    os.write(w, b"1" if pid == target else b"0")
    os.close(w)
    if pid == target:
        print(json.dumps({"pid": pid, "attempts": attempt}), flush=True)
        sys.exit(0)
    os.waitpid(pid, 0)
print(json.dumps({"error": "pid %d not handed out" % target}), flush=True)
`;

interface Holder {
  victimPid: number;
  child: ChildProcess;
}

async function startVictim(): Promise<Holder> {
  const child = spawn(python3(), ["-c", HOLDER_PY], { stdio: ["pipe", "pipe", "inherit"] });
  if (child.pid === undefined) throw new Error("could not start python3");
  trackProcess(child.pid, "pid-reuse holder", child);
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const line = await lines[Symbol.asyncIterator]().next();
  const victimPid = Number(line.value);
  if (!Number.isInteger(victimPid) || victimPid <= 1) throw new Error(`holder printed ${JSON.stringify(line.value)}`);
  trackProcess(victimPid, "pid-reuse victim");
  return { victimPid, child };
}

/** Runs inside the signaller's check: synchronous, as the check is. */
function takeOver(pid: number, logPath: string): { pid: number; attempts: number } {
  const run = spawnSync(python3(), ["-c", TAKEOVER_PY, String(pid), logPath], { encoding: "utf8", timeout: 120_000 });
  const answer = JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "{}") as { pid?: number; attempts?: number; error?: string };
  if (answer.pid !== pid) throw new Error(`takeover failed: ${run.stdout} ${run.stderr}`);
  return { pid, attempts: answer.attempts ?? 0 };
}

interface Round {
  outcome: ReturnType<Signaller["send"]>;
  imposterPid: number;
  imposterSignals: string[];
  attempts: number;
}

async function reuseDuringCheck(signaller: Signaller): Promise<Round> {
  const holder = await startVictim();
  const logPath = join(mkdtempSync(join(tmpdir(), "ptyr-pidfd-")), "signals");
  let taken: { pid: number; attempts: number } | null = null;
  try {
    const outcome = signaller.send(holder.victimPid, "SIGUSR1", () => {
      taken = takeOver(holder.victimPid, logPath);
      trackProcess(taken.pid, "imposter on a reused pid");
      return null; // the check passed for the process it saw; the pid changed hands after it
    });
    const imposter = taken as { pid: number; attempts: number } | null;
    if (imposter === null) throw new Error("the check never ran");
    await waitFor(() => readFileSync(logPath, "utf8").includes("ready"), 10_000, "the imposter to install its handlers");
    // A marker SIGTERM from here: once it is recorded, so is any SIGUSR1 sent before it (python runs pending
    // handlers in signal-number order, 10 before 15, one after the other). The marker is not counted.
    expect(isAlive(imposter.pid)).toBe(true);
    process.kill(imposter.pid, "SIGTERM");
    const recorded = await waitFor(
      () => {
        const lines = readFileSync(logPath, "utf8")
          .split("\n")
          .filter((l) => l !== "" && l !== "ready");
        return lines.at(-1) === "SIGTERM" ? lines : null;
      },
      10_000,
      "the imposter to record the marker SIGTERM",
    );
    const imposterSignals = recorded.slice(0, -1);
    expect(isAlive(imposter.pid)).toBe(true);
    return { outcome, imposterPid: imposter.pid, imposterSignals, attempts: imposter.attempts };
  } finally {
    const imposter = taken as { pid: number } | null;
    if (imposter !== null) await killAndWait(imposter.pid);
    holder.child.stdin?.end("\n");
    await killAndWait(holder.child.pid as number, holder.child);
  }
}

describe("PID reuse between the identity check and the signal (real kernel, native pidfd helper)", () => {
  it("through a pidfd, the new process on the recycled pid gets nothing; through kill(2) it would", async () => {
    const load = loadPidfdAddon();
    if (load.addon === null) throw new Error(`the pidfd helper must be built for this test (npx node-gyp rebuild): ${load.reason}`);

    const pinned = await reuseDuringCheck(new PidfdSignaller(load.addon));
    expect(pinned.outcome).toEqual({ sent: false, gone: true, refusal: null });
    expect(pinned.imposterSignals).toEqual([]);

    // The same sequence without a pidfd: the signal lands on the imposter. This proves the pid really was reused.
    const unpinned = await reuseDuringCheck(new KillSignaller((pid, signal) => process.kill(pid, signal)));
    expect(unpinned.outcome).toEqual({ sent: true });
    expect(unpinned.imposterSignals).toEqual(["SIGUSR1"]);
    console.log(`pidfd reuse: recycled pid taken after ${pinned.attempts} and ${unpinned.attempts} fork(s); pidfd sent nothing to it, kill(2) did`);
  }, 300_000);

  it("pidfd signaller: a refused target is left alone, an allowed one is signalled", async () => {
    const load = loadPidfdAddon();
    if (load.addon === null) throw new Error(`the pidfd helper must be built: ${load.reason}`);
    const signaller = new PidfdSignaller(load.addon);
    const holder = await startVictim();
    try {
      expect(signaller.send(holder.victimPid, "SIGHUP", () => "container_main")).toEqual({ sent: false, gone: false, refusal: "container_main" });
      expect(isAlive(holder.victimPid)).toBe(true);
      expect(signaller.send(holder.victimPid, "SIGTERM", () => null)).toEqual({ sent: true });
      await waitFor(() => !isAlive(holder.victimPid), 10_000, "the victim to exit on SIGTERM");
    } finally {
      holder.child.stdin?.end("\n");
      await killAndWait(holder.child.pid as number, holder.child);
    }
  }, 60_000);
});
