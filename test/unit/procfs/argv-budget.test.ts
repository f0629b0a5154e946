// How much of a holder's command line the scan keeps: the head of anyone's, the whole of exec processes and parsed
// programs (runtime monitors, the docker CLI) within a per-pass budget.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CMDLINE_MAX_BYTES, CMDLINE_SHOWN_BYTES, ProcFs } from "../../../src/procfs/procfs.js";
import { HOLDER_DETAILS_PER_PTY, readProcInfo, ScanContext, WHOLE_ARGV_PER_PASS, type RawPtyFd, type StatBase } from "../../../src/procfs/scan.js";

const root = mkdtempSync(join(tmpdir(), "ptyr-argv-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A process whose argv is argv0 and one 5,000-byte argument. */
function processWith(pid: number, argv0: string): void {
  const dir = join(root, String(pid));
  mkdirSync(join(dir, "ns"), { recursive: true });
  writeFileSync(join(dir, "status"), `Name:\tx\nUid:\t0\t0\t0\t0\nNSpid:\t${pid}\n`);
  writeFileSync(join(dir, "cmdline"), `${argv0}\0${"a".repeat(5_000)}\0`);
  writeFileSync(join(dir, "cgroup"), "0::/\n");
  symlinkSync("pid:[4026531836]", join(dir, "ns", "pid"));
}
const base = (comm: string): StatBase => ({ ppid: 1, pgrp: 1, sid: 1, ttyNr: 0, startTicks: 1, comm });
const kept = (args: readonly string[] | undefined): number => Buffer.byteLength((args ?? []).join("\0"));

processWith(10, "/bin/sh");
processWith(11, "/usr/bin/docker");
processWith(12, "/usr/bin/containerd-shim-runc-v2");
processWith(13, "/bin/bash");

describe("readProcInfo's command line", () => {
  it.each([
    ["anyone's: its head", 10, "sh", {}, CMDLINE_SHOWN_BYTES],
    ["the docker CLI's (by argv[0]): whole, up to the cap", 11, "docker", {}, CMDLINE_MAX_BYTES],
    ["a comm of docker alone counts too", 13, "docker", {}, CMDLINE_MAX_BYTES],
    ["a runtime monitor's: whole", 12, "containerd-shim", {}, CMDLINE_MAX_BYTES],
    ["an exec process named by the runtime: whole", 13, "bash", { wholeArgvPids: [13] }, CMDLINE_MAX_BYTES],
  ])("%s", (_what, pid, comm, options, bytes) => {
    const info = readProcInfo(new ScanContext(new ProcFs(root, { native: null })), pid, base(comm), options);
    expect(info?.cmdlineTruncated).toBe(true);
    // The cut keeps `bytes` bytes and appends "…" (3 bytes in UTF-8) to the last argument.
    expect(kept(info?.cmdline)).toBe(bytes + 3);
  });

  it("spends at most WHOLE_ARGV_PER_PASS whole reads a pass on parsed programs, then keeps heads and counts the cuts", () => {
    const ctx = new ScanContext(new ProcFs(root, { native: null }));
    ctx.wholeArgvReads = WHOLE_ARGV_PER_PASS - 1;
    expect(kept(readProcInfo(ctx, 11, base("docker"))?.cmdline)).toBe(CMDLINE_MAX_BYTES + 3);
    expect(kept(readProcInfo(ctx, 12, base("containerd-shim"))?.cmdline)).toBe(CMDLINE_SHOWN_BYTES + 3);
    expect(ctx.argvBudgetCuts).toBe(1);
    // Exec processes are not counted against it.
    expect(kept(readProcInfo(ctx, 13, base("bash"), { wholeArgvPids: [13] })?.cmdline)).toBe(CMDLINE_MAX_BYTES + 3);
  });
});

describe("holders of one pty that keep details", () => {
  const slave = (dev: string, index: number): RawPtyFd => ({
    fd: 0,
    count: 1,
    role: "slave",
    dev,
    ino: index + 3,
    index,
    target: `/dev/pts/${index}`,
    atimeMs: 0,
    mtimeMs: 0,
  });
  const master: RawPtyFd = { ...slave("0:5", 2), role: "master", target: "/dev/ptmx" };

  it("are HOLDER_DETAILS_PER_PTY ordinary ones a pass; the rest have no command line read, marked so", () => {
    const ctx = new ScanContext(new ProcFs(root, { native: null }));
    const kept = Array.from({ length: HOLDER_DETAILS_PER_PTY + 10 }, () => ctx.keepsDetails([slave("0:44", 0)], false));
    expect(kept.filter(Boolean)).toHaveLength(HOLDER_DETAILS_PER_PTY);
    expect(kept.slice(HOLDER_DETAILS_PER_PTY)).toEqual(Array.from({ length: 10 }, () => false));
    // Another pty, exempt kinds and master holders are not cut by that pty's count.
    expect(ctx.keepsDetails([slave("0:44", 1)], false)).toBe(true);
    expect(ctx.keepsDetails([slave("0:44", 0)], true)).toBe(true);
    expect(ctx.keepsDetails([slave("0:44", 0), master], false)).toBe(true);
    // A holder of a full pty and of one with room keeps details.
    expect(ctx.keepsDetails([slave("0:44", 0), slave("0:44", 7)], false)).toBe(true);
    const info = readProcInfo(ctx, 10, base("sh"), {}, false);
    expect(info?.cmdline).toEqual([]);
    expect(info?.cmdlineUnread).toBe(true);
    expect(info?.cgroup).toBe("0::/\n");
  });
});
