// Hand-made pieces of a /proc scan for unit tests: one builder each, so the defaults are the same everywhere.
import type { ProcessFacts } from "../../../src/domain/attribution.js";
import type { ProcInfo, PtyFd } from "../../../src/domain/types.js";

/** A host process (pid 1's child, its own session, no tty, not in a container), with `over` on top. */
export function proc(pid: number, over: Partial<ProcInfo> = {}): ProcInfo {
  return {
    pid,
    ppid: 1,
    pgrp: pid,
    sid: pid,
    ttyNr: 0,
    startTicks: 1000,
    comm: "sh",
    cmdline: ["sh"],
    uid: 0,
    pidNs: "4026531836",
    nsPids: [pid],
    containerId: null,
    ...over,
  };
}

export const slave = (pid: number, devptsDev: string, index: number, fd = 0): PtyFd => ({ pid, fd, role: "slave", devptsDev, index });
export const master = (pid: number, devptsDev: string, index: number, fd = 9): PtyFd => ({ pid, fd, role: "master", devptsDev, index });

/** What runtime attribution reads of a process. */
export const facts = (pid: number, ppid: number, comm: string, argv: string[], cgroup: string, nsPid = pid): ProcessFacts => ({
  pid,
  ppid,
  comm,
  argv,
  cgroup,
  nsPid,
});
