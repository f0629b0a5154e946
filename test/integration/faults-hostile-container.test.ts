// A container that does its worst to the /proc scan, on a private Docker engine with the built daemon: 8 processes
// each holding a pty slave dup'd to the nofile hard limit (20,000), 40 holding ptys with 5.9 MB command lines, and
// 8 fake docker CLIs (argv `docker exec -it x sh`, a pty on stdin) each holding about 20,000 sockets.
// The daemon keeps cycling, stays healthy, and still reaps a leaked exec session in another container.
// Then issue 19's Fake-CLI test as the issue words it: the 8 fake CLIs alone, 60 s at a 2 s interval, /healthz p99
// within 1 s (measured here), cycles completing, a leaked session in another container reaped, and one in the
// hostile container itself, whose reap walks past the CLIs' 20,000 fds (unread, never refused).
// Other figures (cycle time, RSS, event-loop lag during that reap) are printed for the README, not asserted.
import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { dockerCli, isAlive, leakExecSession, sleep, startContainer, testContainerName, waitFor, TEST_IMAGE } from "./support/index.js";
import { trackContainer, untrackContainer } from "./support/track.js";
import { usePrivateEngine } from "./support/private-engine.js";
import type { RunningDaemon } from "./support/daemon.js";

const DUP_HOLDERS = 8;
const FAKE_CLIS = 8;
const ARGV_HOLDERS = 40;
const NOFILE = 20_000;
/**
 * 48 arguments of 120 KiB (one may not exceed 128 KiB): 5.9 MB of argv, about the most execve takes.
 * Linux caps argv + envp at a quarter of the stack rlimit and at most 3/4 of _STK_LIM (6 MiB), so
 * raising the stack rlimit (as here, to 64 MiB) allows no more than that.
 */
const ARG_PIECES = 48;
const ARG_PIECE_BYTES = 120 * 1024;

/** The helper, built static at test time: `all` forks the dup holders, the long-argv holders and the fake CLIs, `clis` the fake CLIs only, then waits. */
const HELPER_C = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* A pty pair: the master stays open in this process too. */
static int open_slave(void) {
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) { perror("ptmx"); exit(2); }
  int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
  if (slave < 0) { perror("slave"); exit(2); }
  return slave;
}

static void dup_holder(void) {
  int slave = open_slave();
  struct rlimit limit;
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
  while (dup(slave) >= 0) {}
  for (;;) pause();
}

/* A would-be docker CLI: its terminal on stdin, sockets up to near the nofile limit, then argv docker exec -it x sh. */
static void fake_cli(const char *self) {
  int slave = open_slave();
  dup2(slave, 0);
  struct rlimit limit;
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
  int pair[2];
  for (rlim_t open = 8; open + 2 < limit.rlim_cur - 16 && socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0; open += 2) {}
  char *args[] = {"docker", "exec", "-it", "x", "sh", NULL};
  execv(self, args);
  perror("execv");
  exit(2);
}

static void argv_holder(const char *self) {
  char **args = calloc(${ARG_PIECES} + 3, sizeof *args);
  args[0] = "hostile";
  args[1] = "held";
  for (int i = 0; i < ${ARG_PIECES}; i++) {
    args[i + 2] = malloc(${ARG_PIECE_BYTES});
    memset(args[i + 2], 'a' + i % 26, ${ARG_PIECE_BYTES} - 1);
    args[i + 2][${ARG_PIECE_BYTES} - 1] = 0;
  }
  execv(self, args);
  perror("execv");
  exit(2);
}

int main(int argc, char **argv) {
  if (strcmp(argv[0], "docker") == 0) {
    for (;;) pause();
  }
  if (argc > 1 && strcmp(argv[1], "held") == 0) {
    open_slave();
    for (;;) pause();
  }
  if (argc > 1 && strcmp(argv[1], "clis") == 0) {
    for (int i = 0; i < ${FAKE_CLIS}; i++) if (fork() == 0) fake_cli("/proc/self/exe");
    for (;;) pause();
  }
  for (int i = 0; i < ${DUP_HOLDERS}; i++) if (fork() == 0) dup_holder();
  for (int i = 0; i < ${ARGV_HOLDERS}; i++) if (fork() == 0) argv_holder("/proc/self/exe");
  for (int i = 0; i < ${FAKE_CLIS}; i++) if (fork() == 0) fake_cli("/proc/self/exe");
  for (;;) pause();
}
`;

const CONFIG = `
pollInterval: 2s
policy:
  idleTimeout: 10s
  minAge: 0s
reaper:
  grace: 1s
log:
  level: info
`;

/** Host pids whose cgroup names this container. */
function pidsOf(containerId: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cgroup`, "utf8").includes(containerId)) pids.push(Number(name));
    } catch {
      continue; // exited meanwhile
    }
  }
  return pids;
}

const fdCount = (pid: number): number => statSync(`/proc/${pid}/fd`).size;
/** The fake CLIs of the container: argv `docker exec …`, their sockets opened. */
const cliPids = (containerId: string): number[] =>
  pidsOf(containerId).filter((pid) => cmdlineStart(pid).startsWith("docker\0exec\0") && fdCount(pid) >= NOFILE - 40);
const cmdlineBytes = (pid: number): number => readFileSync(`/proc/${pid}/cmdline`).length;
/** The first bytes of a command line, without reading 8 MB. */
function cmdlineStart(pid: number): string {
  const buffer = Buffer.alloc(16);
  const file = openSync(`/proc/${pid}/cmdline`, "r");
  try {
    return buffer.subarray(0, readSync(file, buffer, 0, 16, 0)).toString("latin1");
  } catch {
    return "";
  } finally {
    closeSync(file);
  }
}
const rssMb = (pid: number): number => Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN) / 1024;

/** How long /healthz and the event loop are measured under the load. */
const MEASURE_MS = 60_000;

function percentile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
}

interface Probe {
  healthz: { atMs: number; ms: number; status: number }[];
  /** nodejs_eventloop_lag_max_seconds: the longest event-loop delay since the scrape before (prom-client resets it). */
  lagMax: { atMs: number; seconds: number }[];
  rssMb: number[];
  stop(): Promise<void>;
}

/** /healthz back to back (20 ms apart) and /metrics every 2 s, until stopped: what a probe and a scraper see. */
function probeDaemon(d: RunningDaemon): Probe {
  let running = true;
  const probe: Probe = {
    healthz: [],
    lagMax: [],
    rssMb: [],
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
  const healthz = async (): Promise<void> => {
    while (running) {
      const at = performance.now();
      const status = await d.get("/healthz").then(
        ({ status: code }) => code,
        () => 0,
      ); // 0: no answer (counted, fails the test)
      probe.healthz.push({ atMs: Date.now(), ms: performance.now() - at, status });
      await sleep(20);
    }
  };
  const metrics = async (): Promise<void> => {
    while (running) {
      const body = await d.get("/metrics").then(
        ({ body: text }) => text,
        () => "",
      );
      const lag = Number(/^nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(body)?.[1]);
      if (Number.isFinite(lag)) probe.lagMax.push({ atMs: Date.now(), seconds: lag });
      if (running) probe.rssMb.push(rssMb(d.pid));
      await sleep(2_000);
    }
  };
  const loops = [healthz(), metrics()];
  return probe;
}

/** The helper built in `dir` and started in a new container (nofile and stack raised) in `mode`; removed after the test. */
async function hostileContainer(dir: string, mode: "all" | "clis"): Promise<{ hostile: string; id: string }> {
  writeFileSync(join(dir, "hostile.c"), HELPER_C);
  execFileSync("gcc", ["-static", "-O2", "-o", join(dir, "hostile"), join(dir, "hostile.c")]);
  const hostile = testContainerName(`hostile-${mode}`);
  await dockerCli(["rm", "-f", hostile]).catch(() => undefined);
  trackContainer(hostile, async (names) => {
    await dockerCli(["rm", "-f", ...names]);
    for (const name of names) untrackContainer(name);
  });
  const id = (
    await dockerCli([
      "run",
      "-d",
      "--network",
      "none",
      "--name",
      hostile,
      "--ulimit",
      `nofile=${NOFILE}:${NOFILE}`,
      "--ulimit",
      "stack=67108864:67108864",
      TEST_IMAGE,
      "sleep",
      "1000000",
    ])
  ).trim();
  await dockerCli(["cp", join(dir, "hostile"), `${hostile}:/hostile`]);
  await dockerCli(["exec", "-d", hostile, "/hostile", mode]);
  return { hostile, id };
}

/** Cycles so far, their mean duration and the median's bucket, from the daemon's histogram. */
async function cycleFigures(d: RunningDaemon): Promise<{ cycles: number; meanCycleSeconds: number; medianCycleBucketSeconds: number | null }> {
  const exposition = (await d.get("/metrics")).body;
  const sum = Number(/^ptyreaper_poll_duration_seconds_sum (\S+)$/m.exec(exposition)?.[1]);
  const count = Number(/^ptyreaper_poll_duration_seconds_count (\S+)$/m.exec(exposition)?.[1]);
  return { cycles: count, meanCycleSeconds: sum / count, medianCycleBucketSeconds: medianFromBuckets(exposition) };
}

/** Cycle-duration buckets of the histogram, for a median estimate. */
function medianFromBuckets(exposition: string): number | null {
  const buckets: [number, number][] = [];
  for (const match of exposition.matchAll(/^ptyreaper_poll_duration_seconds_bucket\{le="([^"]+)"\} (\d+)$/gm)) {
    buckets.push([match[1] === "+Inf" ? Infinity : Number(match[1]), Number(match[2])]);
  }
  const total = buckets.at(-1)?.[1] ?? 0;
  return total === 0 ? null : (buckets.find(([, count]) => count >= total / 2)?.[0] ?? null);
}

describe("a hostile container (private dockerd, static helper, nofile and stack ulimits raised)", () => {
  // Each case stops its daemon and removes its containers when it ends: a daemon left running in enforce mode
  // would reap the next case's sessions before that case's own daemon could.
  const testbed = usePrivateEngine("hostile", { teardown: "each" });

  it("keeps the daemon cycling, healthy and reaping while 8 processes hold 20,000 dup'd pty fds, 40 hold 5.9 MB argv and 8 fake CLIs 20,000 sockets", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ptyreaper-hostile-"));
    try {
      const { id } = await hostileContainer(dir, "all");

      // The load is really there: 8 tables at the nofile limit, 40 argv of 8 MB, each holding a pty.
      const { dupPids, argvPids } = await waitFor(
        () => {
          const pids = pidsOf(id);
          const dup = pids.filter((pid) => fdCount(pid) >= NOFILE - 10);
          const argv = pids.filter((pid) => cmdlineStart(pid).startsWith("hostile\0held\0"));
          return dup.length === DUP_HOLDERS && argv.length === ARGV_HOLDERS && cliPids(id).length === FAKE_CLIS
            ? { dupPids: dup, argvPids: argv }
            : null;
        },
        60_000,
        `${DUP_HOLDERS} dup holders, ${ARGV_HOLDERS} long-argv holders and ${FAKE_CLIS} fake CLIs in the hostile container`,
        500,
      );
      expect(cmdlineBytes(argvPids[0] ?? 0)).toBeGreaterThanOrEqual(ARG_PIECES * ARG_PIECE_BYTES);
      expect(dupPids.map(fdCount).every((count) => count >= NOFILE - 10)).toBe(true);

      // Another container with a leaked exec session: it must still be reaped.
      const victim = testContainerName("hostile-victim");
      await startContainer({ name: victim });
      const leaked = await leakExecSession(victim);

      const startedAt = performance.now();
      const d = await testbed.startDaemon(CONFIG);
      const healthz: number[] = [];
      const rss: number[] = [];
      const reaped = await waitFor(
        async () => {
          healthz.push((await d.get("/healthz")).status);
          rss.push(rssMb(d.pid));
          return d.logs().find((line) => line.msg === "reaped exec session" && line.execId === leaked.execId);
        },
        120_000,
        "the leaked session in the other container to be reaped",
        1_000,
      ).catch(async (err: unknown) => {
        // What the daemon saw, to tell a slow cycle from a wrong one.
        const sessions = (await d.get("/sessions")).body.slice(0, 4_000);
        const lines = d
          .logs()
          .filter((line) => line.level !== 20)
          .map((line) => JSON.stringify(line).slice(0, 300));
        throw new Error(`${(err as Error).message}\nlogs:\n${lines.join("\n")}\nsessions: ${sessions}`, { cause: err });
      });
      const reapedAt = performance.now();
      expect(reaped.reason).toBe("idle");
      await waitFor(() => !isAlive(leaked.shellPid), 10_000, "the leaked shell to end");

      // Cycles keep completing with the load still there.
      const before = (await d.metric("ptyreaper_poll_duration_seconds_count")) ?? 0;
      for (let i = 0; i < 5; i++) {
        await sleep(2_000); // a time on purpose: the cycles completed in these 10 s under load are the measurement
        healthz.push((await d.get("/healthz")).status);
        rss.push(rssMb(d.pid));
      }
      const after = (await d.metric("ptyreaper_poll_duration_seconds_count")) ?? 0;
      expect(after - before).toBeGreaterThanOrEqual(3);
      expect(healthz.every((status) => status === 200)).toBe(true);
      expect(await d.metric("ptyreaper_poll_errors_total", { stage: "scan" })).toBe(0);
      // The fake CLIs' fds were never read: each cycle's look at them stopped at one stat.
      expect(await d.metric("ptyreaper_process_reads_cut_total", { reason: "fd_cap" })).toBeGreaterThanOrEqual(FAKE_CLIS);
      expect(pidsOf(id).filter((pid) => fdCount(pid) >= NOFILE - 10)).toHaveLength(DUP_HOLDERS); // the load never went away

      // For docs/reliability.md: measured figures, not assertions.
      console.log(
        JSON.stringify({
          hostileFigures: {
            ...(await cycleFigures(d)),
            reapedAfterSeconds: (reapedAt - startedAt) / 1000,
            runSeconds: (performance.now() - startedAt) / 1000,
            loadAverage: loadavg()[0],
            rssMbMax: Math.max(...rss),
            rssMbLast: rss.at(-1),
            cutPasses: await d.metric("ptyreaper_scan_passes_cut_total"),
            healthzSamples: healthz.length,
          },
        }),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);

  it("issue 19's fake CLIs alone: over 60 s at a 2 s interval /healthz p99 stays within 1 s, cycles complete, and leaked sessions are reaped elsewhere and in that container", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ptyreaper-fake-clis-"));
    try {
      const { hostile, id } = await hostileContainer(dir, "clis");
      await waitFor(() => cliPids(id).length === FAKE_CLIS, 60_000, `${FAKE_CLIS} fake CLIs holding about ${NOFILE} fds each`, 500);

      // Two leaked exec sessions (client SIGKILLed under a real tty): one in another container, and one in the
      // hostile container itself, whose reap walks the container's processes, the 8 fake CLIs among them.
      const victim = testContainerName("fake-clis-victim");
      await startContainer({ name: victim });
      const leaked = await leakExecSession(victim);
      const leakedHere = await leakExecSession(hostile);

      const startedAt = performance.now();
      const startedAtMs = Date.now();
      const d = await testbed.startDaemon(CONFIG);
      const probe = probeDaemon(d);
      const cyclesAtStart = (await d.metric("ptyreaper_poll_duration_seconds_count")) ?? 0;
      const reapedLine = (execId: string) => d.logs().find((line) => line.msg === "reaped exec session" && line.execId === execId);
      // The measurement window: 60 s of /healthz and /metrics under the load, at a 2 s poll interval.
      await sleep(MEASURE_MS);
      const cyclesInWindow = ((await d.metric("ptyreaper_poll_duration_seconds_count")) ?? 0) - cyclesAtStart;
      const [reaped, reapedHere] = await waitFor(
        () => {
          const both = [reapedLine(leaked.execId), reapedLine(leakedHere.execId)];
          return both.every((line) => line !== undefined) ? both : null;
        },
        // The shells end at the first signal; the release then waits for dockerd to handle their exit, which took
        // over 2 minutes on this shared host under load (the reaper retries meanwhile, and counts those waits as failures).
        240_000,
        "both leaked sessions to be reaped",
        1_000,
      ).catch(async (err: unknown) => {
        await probe.stop();
        // What the daemon saw, to tell a slow cycle from a wrong one.
        const sessions = (await d.get("/sessions")).body.slice(0, 4_000);
        const lines = d
          .logs()
          .filter((line) => line.level !== 20)
          .map((line) => JSON.stringify(line).slice(0, 600));
        throw new Error(`${(err as Error).message}\nlogs:\n${lines.join("\n")}\nsessions: ${sessions}`, { cause: err });
      });
      const reapedAt = performance.now();
      await probe.stop();
      expect(reaped?.reason).toBe("idle");
      await waitFor(() => !isAlive(leaked.shellPid) && !isAlive(leakedHere.shellPid), 10_000, "both leaked shells to end");

      const latencies = probe.healthz.map((sample) => sample.ms);
      const p99 = percentile(latencies, 0.99);
      const statuses: Record<string, number> = {};
      for (const sample of probe.healthz) statuses[sample.status] = (statuses[sample.status] ?? 0) + 1;
      // The hostile container's reap steps, from a second before its first signal to two after its last one (the
      // release that follows waits for dockerd): how long the loop was blocked meanwhile.
      const signals = d.logs().filter((line) => line.msg === "signalled exec session" && line.execId === leakedHere.execId);
      const firstSignal = signals[0];
      const from = Date.parse(String(firstSignal?.time)) - 1_000; // the daemon logs ISO times
      const to = Date.parse(String(signals.at(-1)?.time)) + 2_000;
      const during = <T extends { atMs: number }>(samples: T[]): T[] => samples.filter((sample) => sample.atMs >= from && sample.atMs <= to);
      const reapHealthz = during(probe.healthz).map((sample) => sample.ms);
      const reapLag = during(probe.lagMax).map((sample) => sample.seconds);

      // For the README: measured figures, printed before the assertions (the p99 bound below is the issue's).
      console.log(
        JSON.stringify({
          hostileFigures: {
            ...(await cycleFigures(d)),
            cyclesInWindow,
            healthz: { samples: latencies.length, statuses, p50Ms: percentile(latencies, 0.5), p99Ms: p99, maxMs: Math.max(...latencies) },
            eventLoopLagMaxSeconds: Math.max(...probe.lagMax.map((sample) => sample.seconds)),
            // [seconds since the daemon started, lag] of every scrape that saw the loop blocked 0.2 s or more.
            lagOver200Ms: probe.lagMax
              .filter((sample) => sample.seconds >= 0.2)
              .map((sample) => [Math.round((sample.atMs - startedAtMs) / 100) / 10, sample.seconds]),
            reapInHostileContainer: {
              steps: signals.map((line) => line.signal),
              seconds: (to - from - 3_000) / 1000,
              releasedAfterSeconds: (Date.parse(String(reapedHere?.time)) - from - 1_000) / 1000,
              healthzSamples: reapHealthz.length,
              healthzMaxMs: Math.max(...reapHealthz),
              eventLoopLagMaxSeconds: reapLag.length > 0 ? Math.max(...reapLag) : null,
            },
            readsCut: {
              fd_cap: await d.metric("ptyreaper_process_reads_cut_total", { reason: "fd_cap" }),
              read_budget: await d.metric("ptyreaper_process_reads_cut_total", { reason: "read_budget" }),
            },
            reapedAfterSeconds: (reapedAt - startedAt) / 1000,
            loadAverage: loadavg()[0],
            rssMbMax: Math.max(...probe.rssMb),
            cutPasses: await d.metric("ptyreaper_scan_passes_cut_total"),
          },
        }),
      );
      // /healthz answered every time, p99 within 1 s, and cycles kept completing: 30 are due in 60 s; a pass cut at
      // its 2 s budget on a busy host stretches a cycle, so a third of them is the floor (as 3 in 10 s was before).
      expect(probe.healthz.length).toBeGreaterThan(1_000);
      expect(probe.healthz.every((sample) => sample.status === 200)).toBe(true);
      expect(p99).toBeLessThanOrEqual(1_000);
      expect(cyclesInWindow).toBeGreaterThanOrEqual(MEASURE_MS / 2_000 / 3);
      expect(await d.metric("ptyreaper_poll_errors_total", { stage: "scan" })).toBe(0);
      // The fake CLIs' fds were never read: each cycle's look at them stopped at one stat.
      expect(await d.metric("ptyreaper_process_reads_cut_total", { reason: "fd_cap" })).toBeGreaterThanOrEqual(FAKE_CLIS);
      // The reap in the hostile container passed over its 20,000-fd processes (not listed as holders of the exec's pty):
      // no refusal, and no failure for a slave left held (only waits for dockerd's release, if any).
      expect(await d.metric("ptyreaper_reap_refusals_total", { reason: "fd_cap", runtime: "docker" })).toBe(0);
      expect(d.logs().filter((line) => line.msg === "failed to reap exec session" && String(line.why).includes("slave holders"))).toEqual([]);
      expect(cliPids(id)).toHaveLength(FAKE_CLIS); // the load never went away

      expect(firstSignal).toBeDefined();
      expect(reapHealthz.length).toBeGreaterThan(0); // /healthz answered during the reap in the hostile container
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 560_000);
});
