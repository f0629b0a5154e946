// Two projects: unit tests (test/unit, test/production) run in parallel worker threads; integration tests
// share the real kernel, Docker engine and private runtimes, so they run after them, one file at a time,
// each file in a child process of its own.
import { availableParallelism } from "node:os";
import { configDefaults, defineConfig } from "vitest/config";

const UNIT = ["test/unit/**/*.test.ts", "test/production/**/*.test.ts"];

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 120_000,
    reporters: ["default"],
    // Pool sizes are read from this root config only, not per project, so each project has its own pool:
    // "threads" for unit tests (every CPU; vitest's default would leave one worker on a 2-CPU host), and
    // "forks" limited to one for integration tests.
    poolOptions: {
      threads: { maxThreads: availableParallelism(), minThreads: 1 },
      forks: { maxForks: 1, minForks: 1 },
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
          // Every other test file, so one in a new folder runs too (serially, the safe way) rather than not at all.
          include: ["test/**/*.test.ts"],
          exclude: [...configDefaults.exclude, ...UNIT],
          pool: "forks",
          // After every unit test has finished, so nothing else loads the host while they run.
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
