// Exhaustion on the real kernel and engine: with kernel.pty.max lowered so containers run out,
// `docker exec -it` fails with ENOSPC; ptyreaper's pressure policy reclaims and exec works again.
// And the capacity ptyreaper reports is exact: usage is 1 at the very pty after which the kernel refuses.
import { execFile, spawn, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DOCKER_BIN,
  cleanupAll,
  isAlive,
  leakExecSession,
  ptyNr,
  requireDocker,
  startContainer,
  testContainerName,
  waitFor,
  type ExecSessionHandle,
} from "./support/index.js";
import { startDaemon, type RunningDaemon } from "./support/daemon.js";
import { killAndWait, trackProcess } from "./support/track.js";
import { python3 } from "./support/util.js";
import { createInterface } from "node:readline";
import { ProcFs } from "../../src/procfs/procfs.js";
import { containerCapacity } from "../../src/domain/types.js";
import { PtyreaperMetrics } from "../../src/metrics/metrics.js";
import { makeSnapshot } from "../unit/metrics/snapshot-factory.js";

const run = promisify(execFile);
const PTY_MAX = "/proc/sys/kernel/pty/max";
const readInt = (path: string): number => Number(readFileSync(path, "utf8").trim());

/** `docker exec -it C true` under a real tty; resolves with what the terminal showed. */
async function execUnderTty(container: string): Promise<{ ok: boolean; output: string }> {
  try {
    const { stdout, stderr } = await run("script", ["-qec", `${DOCKER_BIN} exec -it ${container} true`, "/dev/null"], { timeout: 30_000 });
    return { ok: true, output: stdout + stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, output: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

/** Resolves once pty.nr has not changed for 3 s (at most 90 s). */
async function waitForStablePtyNr(): Promise<void> {
  let last = ptyNr();
  let stableSince = Date.now();
  await waitFor(
    () => {
      const now = ptyNr();
      if (now !== last) {
        last = now;
        stableSince = Date.now();
      }
      return Date.now() - stableSince >= 3_000;
    },
    90_000,
    "pty.nr to hold still",
  );
}

describe("pty exhaustion reclaimed by the pressure policy", () => {
  const name = testContainerName("exhaust");
  const originalMax = readInt(PTY_MAX);
  let daemon: RunningDaemon | null = null;

  beforeAll(async () => {
    await requireDocker();
    await startContainer({ name });
  }, 60_000);

  afterAll(async () => {
    try {
      await daemon?.stop();
      await cleanupAll();
    } finally {
      writeFileSync(PTY_MAX, String(originalMax));
    }
  }, 120_000);

  it("fails docker exec -it at max - reserve, then recovers once ptyreaper reaps", async () => {
    const reserve = readInt("/proc/sys/kernel/pty/reserve");
    const leaked: ExecSessionHandle[] = [];
    try {
      // Ptys of earlier tests may still be on their way out (a torn-down engine's shims): wait until
      // pty.nr holds still, or the limit below would be computed from ptys about to disappear.
      await waitForStablePtyNr();
      // Containers get six more ptys; host logins keep `reserve` more (they may use up to max). A
      // `docker exec -it` under script(1) holds about two more while it starts, so the engine refuses
      // with four or five leaked: high 0.6 is then reached, and low 0.4 leaves room for a new exec.
      writeFileSync(PTY_MAX, String(reserve + ptyNr() + 6));
      const capacity = readInt(PTY_MAX) - reserve;
      // Leak until the engine refuses (other ptys on a busy host may come and go meanwhile).
      let refused = await execUnderTty(name);
      for (let i = 0; i < 8 && refused.ok; i++) {
        // The probe's own ptys are freed only once the shim has handled its exit: the next leak may be the one refused.
        const leak = await leakExecSession(name).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
        if (leak instanceof Error) {
          if (!/no space left on device/i.test(leak.message)) throw leak;
          refused = { ok: false, output: leak.message };
          break;
        }
        leaked.push(leak);
        refused = await execUnderTty(name);
      }
      expect(leaked.length).toBeGreaterThanOrEqual(1);
      expect(refused.ok).toBe(false);
      expect(refused.output).toMatch(/no space left on device/i);

      // Still exhausted when ptyreaper starts: the pressure it must relieve is real.
      expect((await execUnderTty(name)).ok).toBe(false);
      daemon = await startDaemon(`
pollInterval: 2s
policy:
  idleTimeout: "off"
  minAge: 5s
  pressure:
    high: 0.6
    low: 0.4
    minIdle: 10s
reaper:
  grace: 2s
`);
      const d = daemon;
      await waitFor(async () => ((await d.metric("ptyreaper_reaped_sessions_total", { reason: "pressure" })) ?? 0) >= 1, 120_000, "a pressure reap");
      await waitFor(() => ptyNr() < capacity, 15_000, "pty.nr to fall below container capacity");
      expect(await d.metric("ptyreaper_reaped_sessions_total", { reason: "idle" })).toBe(0);
      const reapedPids = leaked.filter((s) => !isAlive(s.shellPid));
      expect(reapedPids.length).toBeGreaterThanOrEqual(1);
      const usage = await d.metric("ptyreaper_pty_usage_ratio");
      expect(usage).not.toBeNull();
      const works = await execUnderTty(name);
      expect(works.output).not.toMatch(/no space left on device/i);
      expect(works.ok).toBe(true);
    } finally {
      writeFileSync(PTY_MAX, String(originalMax));
    }
    expect(readInt(PTY_MAX)).toBe(originalMax);
  }, 240_000);
});

// Opens ptys in a devpts of its own, in a private mount namespace as a container's is (so the kernel
// keeps `reserve` from it), until the kernel refuses one; reports the count before and after the
// refusal, then holds them and releases N on "release N".
const FILL_PY = `
import errno, json, os, subprocess, sys
subprocess.run(["mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620", "devpts", "/dev/pts"], check=True)
def nr():
    with open("/proc/sys/kernel/pty/nr") as f:
        return int(f.read())
held = []
while True:
    before = nr()
    try:
        held.append(os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY))
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        print(json.dumps({"held": len(held), "nrBefore": before, "nrAfter": nr()}), flush=True)
        break
    if len(held) > 5000:
        sys.exit("no pty limit reached after 5000 ptys")
for line in sys.stdin:
    for _ in range(int(line.split()[1])):
        os.close(held.pop())
    print(json.dumps({"held": len(held), "nr": nr()}), flush=True)
`;

interface Filler {
  refusedAt: { held: number; nrBefore: number; nrAfter: number };
  release(count: number): Promise<{ held: number; nr: number }>;
  close(): Promise<void>;
}

async function fillContainerPtys(): Promise<Filler> {
  const child = spawn("unshare", ["--mount", "--propagation", "private", python3(), "-c", FILL_PY], { stdio: ["pipe", "pipe", "pipe"] });
  if (child.pid === undefined) throw new Error("could not start the pty filler (unshare)");
  const pid = child.pid;
  trackProcess(pid, "container pty filler", child);
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async <T>(): Promise<T> => {
    const line = await lines.next();
    if (line.done) throw new Error(`the pty filler exited: ${stderr.trim()}`);
    return JSON.parse(line.value) as T;
  };
  const refusedAt = await next<Filler["refusedAt"]>();
  return {
    refusedAt,
    release: async (count) => {
      child.stdin.write(`release ${count}\n`);
      return next();
    },
    close: () => killAndWait(pid, child),
  };
}

const MAIN = new URL("../../dist/main.js", import.meta.url).pathname;

interface SessionsReport {
  pty: { allocated: number; max: number; reserve: number; containerCapacity: number };
}

describe("container capacity on the real kernel", () => {
  const name = testContainerName("capacity");
  const originalMax = readInt(PTY_MAX);

  beforeAll(async () => {
    await requireDocker();
    await startContainer({ name });
  }, 60_000);

  afterAll(async () => {
    try {
      await cleanupAll();
    } finally {
      writeFileSync(PTY_MAX, String(originalMax));
    }
  }, 120_000);

  it("is max - reserve - 1: at the refusal usage is exactly 1, docker exec -it fails, and works again two ptys below", async () => {
    const reserve = readInt("/proc/sys/kernel/pty/reserve");
    let filler: Filler | null = null;
    try {
      await waitForStablePtyNr();
      // Room for a few container ptys; the exact count does not matter, the boundary does.
      writeFileSync(PTY_MAX, String(reserve + ptyNr() + 6));
      const max = readInt(PTY_MAX);
      // Other processes on the machine may allocate or free a pty meanwhile: fill again until the
      // count stood still across the refusal, so that what was refused is known to the pty.
      for (let attempt = 0; attempt < 5; attempt++) {
        await filler?.close();
        filler = await fillContainerPtys();
        if (filler.refusedAt.nrBefore === filler.refusedAt.nrAfter) break;
      }
      const f = filler;
      if (!f) throw new Error("no filler");
      expect(f.refusedAt.held).toBeGreaterThan(0);
      expect(f.refusedAt.nrBefore).toBe(f.refusedAt.nrAfter);
      // The kernel fact: with this many allocated, a container's next pty was refused.
      const refusedAt = f.refusedAt.nrBefore;
      expect(refusedAt).toBe(max - reserve - 1);

      // What the daemon would publish now: read the limits and feed the metrics exactly as a cycle does.
      let limits = new ProcFs("/proc").ptyLimits();
      for (let i = 0; i < 20 && limits.allocated !== refusedAt; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50)); // no daemon: a pause for pty.nr to settle before reading again
        limits = new ProcFs("/proc").ptyLimits();
      }
      expect(limits.allocated).toBe(refusedAt);
      expect(containerCapacity(limits)).toBe(refusedAt);
      const metrics = new PtyreaperMetrics({ version: "test", defaultMetrics: false });
      metrics.observeSnapshot(makeSnapshot({ limits }));
      const ratio = (await metrics.registry.getSingleMetric("ptyreaper_pty_usage_ratio")?.get())?.values[0]?.value;
      expect(ratio).toBe(1);

      // What `ptyreaper sessions --json` says at the same moment.
      let report: SessionsReport | null = null;
      for (let i = 0; i < 5; i++) {
        const run = spawnSync(process.execPath, [MAIN, "sessions", "--json"], { encoding: "utf8", timeout: 60_000 });
        expect(run.status, run.stderr).toBe(0);
        report = JSON.parse(run.stdout) as SessionsReport;
        if (report.pty.allocated === refusedAt) break;
      }
      expect(report?.pty).toMatchObject({ allocated: refusedAt, max, reserve, containerCapacity: max - reserve - 1 });
      expect((report?.pty.allocated ?? 0) / (report?.pty.containerCapacity ?? 1)).toBe(1);

      // A real docker exec -it is refused now.
      const refused = await execUnderTty(name);
      expect(refused.ok).toBe(false);
      expect(refused.output).toMatch(/no space left on device/i);

      // Two below capacity: the client's own host pty takes one, the container pty fits in the other.
      const released = await f.release(2);
      expect(released.held).toBe(f.refusedAt.held - 2);
      const works = await execUnderTty(name);
      expect(works.output).not.toMatch(/no space left on device/i);
      expect(works.ok).toBe(true);
    } finally {
      writeFileSync(PTY_MAX, String(originalMax));
      await filler?.close();
    }
    expect(readInt(PTY_MAX)).toBe(originalMax);
  }, 240_000);
});
