// What every private engine of the tests (dockerd, containerd, Podman) does with its own root under /tmp:
// run its tools, find its processes and mounts, and find the roots that crashed runs left behind.
import { execFile } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { cmdlineOf, isAlive, startTicksOf } from "./util.js";

/** Runs a tool to completion; its stdout, or an error naming the command and its stderr. */
export function runTool(file: string, args: readonly string[], timeoutMs = 60_000, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, [...args], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, encoding: "utf8", env }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(" ").slice(0, 200)} failed: ${stderr.trim() || err.message}`, { cause: err }));
      else resolve(stdout);
    });
    child.stdin?.end();
  });
}

/** Mount points at or under `dir`, deepest first (dockerd bind-mounts its data root onto itself; snapshots, sandbox shm). */
export function mountsUnder(dir: string): string[] {
  const points = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .filter((point) => point === dir || point.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Pids whose command line contains every one of `parts` (e.g. a shim started by our containerd). */
export function pidsWithCmdline(parts: readonly string[]): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = cmdlineOf(Number(entry)).join(" ");
    if (argv && parts.every((part) => argv.includes(part))) found.push(Number(entry));
  }
  return found;
}

/**
 * Roots `<prefix><tag>-<pid>` whose owning test process is gone (a crashed or killed run): the owner
 * file holds the pid and start time of the process that made the root.
 */
export function leftoverRoots(prefix: string, tag: string): string[] {
  const pattern = new RegExp(`^${prefix.slice("/tmp/".length)}${tag}-(\\d+)$`);
  return readdirSync("/tmp")
    .filter((entry) => pattern.test(entry))
    .map((entry) => `/tmp/${entry}`)
    .filter((root) => {
      try {
        const [pid, ticks] = readFileSync(`${root}/owner`, "utf8").trim().split(" ").map(Number);
        return !(pid !== undefined && isAlive(pid) && startTicksOf(pid) === ticks);
      } catch {
        return true; // no owner file: not started by this code, or half-made
      }
    });
}
