// A container's processes straight from its cgroup (its cgroup.procs): what the reaper reads before a signal, in
// place of every process's /proc/PID/cgroup, so the look costs what the container holds, not what the host does.
import { readFileSync } from "node:fs";
import { isVanished } from "../errors.js";

/** Where the cgroup hierarchies are mounted; /proc/PID/cgroup paths are rooted in this cgroup namespace. */
export const CGROUP_ROOT = "/sys/fs/cgroup";

/**
 * Where the cgroup a /proc/PID/cgroup text names may be listed, most likely first, under the usual mounts: the
 * v2 line's path at the root (unified) or under unified/ (hybrid), the v1 pids hierarchy's. A path that leads
 * above this cgroup namespace's root ("/../…": another namespace's view) is not reachable and gives none.
 */
export function cgroupDirs(text: string, root = CGROUP_ROOT): string[] {
  const dirs: string[] = [];
  for (const line of text.split("\n")) {
    const match = /^(\d+):([^:]*):(\/.*)$/.exec(line);
    if (!match) continue;
    const [, , controllers = "", path = "/"] = match;
    if (path.split("/").includes("..")) continue;
    const under = path === "/" ? "" : path;
    if (controllers === "") dirs.unshift(`${root}${under}`, `${root}/unified${under}`);
    else if (controllers.split(",").includes("pids")) dirs.push(`${root}/pids${under}`);
  }
  return dirs;
}

/**
 * The pids in the cgroup that a /proc/PID/cgroup text names (its cgroup.procs, in the reader's pid namespace),
 * from the first of cgroupDirs that can be read; null when none can (no such mount here, gone, denied). The
 * caller checks what it gets (a process it knows is in the cgroup must be listed) and reads every process
 * otherwise.
 */
export function cgroupMembers(text: string, root = CGROUP_ROOT): number[] | null {
  for (const dir of cgroupDirs(text, root)) {
    let listed: string;
    try {
      listed = readFileSync(`${dir}/cgroup.procs`, "utf8");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (isVanished(err) || code === "EACCES" || code === "ENOTDIR") continue;
      throw err;
    }
    const pids: number[] = [];
    for (const line of listed.split("\n")) {
      const pid = Number(line);
      if (line !== "" && Number.isInteger(pid) && pid > 0) pids.push(pid);
    }
    return pids;
  }
  return null;
}
