// Podman's client evidence from the scan alone: the exec conmon's count of master fds (2 attached, 1 after the client left).
import { describe, expect, it } from "vitest";
import type { ProcInfo, ProcScan, PtyFd } from "../../../src/domain/types.js";
import { PodmanClientEvidence, podmanStreamSighting } from "../../../src/runtimes/podman/client-evidence.js";
import { makeSessionFor } from "../metrics/snapshot-factory.js";

const EXEC = "b".repeat(64);
const CID = "c".repeat(64);
const CONMON = 900;
const DEV = "0:77";
const session = {
  ...makeSessionFor("unknown"),
  execId: EXEC,
  containerId: CID,
  ptyKey: `${DEV}:0`,
  devptsDev: DEV,
  index: 0,
  runtime: "podman" as const,
};

// As Podman 4.3 starts it for `podman exec -it` (trimmed to the flags that matter).
const ATTACH_ARGV = [
  "/usr/bin/conmon",
  "--api-version",
  "1",
  "-c",
  CID,
  "-u",
  EXEC,
  "-r",
  "/usr/bin/crun",
  "-p",
  `/x/${EXEC}/exec_pid`,
  "-t",
  "-i",
  "-e",
  "--exec-attach",
  "--exit-command",
  "/usr/bin/podman",
];

function conmon(argv: readonly string[] = ATTACH_ARGV, startTicks = 4_000): ProcInfo {
  return {
    pid: CONMON,
    ppid: 1,
    pgrp: CONMON,
    sid: CONMON,
    ttyNr: 0,
    startTicks,
    comm: "conmon",
    cmdline: [...argv],
    uid: 0,
    pidNs: null,
    nsPids: [CONMON],
    containerId: null,
  };
}

function master(pid: number, fdCount?: number): PtyFd {
  return { pid, fd: 5, role: "master", devptsDev: DEV, index: 0, ...(fdCount === undefined ? {} : { fdCount }) };
}

function scanOf(ptyFds: PtyFd[], processes: ProcInfo[] = [conmon()]): ProcScan {
  return {
    processes: new Map(processes.map((p) => [p.pid, p])),
    ppids: new Map(),
    ptyFds,
    ttyTimes: new Map(),
    initDevpts: new Map(),
    unreadablePids: [],
    vanished: 0,
    parseErrors: {},
    bootTimeSec: 0,
  };
}

describe("podmanStreamSighting", () => {
  it.each([
    ["two master fds: held", scanOf([master(CONMON, 2)]), "held"],
    ["two entries of one fd each (another ptmx inode): held", scanOf([master(CONMON), { ...master(CONMON), fd: 6 }]), "held"],
    ["one master fd: released", scanOf([master(CONMON)]), "released"],
    ["three master fds: unknown", scanOf([master(CONMON, 3)]), "unknown"],
    ["no master holder: unknown", scanOf([]), "unknown"],
    ["two master holders: unknown", scanOf([master(CONMON, 2), master(901)]), "unknown"],
    ["holder not read: unknown", scanOf([master(CONMON, 2)], []), "unknown"],
    ["conmon of another exec: unknown", scanOf([master(CONMON, 2)], [conmon(ATTACH_ARGV.map((a) => (a === EXEC ? "d".repeat(64) : a)))]), "unknown"],
    [
      "the container's own conmon (no --exec-attach): unknown",
      scanOf([master(CONMON, 2)], [conmon(ATTACH_ARGV.filter((a) => a !== "--exec-attach" && a !== "-e"))]),
      "unknown",
    ],
    ["an exec without stdin (-i): unknown", scanOf([master(CONMON, 2)], [conmon(ATTACH_ARGV.filter((a) => a !== "-i"))]), "unknown"],
  ] as const)("%s", (_name, scan, stream) => {
    expect(podmanStreamSighting(session, scan).stream).toBe(stream);
  });

  it("names the conmon process, pid and start, as the holder", () => {
    expect(podmanStreamSighting(session, scanOf([master(CONMON, 2)]))).toMatchObject({ stream: "held", holder: `${CONMON}@4000` });
  });
});

describe("PodmanClientEvidence", () => {
  const observe = (ev: PodmanClientEvidence, scan: ProcScan, nowMs: number) =>
    ev.observe({ scan, view: { runtime: "podman", available: false, error: null, containers: [], execs: [] }, sessions: [session], nowMs }).get(EXEC);

  it("attached with two master fds, gone from the first cycle with one, and stays gone", () => {
    const ev = new PodmanClientEvidence();
    expect(observe(ev, scanOf([master(CONMON, 2)]), 1_000)?.state).toBe("attached");
    expect(observe(ev, scanOf([master(CONMON)]), 3_000)).toEqual({
      state: "gone",
      sinceMs: 3_000,
      detail: `conmon pid ${CONMON} holds one master fd (no stdin copy), after holding it: the client went away` as unknown,
    });
    expect(observe(ev, scanOf([master(CONMON)]), 5_000)).toMatchObject({ state: "gone", sinceMs: 3_000 });
  });

  it("only ever one master fd (podman exec -d, or ptyreaper started after the client left): unknown", () => {
    const ev = new PodmanClientEvidence();
    expect(observe(ev, scanOf([master(CONMON)]), 1_000)?.state).toBe("unknown");
    expect(observe(ev, scanOf([master(CONMON)]), 3_000)?.detail).toContain("may never have been attached");
  });

  it("a drop seen across two conmon processes (pid reused) is no drop", () => {
    const ev = new PodmanClientEvidence();
    expect(observe(ev, scanOf([master(CONMON, 2)]), 1_000)?.state).toBe("attached");
    expect(observe(ev, scanOf([master(CONMON)], [conmon(ATTACH_ARGV, 9_000)]), 3_000)?.state).toBe("unknown");
  });
});
