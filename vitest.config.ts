// Unit tests (test/unit, test/production) run first, in parallel worker threads. Integration tests share the
// real kernel and engines, but each file starts private instances of its own (dockerd, containerd, Podman),
// so most run next, INTEGRATION_FORKS files at a time, each in a child process of its own. A file that needs
// the host to itself (ALONE) runs after them, one at a time: nothing else allocates a pty while it runs.
import { existsSync } from "node:fs";
import { basename } from "node:path";
import { configDefaults, defineConfig } from "vitest/config";
import { availableParallelism } from "node:os";

const UNIT = ["test/unit/**/*.test.ts", "test/production/**/*.test.ts"];

/**
 * Files that read the whole host: they lower kernel.pty.max, compare a scan with kernel.pty.nr or with
 * another scan a moment later, expect the only container over its pty share to be theirs, or count the
 * cycles a daemon completes under a load of their own (20,000 pty fds that every daemon on the host reads,
 * HTTP storms that take every CPU). Another file's ptys, containers or load would change what they
 * measure, and their load would slow every other file.
 */
const ALONE = [
  "test/integration/docker-exhaustion.test.ts", // lowers kernel.pty.max
  "test/integration/docker-sessions-cli.test.ts", // ptys found = pty.nr
  "test/integration/kernel-scan.test.ts", // ptys found = pty.nr
  "test/integration/kernel-pid-listing.test.ts", // moves the host's pid allocator back (ns_last_pid)
  "test/integration/incremental-scan.test.ts", // a steady pass is full at once when pty.nr moves
  "test/integration/scan-worker.test.ts", // the same
  "test/integration/safety-steady-scan-reap.test.ts", // the same: it proves what steady passes miss
  "test/integration/native-scan.test.ts", // two readers' scans of the host, compared
  "test/integration/bpf-finder.test.ts", // the same
  "test/integration/faults-proc-churn.test.ts", // counts the cycles whose scan disagrees with pty.nr
  "test/integration/docker-pressure-tenant.test.ts", // the daemon names every container over its share on the host
  "test/integration/faults-hostile-container.test.ts", // counts cycles under its load, which every daemon reads
  "test/integration/faults-scrape-storm.test.ts", // the loop's cadence while wrk loads every CPU
  "test/integration/http-auth-storm.test.ts", // polls completed while 100 clients load every CPU
];

// A renamed file would silently lose its group and run beside the others.
for (const file of ALONE)
  if (!existsSync(new URL(file, import.meta.url))) throw new Error(`vitest.config.ts: ALONE names ${file}, which does not exist`);

/**
 * Integration files run at once. Most of their time is spent waiting for poll cycles and engines, not on a
 * CPU, so four keep a 2-CPU host busy without starving a daemon's cycle. PTYREAPER_TEST_FORKS sets it on a
 * host that is busy with other work (1: every file alone, as before).
 */
const INTEGRATION_FORKS = integrationForks(process.env.PTYREAPER_TEST_FORKS);

function integrationForks(value: string | undefined): number {
  if (value === undefined || value === "") return 4;
  if (!/^[1-9][0-9]?$/.test(value)) throw new Error(`vitest.config.ts: PTYREAPER_TEST_FORKS must be a whole number from 1 to 99, not "${value}"`);
  return Number(value);
}

const alone = ALONE.map((file, i) => ({
  extends: true as const,
  test: {
    name: `alone:${basename(file, ".test.ts")}`,
    include: [file],
    pool: "forks" as const,
    // A group of its own, after the parallel ones: groups run one after another.
    sequence: { groupOrder: 2 + i },
  },
}));

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 120_000,
    reporters: ["default"],
    // Pool sizes are read from this root config only, not per project: "threads" (unit tests) gets every
    // CPU (vitest's default would leave one worker on a 2-CPU host), "forks" (integration tests) gets
    // INTEGRATION_FORKS, and each ALONE file is the only file of its group.
    poolOptions: {
      threads: { maxThreads: availableParallelism(), minThreads: 1 },
      forks: { maxForks: INTEGRATION_FORKS, minForks: 1 },
    },
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: UNIT,
          pool: "threads",
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: "integration",
          // Every other test file, so one in a new folder runs too rather than not at all.
          include: ["test/**/*.test.ts"],
          exclude: [...configDefaults.exclude, ...UNIT, ...ALONE],
          pool: "forks",
          // Files share the CPUs, so a test's wall time stretches with its neighbours': the deadlines that
          // matter are its own waits, and this only catches a test that hangs.
          testTimeout: 120_000,
          // After every unit test has finished, so nothing else loads the host while they run.
          sequence: { groupOrder: 1 },
        },
      },
      ...alone,
    ],
  },
});
