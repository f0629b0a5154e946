// ProcFs and scanProc over committed fixture trees: cases a live kernel will not produce on demand.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, type Stats } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ptyKey, type ProcScan } from "../../../src/domain/types.js";
import { PtyreaperError } from "../../../src/errors.js";
import { CMDLINE_MAX_BYTES, ENVIRON_MAX_BYTES, ProcFs } from "../../../src/procfs/procfs.js";
import { scanProc } from "../../../src/procfs/scan.js";

const FIXTURES = fileURLToPath(new URL("../../fixtures/proc/", import.meta.url));
const MIXED_HOST = `${FIXTURES}mixed-host`;

const ID_A = "df631ec3f52da1279510299b827dc5e4a42fcf77abce204ad26722a9b46fc109";
const ID_B = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/** new_encode_dev(), as st_dev / st_rdev carry it. */
function dev(major: number, minor: number): number {
  return (minor & 0xff) + major * 256 + (minor - (minor & 0xff)) * 4096;
}

interface FakeFdStat {
  rdev: number;
  dev: number;
  ino?: number;
  atimeMs?: number;
  mtimeMs?: number;
}

/** The error `fn` throws (fails the test when it returns). */
function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected a throw");
}

function errno(code: string, path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${path}`), { code });
}

const HOST_PTS = dev(0, 24);
const DEVTMPFS = dev(0, 6);
const A_PTS = dev(0, 44);
const B_PTS = dev(0, 45);
const PTMX = dev(5, 2);
const slave = (instance: number, index: number, atimeMs = 1_000, mtimeMs = 2_000): FakeFdStat => ({
  rdev: dev(136, index),
  dev: instance,
  ino: index + 3,
  atimeMs,
  mtimeMs,
});

/**
 * The fixture's fd links are real symlinks to device paths that mean nothing on the test host, and
 * ProcFs.fdStat follows them: this subclass answers fdStat from a table instead, and injects the
 * races and permission errors that files cannot express.
 */
class FixtureProcFs extends ProcFs {
  constructor(
    root: string,
    private readonly fdStats: Record<string, FakeFdStat>,
    private readonly races: { linkGone?: string[]; statGone?: string[]; deniedFdTables?: number[] } = {},
  ) {
    super(root);
  }

  override fds(pid: number): string[] {
    if (this.races.deniedFdTables?.includes(pid)) throw errno("EACCES", `${this.root}/${pid}/fd`);
    return super.fds(pid);
  }

  override fdLink(pid: number, fd: string): string {
    if (this.races.linkGone?.includes(`${pid}/${fd}`)) throw errno("ENOENT", `${this.root}/${pid}/fd/${fd}`);
    return super.fdLink(pid, fd);
  }

  override fdStat(pid: number, fd: string): Stats {
    if (this.races.statGone?.includes(`${pid}/${fd}`)) throw errno("ENOENT", `${this.root}/${pid}/fd/${fd}`);
    const fake = this.fdStats[`${pid}/${fd}`];
    if (!fake) throw new Error(`fixture: no stat for ${pid}/fd/${fd}`); // the test must list every pty-looking link
    return {
      isCharacterDevice: () => true,
      rdev: fake.rdev,
      dev: fake.dev,
      ino: fake.ino ?? 1,
      atimeMs: fake.atimeMs ?? 0,
      mtimeMs: fake.mtimeMs ?? 0,
    } as unknown as Stats;
  }
}

// What stat(2) says about every fd in mixed-host whose link looks like a pty.
const MIXED_HOST_FD_STATS: Record<string, FakeFdStat> = {
  "100/5": { rdev: PTMX, dev: DEVTMPFS, ino: 91 }, // /dev/ptmx on devtmpfs
  "101/0": slave(HOST_PTS, 0, 5_000, 6_000),
  "101/1": slave(HOST_PTS, 0, 5_000, 7_000),
  "101/2": slave(HOST_PTS, 0, 5_000, 7_000),
  "101/255": slave(HOST_PTS, 0, 4_000, 6_500),
  "200/0": slave(A_PTS, 0),
  "200/1": slave(A_PTS, 0),
  "200/2": slave(A_PTS, 0),
  "201/12": { rdev: PTMX, dev: A_PTS, ino: 2 }, // received from the container's mount namespace
  "201/28": { rdev: PTMX, dev: A_PTS, ino: 2 },
  "202/0": slave(A_PTS, 1, 9_000, 9_500),
  "202/1": slave(A_PTS, 1, 9_000, 9_500),
  "202/2": slave(A_PTS, 1, 9_000, 9_500),
  "400/4": { rdev: PTMX, dev: DEVTMPFS, ino: 91 },
  "500/3": { rdev: dev(5, 1), dev: DEVTMPFS, ino: 12 }, // the real console, not a pty
  "501/0": slave(HOST_PTS, 1),
  "501/8": slave(HOST_PTS, 1),
  "501/9": slave(HOST_PTS, 5),
  "600/0": slave(B_PTS, 0),
  "600/1": slave(B_PTS, 0),
  "700/0": slave(HOST_PTS, 2),
  "800/0": slave(HOST_PTS, 3),
};

function mixedHost(races: ConstructorParameters<typeof FixtureProcFs>[2] = {}): FixtureProcFs {
  return new FixtureProcFs(MIXED_HOST, MIXED_HOST_FD_STATS, {
    linkGone: ["501/9"], // closed between readdir and readlink
    statGone: ["501/8"], // closed between readlink and stat
    deniedFdTables: [800],
    ...races,
  });
}

/** pty key → sorted "role pid/fd" strings, to compare holders regardless of readdir order. */
function holdersByKey(scan: ProcScan): Record<string, string[]> {
  const byKey: Record<string, string[]> = {};
  for (const fd of scan.ptyFds)
    (byKey[ptyKey(fd.devptsDev, fd.index)] ??= []).push(`${fd.role} ${fd.pid}/${fd.fd}${fd.fdCount ? ` ×${fd.fdCount}` : ""}`);
  for (const list of Object.values(byKey)) list.sort();
  return byKey;
}

describe("ProcFs readers over mixed-host", () => {
  const procfs = new ProcFs(MIXED_HOST);

  it("reads the pty sysctls", () => {
    expect(procfs.ptyLimits()).toEqual({ allocated: 6, max: 4096, reserve: 1024 });
  });

  it("lists only numeric entries as pids, including a directory left empty by an exited process", () => {
    expect(procfs.pids().sort((a, b) => a - b)).toEqual([1, 100, 101, 200, 201, 202, 300, 400, 500, 501, 600, 700, 800, 4242]);
  });

  it("reads boot time from /proc/stat", () => {
    expect(procfs.bootTimeSec()).toBe(1_700_000_000);
  });

  it.each([
    [101, { comm: "my (odd) shell", ppid: 100, ttyNr: 34816, startTicks: 510 }],
    [202, { comm: "sh", ppid: 201, ttyNr: 34817, startTicks: 700 }],
  ])("stat(%i)", (pid, expected) => {
    expect(procfs.stat(pid)).toMatchObject(expected);
  });

  it("returns null for a truncated stat", () => {
    expect(procfs.stat(300)).toBeNull();
  });

  it.each([
    [101, { uid: 0, nsPids: [101] }], // old kernel: no NSpid line
    [202, { uid: 0, nsPids: [202, 7] }],
    [501, { uid: 1000, nsPids: [501] }],
  ])("status(%i)", (pid, expected) => {
    expect(procfs.status(pid)).toEqual(expected);
  });

  it.each([
    [101, null],
    [200, ID_A],
    [201, null],
    [600, ID_B],
  ])("cgroupContainerId(%i) → %s", (pid, expected) => {
    expect(procfs.cgroupContainerId(pid)).toBe(expected);
  });

  it("decodes cmdline as UTF-8, as a terminal shows it (ps prints the same bytes)", () => {
    const root = mkdtempSync(join(tmpdir(), "ptyr-cmdline-"));
    try {
      mkdirSync(join(root, "7"));
      writeFileSync(join(root, "7", "cmdline"), Buffer.concat([Buffer.from("vim\0résumé — 日本.txt\0", "utf8"), Buffer.from([0x66, 0xff, 0x00])]));
      expect(new ProcFs(root, { native: null }).cmdline(7)).toEqual({ args: ["vim", "résumé — 日本.txt", "f\ufffd"], truncated: false });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("reads at most CMDLINE_MAX_BYTES of a command line and ENVIRON_MAX_BYTES of an environment, and says so", () => {
    const root = mkdtempSync(join(tmpdir(), "ptyr-long-"));
    try {
      mkdirSync(join(root, "7"));
      const huge = "x".repeat(8 * 1024 * 1024);
      writeFileSync(join(root, "7", "cmdline"), `sh\0-c\0${huge}\0`);
      writeFileSync(join(root, "7", "environ"), `A=1\0BIG=${huge}\0PTYREAPER_EXEMPT=1\0`);
      const procfs = new ProcFs(root, { native: null });
      const { args, truncated } = procfs.cmdline(7);
      expect(truncated).toBe(true);
      expect(args.slice(0, 2)).toEqual(["sh", "-c"]);
      expect(args.join("\0").length).toBe(CMDLINE_MAX_BYTES);
      // The variable cut at the limit is left out, not shown in part.
      expect(procfs.environ(7)).toEqual(["A=1"]);
      writeFileSync(join(root, "7", "environ"), `A=1\0${"B".repeat(ENVIRON_MAX_BYTES - 5)}\0C=3\0`);
      expect(procfs.environ(7)).toEqual(["A=1", "B".repeat(ENVIRON_MAX_BYTES - 5)]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('marks a cut command line in the scan: cmdlineTruncated, and "…" at its end', () => {
    const root = mkdtempSync(join(tmpdir(), "ptyr-long-scan-"));
    try {
      const fixture = new ProcFs(MIXED_HOST);
      mkdirSync(join(root, "sys"));
      writeFileSync(join(root, "stat"), "btime 1700000000\n");
      mkdirSync(join(root, "7", "ns"), { recursive: true });
      mkdirSync(join(root, "7", "fd"));
      writeFileSync(join(root, "7", "stat"), fixture.statText(101).replace(/^101 /, "7 "));
      writeFileSync(join(root, "7", "status"), "Uid:\t0\t0\t0\t0\nPid:\t7\nNSpid:\t7\t1\n");
      writeFileSync(join(root, "7", "cgroup"), "0::/\n");
      symlinkSync("pid:[4026532300]", join(root, "7", "ns", "pid"));
      writeFileSync(join(root, "7", "cmdline"), `sh\0${"y".repeat(10_000)}\0`);
      const scan = scanProc(new ProcFs(root), { initPids: [7] });
      const info = scan.processes.get(7);
      expect(info?.cmdlineTruncated).toBe(true);
      expect(info?.cmdline[0]).toBe("sh");
      expect(info?.cmdline[1]).toMatch(/^y+…$/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("reads cmdline, environ and namespace links", () => {
    expect(procfs.cmdline(201).args).toEqual(["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby", "-id", ID_A]);
    expect(procfs.environ(202)).toContain("TERM=xterm");
    expect(procfs.namespace(202, "pid")).toBe("4026532300");
    expect(procfs.namespace(101, "mnt")).toBe("4026531841");
  });

  it("reads fd links, fdinfo and mountinfo", () => {
    expect(procfs.fds(101).sort()).toEqual(["0", "1", "2", "255"]);
    expect(procfs.fdLink(201, "28")).toBe("/ptmx");
    expect(procfs.fdinfoTtyIndex(201, "28")).toBe(1);
    expect(procfs.fdinfoTtyIndex(400, "4")).toBeNull();
    expect(procfs.mountinfo(1).find((entry) => entry.mountPoint === "/mnt/with space")?.fsType).toBe("tmpfs");
  });

  it("raises ENOENT for the files of a vanished process", () => {
    expect(thrownBy(() => procfs.stat(4242))).toMatchObject({ code: "ENOENT" });
    expect(thrownBy(() => procfs.status(700))).toMatchObject({ code: "ENOENT" });
  });

  it("reports a malformed pty sysctl with a stable code", () => {
    const bad = new ProcFs(`${FIXTURES}malformed-sysctl`);
    expect(() => bad.ptyLimits()).toThrow(PtyreaperError);
    const err = thrownBy(() => bad.ptyLimits());
    expect(err).toMatchObject({ code: "PTYR_PROC_READ" });
    expect((err as Error).message).toContain('got "many"');
  });

  it("reports a missing proc root with a stable code", () => {
    expect(thrownBy(() => new ProcFs(`${FIXTURES}no-such-root`).ptyLimits())).toMatchObject({ code: "PTYR_PROC_READ" });
  });
});

describe("scanProc over mixed-host", () => {
  it("finds every pty fd with its holder, keyed by devpts instance and index, one entry per holder and file with its fd count", () => {
    const scan = scanProc(mixedHost());
    expect(holdersByKey(scan)).toEqual({
      // host pts/0: master through devtmpfs /dev/ptmx, mapped to the devpts at /dev/pts beside it
      "0:24:0": ["master 100/5", "slave 101/0 ×4"],
      // host pts/1: fd 8 closed before stat, fd 9 before readlink; fd 0 remains
      "0:24:1": ["slave 501/0"],
      "0:24:2": ["slave 700/0"],
      // container A (0:44): the shim's masters came from another mount namespace (ptmx inode 2)
      "0:44:0": ["master 201/12", "slave 200/0 ×3"],
      "0:44:1": ["master 201/28", "slave 202/0 ×3"],
      // container B (0:45): the same index 0 as the host's and container A's, a different pty
      "0:45:0": ["slave 600/0 ×2"],
    });
  });

  it("reads holders in full, and skips non-holders", () => {
    const scan = scanProc(mixedHost());
    expect([...scan.processes.keys()].sort((a, b) => a - b)).toEqual([100, 101, 200, 201, 202, 501, 600]);
    expect(scan.processes.get(101)).toMatchObject({
      comm: "my (odd) shell",
      nsPids: [101],
      containerId: null,
      pidNs: "4026531836",
      cmdline: ["-bash"],
    });
    expect(scan.processes.get(202)).toMatchObject({ containerId: ID_A, nsPids: [202, 7], pidNs: "4026532300", ppid: 201 });
    expect(scan.processes.get(600)).toMatchObject({ containerId: ID_B, nsPids: [600, 1] });
    expect(scan.processes.get(501)).toMatchObject({ uid: 1000, comm: "tmux: client" });
  });

  it("counts vanished processes, malformed files and unreadable processes instead of failing", () => {
    const scan = scanProc(mixedHost());
    // 4242: no stat at all; 700: its status went missing after its fds were read
    expect(scan.vanished).toBe(2);
    expect(scan.parseErrors).toEqual({ stat: 1, fdinfo: 1 });
    expect(scan.unreadablePids).toEqual([800]);
  });

  it("maps container init processes (pid 1 in their namespace) to the devpts they see", () => {
    const scan = scanProc(mixedHost());
    expect(Object.fromEntries(scan.initDevpts)).toEqual({ 200: "0:44", 600: "0:45" });
  });

  it("resolves the devpts of Docker's init pids even when they hold no pty", () => {
    const scan = scanProc(mixedHost(), { initPids: [1] });
    // pid 1 is the host's init here: its /dev/pts is the host instance
    expect(scan.initDevpts.get(1)).toBe("0:24");
    expect(scan.processes.get(1)).toMatchObject({ comm: "init", nsPids: [1] });
  });

  it("takes a slave's times from one stat per holder: its fds name one inode", () => {
    const scan = scanProc(mixedHost());
    expect(scan.ttyTimes.get("0:24:0")).toEqual({ atimeMs: 5_000, mtimeMs: 6_000 }); // fd 0's
    expect(scan.ttyTimes.get("0:44:1")).toEqual({ atimeMs: 9_000, mtimeMs: 9_500 });
    expect(scan.ttyTimes.has("0:24:5")).toBe(false); // fd 9's link vanished: never stat'ed
  });

  it("records the parent of every readable process", () => {
    const scan = scanProc(mixedHost());
    expect(scan.ppids.get(202)).toBe(201);
    expect(scan.ppids.get(500)).toBe(1);
    expect(scan.ppids.has(300)).toBe(false); // malformed stat
    expect(scan.bootTimeSec).toBe(1_700_000_000);
  });

  it("does not swallow errors other than vanished and denied", () => {
    const broken = new FixtureProcFs(MIXED_HOST, {}); // no stat for any pty link: the fixture's own error
    expect(() => scanProc(broken)).toThrow(/fixture: no stat/);
  });
});
