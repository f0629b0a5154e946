// Exhaustion on the real kernel and engine: with kernel.pty.max lowered so containers run out,
// `docker exec -it` fails with ENOSPC; ptyreaper's pressure policy reclaims and exec works again.
import { execFile } from "node:child_process";
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
} from "./harness/index.js";
import { startDaemon, type RunningDaemon } from "./support/daemon.js";

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
        leaked.push(await leakExecSession(name));
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
