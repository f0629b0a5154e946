// Real ptys for kernel tests: host ones, ones in a private PID + mount namespace with its own devpts, and churn.
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { killAndWait, trackProcess, untrackProcess } from "./track.js";
import { python3, waitFor } from "./util.js";

/** A host pty pair: the master held by one process, the slave by its child. */
export interface HostPty {
  /** Pid of the python process the harness started (it holds the master). */
  pid: number;
  masterPid: number;
  /** A forked child holding only the slave. */
  slavePid: number;
  /** /dev/pts/N as the holders see it. */
  path: string;
  index: number;
  /** Kills exactly the two holders and waits for them. */
  close(): Promise<void>;
}

/** Ptys in a devpts instance of their own, inside `unshare --pid --fork --mount`. */
export interface NsPty {
  /** Host pid of the process holding every master and slave (pid 1 in its namespace). */
  pid: number;
  /** Pid of the `unshare` process the harness started. */
  unsharePid: number;
  /** "major:minor" of the new devpts instance (st_dev of its /dev/pts). */
  devptsDev: string;
  /** Pty indexes in that instance, in opening order (the first is 0). */
  indexes: number[];
  /** Inode of the holder's PID namespace, as in /proc/PID/ns/pid. */
  pidNs: string;
  /** Kills exactly the processes started and waits for them. */
  close(): Promise<void>;
}

/** Options of nsPty. */
export interface NsPtyOptions {
  /** How many ptys to open (each held as master and slave). */
  count: number;
  /**
   * Which multiplexer the masters are opened through: "/dev/pts/ptmx" (on the devpts itself), or
   * "/dev/ptmx" (the devtmpfs node, which the kernel maps to the devpts mounted at "pts" beside it).
   */
  ptmx?: "/dev/pts/ptmx" | "/dev/ptmx";
}

// The harness processes exit when their stdin closes, so nothing outlives a crashed test run.
const HOST_PTY_PY = `
import ctypes, json, os, signal, sys
master, slave = os.openpty()  # opens /dev/ptmx, the devtmpfs node
path = os.ttyname(slave)
ready_r, ready_w = os.pipe()
child = os.fork()
if child == 0:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the parent
    os.close(master)
    os.close(ready_r)
    os.close(ready_w)  # the parent's read below returns once the child holds the slave only
    while True:
        signal.pause()
os.close(slave)
os.close(ready_w)
os.read(ready_r, 1)
os.close(ready_r)
def stop(*_):
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
print(json.dumps({"masterPid": os.getpid(), "slavePid": child, "path": path, "index": int(path.rsplit("/", 1)[1])}), flush=True)
sys.stdin.read()
stop()
`;

const NS_PTY_PY = `
import fcntl, json, os, struct, subprocess, sys
count, ptmx = int(sys.argv[1]), sys.argv[2]
# A private mount namespace: this devpts hides the host's /dev/pts for this process only.
subprocess.run(["mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620", "devpts", "/dev/pts"], check=True)
TIOCGPTN, TIOCSPTLCK = 0x80045430, 0x40045431
held, indexes = [], []
for _ in range(count):
    m = os.open(ptmx, os.O_RDWR | os.O_NOCTTY)
    n = struct.unpack("I", fcntl.ioctl(m, TIOCGPTN, b"\\0" * 4))[0]
    fcntl.ioctl(m, TIOCSPTLCK, struct.pack("i", 0))
    held += [m, os.open("/dev/pts/%d" % n, os.O_RDWR | os.O_NOCTTY)]
    indexes.append(n)
st = os.stat("/dev/pts")
# /proc is still the host's mount, so NSpid's first field is this process's host pid.
host_pid = int(next(l for l in open("/proc/self/status") if l.startswith("NSpid:")).split()[1])
pid_ns = os.readlink("/proc/self/ns/pid").split("[")[1].rstrip("]")
print(json.dumps({"pid": host_pid, "devptsDev": "%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev)), "indexes": indexes, "pidNs": pid_ns}), flush=True)
sys.stdin.read()
`;

const CHURN_PY = `
import os, random, signal, sys, time
deadline, limit, width = time.monotonic() + float(sys.argv[1]) / 1000, int(sys.argv[2]), int(sys.argv[3])
stopping = False
def stop(*_):
    global stopping
    stopping = True
signal.signal(signal.SIGTERM, stop)
spawned = alive = 0
print("started", flush=True)
while not stopping and time.monotonic() < deadline and spawned < limit:
    if alive >= width:
        os.wait()
        alive -= 1
    pid = os.fork()
    if pid == 0:
        master, slave = os.openpty()
        time.sleep(random.random() * 0.02)
        os._exit(0)
    spawned += 1
    alive += 1
while alive > 0:
    os.wait()
    alive -= 1
print(spawned, flush=True)
`;

/**
 * Spawns a helper (tracked for cleanupAll) and resolves with its first stdout line; fails at once, with its
 * stderr, if it exits first, and after 20 s without a line.
 */
export async function startHelper(
  command: string,
  args: string[],
  what: string,
): Promise<{ child: ChildProcess; pid: number; first: string; lines: AsyncIterator<string> }> {
  const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${what} (${command})`);
  trackProcess(pid, what, child);
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4096)));
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
  const exited = new Promise<never>((_, reject) => {
    child.once("exit", (code, signal) => reject(new Error(`${what} exited (${code ?? signal}) before reporting: ${stderr.trim()}`)));
  });
  exited.catch(() => undefined); // only raced below; a later exit is expected
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error(`${what} did not report within 20s: ${stderr.trim()}`)), 20_000).unref(),
  );
  try {
    const next = await Promise.race([lines.next(), exited, timeout]);
    if (next.done) throw new Error(`${what} closed stdout without reporting: ${stderr.trim()}`);
    return { child, pid, first: next.value, lines };
  } catch (err) {
    await killAndWait(pid, child);
    throw err;
  }
}

/** Opens a host pty pair with python3: the master in one process, the slave in its forked child. */
export async function hostPty(): Promise<HostPty> {
  const { child, pid, first } = await startHelper(python3(), ["-c", HOST_PTY_PY], "host pty holder");
  const report = JSON.parse(first) as { masterPid: number; slavePid: number; path: string; index: number };
  trackProcess(report.slavePid, "host pty slave holder");
  return {
    pid,
    masterPid: report.masterPid,
    slavePid: report.slavePid,
    path: report.path,
    index: report.index,
    async close(): Promise<void> {
      await killAndWait(report.slavePid);
      await killAndWait(pid, child);
    },
  };
}

/**
 * Opens `count` ptys in a new devpts instance mounted on /dev/pts inside a private PID + mount
 * namespace (`unshare --pid --fork --mount --propagation private`); one process holds them all.
 */
export async function nsPty(opts: NsPtyOptions): Promise<NsPty> {
  const ptmx = opts.ptmx ?? "/dev/pts/ptmx";
  const {
    child,
    pid: unsharePid,
    first,
  } = await startHelper(
    "unshare",
    ["--pid", "--fork", "--mount", "--propagation", "private", python3(), "-c", NS_PTY_PY, String(opts.count), ptmx],
    "namespaced pty holder",
  );
  const report = JSON.parse(first) as { pid: number; devptsDev: string; indexes: number[]; pidNs: string };
  trackProcess(report.pid, "namespaced pty holder (pid 1 in its namespace)");
  return {
    pid: report.pid,
    unsharePid,
    devptsDev: report.devptsDev,
    indexes: report.indexes,
    pidNs: report.pidNs,
    async close(): Promise<void> {
      // pid 1 of a namespace ignores signals it has no handler for, but not SIGKILL from outside.
      await killAndWait(report.pid);
      await killAndWait(unsharePid, child);
    },
  };
}

/** A process that forks short-lived pty holders in a loop; it stops by itself after `durationMs` or `maxSpawns`. */
export interface PtyChurn {
  pid: number;
  /** Resolves with how many holders were forked, once the loop has ended and reaped them all. */
  done: Promise<number>;
  /** Asks the loop to stop early, then waits for it as `done` does. */
  stop(): Promise<number>;
}

/** Bounds of a PtyChurn: it stops at whichever comes first. */
export interface PtyChurnOptions {
  durationMs: number;
  maxSpawns: number;
  /** Holders alive at once (each lives 0–20 ms). */
  width?: number;
}

/** Starts a PtyChurn: processes appear and vanish while a scan runs. */
export async function ptyChurn(opts: PtyChurnOptions): Promise<PtyChurn> {
  const { child, pid, lines } = await startHelper(
    python3(),
    ["-c", CHURN_PY, String(opts.durationMs), String(opts.maxSpawns), String(opts.width ?? 8)],
    "pty churn",
  );
  const done = (async (): Promise<number> => {
    const next = await lines.next();
    await waitFor(() => child.exitCode !== null || child.signalCode !== null, 30_000, "pty churn to exit");
    untrackProcess(pid);
    if (next.done || child.exitCode !== 0) throw new Error(`pty churn failed (exit ${child.exitCode ?? child.signalCode})`);
    return Number(next.value);
  })();
  done.catch(() => undefined); // a test that fails before awaiting it must not also raise an unhandled rejection
  return {
    pid,
    done,
    async stop(): Promise<number> {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      return done;
    },
  };
}
