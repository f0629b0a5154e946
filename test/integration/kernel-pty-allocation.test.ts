// The allocation marker on the real kernel: the slave inode's ctime, read through a holder's fd by the reaper's
// ProcessTable, in a devpts instance of the test's own (a private mount namespace), so no other pty is touched.
import { describe, expect, it } from "vitest";
import { processTableOf, HOLDER_MAX_FDS, MIN_ALLOCATION_AGE_MS, STEP_READ_BUDGET_MS } from "../../src/reaper/identity.js";
import { FdReadBudget } from "../../src/procfs/fd-budget.js";
import { ProcFs } from "../../src/procfs/procfs.js";
import { isAlive, killAndWait, python3, startHelper, waitFor } from "./support/index.js";

// Commands on stdin, one JSON answer per line: alloc, io (a write each way and a read), chmod, free.
const HOLDER_PY = String.raw`
import fcntl, json, os, struct, subprocess, sys
subprocess.run(["mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620", "devpts", "/dev/pts"], check=True)
TIOCGPTN, TIOCSPTLCK = 0x80045430, 0x40045431
st = os.stat("/dev/pts")
dev = "%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev))
m = s = n = None
print(json.dumps({"pid": os.getpid(), "dev": dev}), flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "alloc":
        m = os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY)
        n = struct.unpack("I", fcntl.ioctl(m, TIOCGPTN, b"\0" * 4))[0]
        fcntl.ioctl(m, TIOCSPTLCK, struct.pack("i", 0))
        s = os.open("/dev/pts/%d" % n, os.O_RDWR | os.O_NOCTTY)
    elif cmd == "io":
        os.write(m, b"in\n"); os.read(s, 16); os.write(s, b"out\n"); os.read(m, 16)
    elif cmd == "chmod":
        os.chmod("/dev/pts/%d" % n, 0o600)
    elif cmd == "free":
        os.close(s); os.close(m)
    times = {} if cmd == "free" else {"atimeNs": str(os.fstat(s).st_atime_ns), "mtimeNs": str(os.fstat(s).st_mtime_ns)}
    print(json.dumps({"index": n, "ctimeNs": str(os.fstat(s).st_ctime_ns) if cmd != "free" else None, **times}), flush=True)
`;

// Two holders of one pty, each with 5,000 more fds: the parent on its stdin, a child past its standard streams only.
const CROWDED_PY = String.raw`
import ctypes, fcntl, json, os, resource, struct, subprocess, time
subprocess.run(["mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620", "devpts", "/dev/pts"], check=True)
st = os.stat("/dev/pts")
dev = "%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev))
m = os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY)
fcntl.ioctl(m, 0x40045431, struct.pack("i", 0))
n = struct.unpack("I", fcntl.ioctl(m, 0x80045430, b"\0" * 4))[0]
s = os.open("/dev/pts/%d" % n, os.O_RDWR | os.O_NOCTTY)
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
null = os.open("/dev/null", os.O_RDONLY)
extra = [os.dup(null) for _ in range(5000)]
child = os.fork()
if child == 0:
    ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG: SIGKILL with its parent
    os.dup2(null, 0)
    while True: time.sleep(3600)
os.dup2(s, 0)
print(json.dumps({"onStdin": os.getpid(), "past": child, "dev": dev, "index": n, "ctimeNs": str(os.fstat(s).st_ctime_ns)}), flush=True)
while True: time.sleep(3600)
`;

describe("a pty allocation's marker (real kernel, private devpts)", () => {
  it("is the slave's ctime: unmoved by I/O, moved by chmod, gone when freed, later for the next allocation of the index", async () => {
    const helper = await startHelper("unshare", ["--mount", "--propagation", "private", python3(), "-c", HOLDER_PY], "private devpts pty holder");
    try {
      const { pid, dev } = JSON.parse(helper.first) as { pid: number; dev: string };
      const ask = async (cmd: string): Promise<{ index: number; ctimeNs: string | null; atimeNs?: string; mtimeNs?: string }> => {
        helper.child.stdin?.write(`${cmd}\n`);
        const next = await helper.lines.next();
        if (next.done) throw new Error(`holder exited on ${cmd}`);
        return JSON.parse(next.value) as { index: number; ctimeNs: string | null; atimeNs?: string; mtimeNs?: string };
      };
      const table = processTableOf(new ProcFs("/proc"));
      const step = (): FdReadBudget => new FdReadBudget(HOLDER_MAX_FDS, STEP_READ_BUDGET_MS);

      const first = await ask("alloc");
      expect(first.index).toBe(0);
      const allocated = table.slaveCtimeNs(pid, dev, 0, step());
      expect(String(allocated)).toBe(first.ctimeNs);
      expect(table.slaveCtimeNs(pid, dev, 1, step())).toBeNull();

      const io = await ask("io");
      expect(table.slaveCtimeNs(pid, dev, 0, step())).toBe(allocated);
      // The idle clock the reaper reads again before its first signal: the same inode's atime and mtime as the holder's fstat.
      const activity = table.slaveActivity(pid, dev, 0, step());
      expect(activity).toEqual({ atimeMs: Number(io.atimeNs) / 1e6, mtimeMs: Number(io.mtimeNs) / 1e6 });
      expect(table.slaveActivity(pid, dev, 1, step())).toBeNull();

      // ctime is the coarse clock (a few ms a tick): a chmod in the allocation's own tick would leave it as it was.
      await waitFor(() => Date.now() > Number((allocated as bigint) / 1_000_000n) + 50, 5_000, "a clock tick past the allocation");
      await ask("chmod");
      const chmodded = table.slaveCtimeNs(pid, dev, 0, step());
      expect(chmodded).not.toBeNull();
      expect(chmodded).not.toBe(allocated); // a chmod looks like a new allocation: the reaper stops then (safe side)

      await ask("free");
      expect(table.slaveCtimeNs(pid, dev, 0, step())).toBeNull();

      // The reaper pins an allocation only once its ctime is MIN_ALLOCATION_AGE_MS old; any later allocation then has a later ctime.
      const pinnedAtMs = Number((chmodded as bigint) / 1_000_000n) + MIN_ALLOCATION_AGE_MS;
      await waitFor(() => Date.now() > pinnedAtMs, 5_000, "the pin's minimum age to pass");
      const again = await ask("alloc");
      expect(again.index).toBe(0); // the freed index, handed out again
      const reallocated = table.slaveCtimeNs(pid, dev, 0, step());
      expect(reallocated).not.toBeNull();
      expect(reallocated as bigint).toBeGreaterThan(chmodded as bigint);
      console.log(`pty allocation marker: ctime ${String(allocated)} → chmod ${String(chmodded)} → reallocated ${String(reallocated)}`);
    } finally {
      await killAndWait(helper.pid, helper.child);
    }
  });

  it("is read within the reaper's cap: on a holder's stdin whatever its fd count, past it only up to HOLDER_MAX_FDS fds", async () => {
    const helper = await startHelper("unshare", ["--mount", "--propagation", "private", python3(), "-c", CROWDED_PY], "pty holders with 5,000 fds");
    const { onStdin, past, dev, index, ctimeNs } = JSON.parse(helper.first) as {
      onStdin: number;
      past: number;
      dev: string;
      index: number;
      ctimeNs: string;
    };
    try {
      const table = processTableOf(new ProcFs("/proc"));
      const cuts: string[] = [];
      const step = (): FdReadBudget => new FdReadBudget(HOLDER_MAX_FDS, STEP_READ_BUDGET_MS, (cut) => cuts.push(cut));
      let at = performance.now();
      expect(String(table.slaveCtimeNs(onStdin, dev, index, step()))).toBe(ctimeNs);
      const stdinMs = performance.now() - at;
      at = performance.now();
      expect(table.slaveCtimeNs(past, dev, index, step())).toBe("fd_cap");
      const cutMs = performance.now() - at;
      expect(cuts).toEqual(["fd_cap"]);
      // Only the cap stood in the way: with room for its fds, the same read finds the slave.
      at = performance.now();
      expect(String(table.slaveCtimeNs(past, dev, index, new FdReadBudget(10_000, 10_000)))).toBe(ctimeNs);
      const wholeMs = performance.now() - at;
      console.log(
        `reaper identity read of a 5,000-fd holder: on stdin ${stdinMs.toFixed(2)} ms, cut ${cutMs.toFixed(2)} ms, whole ${wholeMs.toFixed(1)} ms`,
      );
    } finally {
      await killAndWait(helper.pid, helper.child);
      await waitFor(() => !isAlive(past), 10_000, "the child holder to die with its parent");
    }
  });
});
