// Small helpers for integration tests on the real kernel: polling, pty.nr, and process trees read from /proc.
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { errorMessage } from "../../../src/errors.js";

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Allocated pty pairs right now, all devpts instances together (/proc/sys/kernel/pty/nr). */
export function ptyNr(procRoot = "/proc"): number {
  return Number(readFileSync(`${procRoot}/sys/kernel/pty/nr`, "utf8").trim());
}

/** Thrown from a waitFor condition to stop waiting at once (other errors are retried until the timeout). */
export class StopWaiting extends Error {
  override name = "StopWaiting";
}

/**
 * Polls `cond` until it returns a value other than undefined, null or false, and resolves with it.
 * Throws `timed out after Nms waiting for <what>` (with the last error `cond` threw, if any) otherwise.
 */
export async function waitFor<T>(
  cond: () => T | null | undefined | false | Promise<T | null | undefined | false>,
  timeoutMs: number,
  what: string,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await cond();
      if (value !== undefined && value !== null && value !== false) return value;
      lastError = null;
    } catch (err) {
      if (err instanceof StopWaiting) throw err;
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const detail = lastError === null ? "" : ` (last error: ${errorMessage(lastError)})`;
      throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${detail}`);
    }
    await sleep(intervalMs);
  }
}

/** State letter from /proc/PID/stat, or null when the process is gone. */
export function procState(pid: number): string | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    return text.slice(text.lastIndexOf(")") + 2, text.lastIndexOf(")") + 3);
  } catch {
    return null; // ENOENT: gone
  }
}

/** Start time of `pid` in clock ticks after boot (stat field 22), or null when gone: guards against PID reuse. */
export function startTicksOf(pid: number): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return Number(fields[19]);
  } catch {
    return null;
  }
}

/** Whether `pid` exists and is not a zombie (a zombie holds no fds any more). */
export function isAlive(pid: number): boolean {
  const state = procState(pid);
  return state !== null && state !== "Z" && state !== "X";
}

/** Direct children of `pid`, from /proc/PID/task/TID/children of every thread. */
export function childrenOf(pid: number): number[] {
  const children: number[] = [];
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return []; // gone
  }
  for (const tid of tids) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").trim();
      if (text) children.push(...text.split(/\s+/).map(Number));
    } catch {
      // the thread exited between readdir and read: it has no children to report
    }
  }
  return children;
}

/** Every descendant of `pid`, breadth first. */
export function descendantsOf(pid: number): number[] {
  const found: number[] = [];
  const queue = childrenOf(pid);
  while (queue.length > 0) {
    const next = queue.shift() as number;
    found.push(next);
    queue.push(...childrenOf(next));
  }
  return found;
}

/** /proc/PID/cmdline split on NUL; [] when the process is gone. */
export function cmdlineOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "latin1")
      .split("\0")
      .filter((arg) => arg !== "");
  } catch {
    return [];
  }
}

/** /proc/PID/environ as KEY=value strings; [] when the process is gone. */
export function environOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/environ`, "latin1")
      .split("\0")
      .filter((entry) => entry !== "");
  } catch {
    return [];
  }
}

/** The python3 binary to run harness helpers with: Debian's, so a pyenv shim on PATH is not involved. */
export function python3(): string {
  return existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
}
