// Everything the harness starts is recorded here, so one afterAll(cleanupAll) ends exactly that and nothing else.
import type { ChildProcess } from "node:child_process";
import { isAlive, sleep, startTicksOf } from "./util.js";

// A module-level registry on purpose: vitest gives each test file its own module instance, so the
// registry is per file, and a test that forgets a close() still leaves nothing behind after afterAll.
const processes = new Map<number, { child: ChildProcess | null; what: string; startTicks: number | null }>();
const containers = new Set<string>();
type ContainerRemover = (names: string[]) => Promise<void>;
let removeContainers: ContainerRemover | null = null;

/** Records a process the harness started (a direct child, or a pid it caused to exist, like a leaked shell). */
export function trackProcess(pid: number, what: string, child: ChildProcess | null = null): void {
  processes.set(pid, { child, what, startTicks: startTicksOf(pid) });
}

/** Forgets a process once it has been ended and waited for. */
export function untrackProcess(pid: number): void {
  processes.delete(pid);
}

/** Records a container the harness created (by name), and how to remove containers. */
export function trackContainer(name: string, remover: ContainerRemover): void {
  containers.add(name);
  removeContainers = remover;
}

/** Forgets a container once it has been removed. */
export function untrackContainer(name: string): void {
  containers.delete(name);
}

/**
 * SIGKILLs `pid` (only if still alive, and still the process that was tracked: same start time) and
 * waits until it is gone or a zombie. A direct child is also waited for through its ChildProcess, so
 * it is reaped and leaves no zombie.
 */
export async function killAndWait(pid: number, child: ChildProcess | null = null, timeoutMs = 10_000): Promise<void> {
  const expectedStart = processes.get(pid)?.startTicks ?? null;
  if (expectedStart !== null && startTicksOf(pid) !== expectedStart) {
    untrackProcess(pid); // exited already, and the pid may now belong to someone else
    return;
  }
  const exited =
    child && child.exitCode === null && child.signalCode === null ? new Promise<void>((resolve) => child.once("exit", () => resolve())) : null;
  if (isAlive(pid)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
  }
  const deadline = Date.now() + timeoutMs;
  if (exited) {
    await Promise.race([exited, sleep(timeoutMs)]);
  }
  while (isAlive(pid)) {
    if (Date.now() > deadline) throw new Error(`pid ${pid} still alive ${timeoutMs}ms after SIGKILL`);
    await sleep(20);
  }
  untrackProcess(pid);
}

/** Ends every process and removes every container the harness started in this test file. */
export async function cleanupAll(): Promise<void> {
  const problems: string[] = [];
  // Newest first: helpers started later (shells, clients) go before what they run under.
  for (const [pid, { child, what }] of [...processes].reverse()) {
    try {
      await killAndWait(pid, child);
    } catch (err) {
      problems.push(`${what} (pid ${pid}): ${(err as Error).message}`);
    }
  }
  if (containers.size > 0 && removeContainers) {
    try {
      await removeContainers([...containers]);
      containers.clear();
    } catch (err) {
      problems.push(`containers ${[...containers].join(", ")}: ${(err as Error).message}`);
    }
  }
  if (problems.length > 0) throw new Error(`cleanupAll: ${problems.join("; ")}`);
}

/** What is still tracked (for tests that check the harness cleans up after itself). */
export function tracked(): { pids: number[]; containers: string[] } {
  return { pids: [...processes.keys()], containers: [...containers] };
}
