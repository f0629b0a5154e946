// IncrementalScanner over an in-memory /proc: what it re-reads, when it goes full, and that it always equals scanProc.
import type { Stats } from "node:fs";
import { beforeEach, describe, expect, it } from "vitest";
import { scanDigest } from "../../../bench/compare.js";
import { RescanPolicy, distinctPtys, type ModalScan } from "../../../src/procfs/incremental.js";
import { ProcFs } from "../../../src/procfs/procfs.js";
import { parseStat, type MountinfoEntry, type PidMarks, type StatFields } from "../../../src/procfs/parse.js";
import { WHOLE_LISTING_EVERY_MS } from "../../../src/procfs/pid-listing.js";
import { IncrementalScanner, scanProc } from "../../../src/procfs/scan.js";
import { DeltaReceiver, DeltaSender } from "../../../src/procfs/scan-delta.js";
import { mergeScans } from "../../../src/procfs/worker.js";

/** new_encode_dev(), as st_dev / st_rdev carry it. */
const dev = (major: number, minor: number): number => (minor & 0xff) + major * 256 + (minor - (minor & 0xff)) * 4096;
const HOST_PTS = dev(0, 24);
const CONTAINER_PTS = dev(0, 44);
const PTMX = dev(5, 2);
const DEV_NULL = dev(1, 3);

interface FakeFd {
  target: string;
  rdev: number;
  dev: number;
  ino: number;
  atimeMs: number;
  mtimeMs: number;
  /** fdinfo tty-index, for masters; absent → malformed fdinfo. */
  ttyIndex?: number;
}

interface FakeProc {
  ppid: number;
  startTicks: number;
  comm: string;
  ttyNr: number;
  fds: Map<number, FakeFd>;
  cgroup: string | null;
  nsPids: number[];
  mntNs: string;
  /** fd table unreadable (EACCES). */
  denied?: boolean;
  /** Exiting: its namespaces are released, so mountinfo fails with EINVAL and ns links with ENOENT. */
  exiting?: boolean;
}

const errno = (code: string, path: string): NodeJS.ErrnoException => Object.assign(new Error(`${code}: ${path}`), { code });

const nullFd = (ino: number): FakeFd => ({ target: "/dev/null", rdev: DEV_NULL, dev: dev(0, 6), ino, atimeMs: 0, mtimeMs: 0 });
const slaveFd = (instance: number, index: number, atimeMs = 1_000, mtimeMs = 2_000): FakeFd => ({
  target: `/dev/pts/${index}`,
  rdev: dev(136, index),
  dev: instance,
  ino: 100 + index,
  atimeMs,
  mtimeMs,
});
const masterFd = (instance: number, index: number): FakeFd => ({
  target: "/dev/pts/ptmx",
  rdev: PTMX,
  dev: instance,
  ino: 2,
  atimeMs: 0,
  mtimeMs: 0,
  ttyIndex: index,
});

const MOUNTS: Record<string, MountinfoEntry[]> = {
  host: [
    { dev: "0:6", mountPoint: "/dev", fsType: "devtmpfs" },
    { dev: "0:24", mountPoint: "/dev/pts", fsType: "devpts" },
  ],
  container: [{ dev: "0:44", mountPoint: "/dev/pts", fsType: "devpts" }],
};

/** A /proc in memory, counting the fd links and the stat files read in each process. */
class FakeProcFs extends ProcFs {
  readonly procs = new Map<number, FakeProc>();
  readonly tableReads = new Map<number, number>();
  readonly statReads = new Map<number, number>();
  /** No fd count from st_size of /proc/PID/fd, as before Linux 6.2. */
  noFdCount = false;
  /** This process's own pid namespace, with the marks of a pid allocator: steady passes then list only new pids. */
  positioned = false;
  /** The allocator's marks: the pid of the last process added (it went round when lower), a fork per process added. */
  private lastPid = 0;
  private forks = 0;
  /** Whole listings made. */
  wholeListings = 0;

  constructor() {
    super("/nonexistent/fake-proc");
  }

  add(pid: number, proc: Partial<FakeProc> & { fds?: Map<number, FakeFd> }): FakeProc {
    const full: FakeProc = {
      ppid: 1,
      startTicks: 100 + pid,
      comm: `p${pid}`,
      ttyNr: 0,
      fds: new Map([0, 1, 2].map((fd) => [fd, nullFd(fd)])),
      cgroup: null,
      nsPids: [pid],
      mntNs: "host",
      ...proc,
    };
    this.procs.set(pid, full);
    this.lastPid = pid;
    this.forks++;
    return full;
  }

  resetReads(): void {
    this.tableReads.clear();
    this.statReads.clear();
  }

  /** Runs `fn` (a reference scan) without counting its reads. */
  quietly<T>(fn: () => T): T {
    const saved = new Map(this.tableReads);
    const savedStats = new Map(this.statReads);
    try {
      return fn();
    } finally {
      this.tableReads.clear();
      for (const [pid, reads] of saved) this.tableReads.set(pid, reads);
      this.statReads.clear();
      for (const [pid, reads] of savedStats) this.statReads.set(pid, reads);
    }
  }

  readsOf(pid: number): number {
    return this.tableReads.get(pid) ?? 0;
  }

  statReadsOf(pid: number): number {
    return this.statReads.get(pid) ?? 0;
  }

  private get(pid: number, path = `${pid}`): FakeProc {
    const proc = this.procs.get(pid);
    if (!proc) throw errno("ENOENT", `${this.root}/${path}`);
    return proc;
  }

  private fd(pid: number, fd: string): FakeFd {
    const found = this.get(pid).fds.get(Number(fd));
    if (!found) throw errno("ENOENT", `${this.root}/${pid}/fd/${fd}`);
    return found;
  }

  override pids(): number[] {
    this.wholeListings++;
    return [...this.procs.keys()];
  }
  override pidsBetween(from: number, to: number): number[] | null {
    return this.positioned ? [...this.procs.keys()].filter((pid) => pid >= from && pid <= to).sort((a, b) => a - b) : null;
  }
  override isOwnPidNamespace(): boolean {
    return this.positioned;
  }
  override pidMarks(): PidMarks | null {
    return this.positioned ? { lastPid: this.lastPid, forks: this.forks, pidMax: 32_768 } : null;
  }
  override bootTimeSec(): number {
    return 1_700_000_000;
  }
  override statText(pid: number): string {
    const p = this.get(pid);
    this.statReads.set(pid, this.statReadsOf(pid) + 1);
    // Fields 3.. after comm; num_threads is field 20, starttime field 22.
    return `${pid} (${p.comm}) S ${p.ppid} ${pid} ${pid} ${p.ttyNr} -1 0 0 0 0 0 0 0 0 0 20 0 1 0 ${p.startTicks} 1000 100\n`;
  }
  override stat(pid: number): StatFields | null {
    return parseStat(this.statText(pid));
  }
  override fdCount(pid: number): number | null {
    const proc = this.get(pid);
    return this.noFdCount ? null : proc.fds.size;
  }
  override fds(pid: number): string[] {
    const proc = this.get(pid);
    if (proc.denied) throw errno("EACCES", `${this.root}/${pid}/fd`);
    return [...proc.fds.keys()].map(String);
  }
  override fdLink(pid: number, fd: string): string {
    this.tableReads.set(pid, this.readsOf(pid) + 1);
    return this.fd(pid, fd).target;
  }
  override fdLinkIfOpen(pid: number, fd: string): string | null {
    const proc = this.get(pid);
    if (proc.denied) throw errno("EACCES", `${this.root}/${pid}/fd/${fd}`);
    this.tableReads.set(pid, this.readsOf(pid) + 1);
    return proc.fds.get(Number(fd))?.target ?? null;
  }
  override fdStat(pid: number, fd: string): Stats {
    const f = this.fd(pid, fd);
    return { isCharacterDevice: () => true, rdev: f.rdev, dev: f.dev, ino: f.ino, atimeMs: f.atimeMs, mtimeMs: f.mtimeMs } as unknown as Stats;
  }
  override fdinfoTtyIndex(pid: number, fd: string): number | null {
    return this.fd(pid, fd).ttyIndex ?? null;
  }
  override status(pid: number): { uid: number; nsPids: number[] } {
    return { uid: 0, nsPids: this.get(pid).nsPids };
  }
  override namespace(pid: number, kind: "pid" | "mnt"): string | null {
    const proc = this.get(pid);
    if (proc.exiting) throw errno("ENOENT", `${this.root}/${pid}/ns/${kind}`);
    return kind === "mnt" ? proc.mntNs : proc.nsPids.length > 1 ? "4026532300" : "4026531836";
  }
  override cmdline(pid: number): { args: string[]; truncated: boolean } {
    return { args: [this.get(pid).comm], truncated: false };
  }
  override cgroupContainerId(pid: number): string | null {
    return this.get(pid).cgroup;
  }
  override cgroupText(pid: number): string {
    const id = this.get(pid).cgroup;
    return id === null ? "0::/user.slice\n" : `0::/system.slice/docker-${id}.scope\n`;
  }
  override mountinfo(pid: number): MountinfoEntry[] {
    const proc = this.get(pid);
    if (proc.exiting) throw errno("EINVAL", `${this.root}/${pid}/mountinfo`);
    return MOUNTS[proc.mntNs] ?? [];
  }
}

const CONTAINER = "c".repeat(64);

/** A host login (pid 10 master, 11 slave), a container with an init and an exec (shim 20 holds masters). */
function host(): FakeProcFs {
  const procfs = new FakeProcFs();
  procfs.add(1, {});
  procfs.add(10, {
    comm: "sshd",
    fds: new Map([
      [3, nullFd(3)],
      [4, { ...masterFd(HOST_PTS, 0), target: "/dev/ptmx", dev: dev(0, 6), ino: 91 }],
    ]),
  });
  procfs.add(11, { comm: "bash", ppid: 10, ttyNr: 34816, fds: new Map([0, 1, 2].map((fd) => [fd, slaveFd(HOST_PTS, 0)])) });
  procfs.add(20, {
    comm: "containerd-shim",
    fds: new Map([
      [0, nullFd(0)],
      [9, masterFd(CONTAINER_PTS, 0)],
      [10, masterFd(CONTAINER_PTS, 1)],
    ]),
  });
  procfs.add(21, {
    comm: "sh",
    ppid: 20,
    nsPids: [21, 1],
    mntNs: "container",
    cgroup: CONTAINER,
    fds: new Map([0, 1, 2].map((fd) => [fd, slaveFd(CONTAINER_PTS, 0)])),
  });
  procfs.add(22, {
    comm: "sh",
    ppid: 20,
    nsPids: [22, 7],
    mntNs: "container",
    cgroup: CONTAINER,
    fds: new Map([0, 1, 2].map((fd) => [fd, slaveFd(CONTAINER_PTS, 1, 5_000, 6_000)])),
  });
  for (let pid = 100; pid < 110; pid++) procfs.add(pid, { comm: "sleep" });
  return procfs;
}

/** The kernel's pty.nr for a fake host: the ptys it really holds. */
const allocated = (procfs: FakeProcFs): number => procfs.quietly(() => distinctPtys(scanProc(procfs)));

// Each case twice: steady passes listing every pid, and listing only the pids given out since the last (PidListing).
describe.each([
  ["every pid", false],
  ["only new pids", true],
])("IncrementalScanner, steady passes listing %s", (_, positioned) => {
  let procfs: FakeProcFs;
  let clock: number;
  let scanner: IncrementalScanner;
  const scan = (ptyAllocated = allocated(procfs)) => scanner.scan({ ptyAllocated, initPids: [21] });
  /** Equal to a full scan; listing only new pids, a process that exited may stay among the parents until a whole listing. */
  const expectEqualsFull = (result: ModalScan): void => {
    const live = positioned ? { ...result, ppids: new Map([...result.ppids].filter(([pid]) => procfs.procs.has(pid))) } : result;
    expect(scanDigest(live)).toEqual(scanDigest(procfs.quietly(() => scanProc(procfs, { initPids: [21] }))));
  };

  beforeEach(() => {
    procfs = host();
    procfs.positioned = positioned;
    clock = 0;
    scanner = new IncrementalScanner(procfs, { now: () => clock, fullRescanEveryMs: 60_000 });
  });

  it("starts with a full pass equal to scanProc", async () => {
    const result = await scan();
    expect(result.mode).toBe("full");
    expect(distinctPtys(result)).toBe(3);
    expectEqualsFull(result);
  });

  it("reads nothing of a known process that holds no pty, only the holders; and still equals scanProc", async () => {
    await scan();
    procfs.resetReads();
    clock = 10_000;
    const ptys = allocated(procfs);
    const listed = procfs.wholeListings;
    const result = await scan(ptys);
    expect(procfs.wholeListings).toBe(positioned ? listed : listed + 1);
    expect(result.mode).toBe("incremental");
    expect([...procfs.tableReads.values()].reduce((a, b) => a + b, 0)).toBe(0);
    for (let pid = 100; pid < 110; pid++) expect(procfs.statReadsOf(pid)).toBe(0);
    expect(procfs.statReadsOf(1)).toBe(0);
    // Holders: their stat, for the start time and what others change.
    for (const pid of [10, 11, 20, 21, 22]) expect(procfs.statReadsOf(pid)).toBe(1);
    expect(result.ppids.get(105)).toBe(1); // carried
    expectEqualsFull(result);
  });

  it("reads a new process, and forgets one that exited", async () => {
    await scan();
    procfs.add(30, { comm: "script", fds: new Map([[5, masterFd(HOST_PTS, 3)]]) });
    procfs.add(31, { comm: "sh", ppid: 30, fds: new Map([[0, slaveFd(HOST_PTS, 3)]]) });
    procfs.procs.delete(22);
    procfs.resetReads();
    const result = await scan();
    expect(result.mode).toBe("incremental");
    expect(procfs.readsOf(30)).toBeGreaterThan(0);
    expect(procfs.readsOf(100)).toBe(0);
    expect(result.processes.has(22)).toBe(false);
    expect(result.ppids.has(22)).toBe(false);
    expectEqualsFull(result);
  });

  it("re-reads a holder whose fd count moved: another pty end, or one dup'd", async () => {
    await scan();
    procfs.procs.get(22)?.fds.set(7, slaveFd(CONTAINER_PTS, 0));
    procfs.procs.get(11)?.fds.set(9, slaveFd(HOST_PTS, 0));
    procfs.resetReads();
    const result = await scan();
    expect(result.mode).toBe("incremental");
    expect(procfs.readsOf(22)).toBeGreaterThan(0);
    expect(result.ptyFds).toContainEqual({ pid: 22, fd: 7, role: "slave", devptsDev: "0:44", index: 0 });
    expect(result.ptyFds).toContainEqual({ pid: 11, fd: 0, role: "slave", devptsDev: "0:24", index: 0, fdCount: 4 });
    expectEqualsFull(result);
  });

  it("finds a new session's master on the running process that took it: its slave holder's parent, read as its fd count moved", async () => {
    const shim = procfs.add(40, { comm: "containerd-shim" }); // no pty yet: not read by steady passes
    await scan();
    shim.fds.set(9, masterFd(CONTAINER_PTS, 2));
    procfs.add(41, {
      comm: "sh",
      ppid: 40,
      mntNs: "container",
      cgroup: CONTAINER,
      fds: new Map([0, 1, 2].map((fd) => [fd, slaveFd(CONTAINER_PTS, 2)])),
    });
    procfs.resetReads();
    const result = await scan();
    expect(result.mode).toBe("incremental");
    expect(procfs.readsOf(40)).toBeGreaterThan(0);
    expect(result.ptyFds).toContainEqual({ pid: 40, fd: 9, role: "master", devptsDev: "0:44", index: 2 });
    expectEqualsFull(result);
    // A holder now: confirmed by a stat of its master, its links not read again.
    procfs.resetReads();
    expectEqualsFull(await scan());
    expect(procfs.readsOf(40)).toBe(0);
  });

  it("leaves a masterless pty's parent unread while its fd count holds still", async () => {
    const parent = procfs.add(45, { comm: "keeper" });
    await scan();
    // The child holds a slave whose master was closed (a hung-up pty): no master to find.
    procfs.add(46, { comm: "orphan", ppid: 45, fds: new Map([0, 1, 2].map((fd) => [fd, slaveFd(HOST_PTS, 6)])) });
    procfs.resetReads();
    await scan();
    expect(procfs.readsOf(45)).toBe(0); // the count the full pass read has not moved
    parent.fds.set(5, nullFd(5));
    await scan();
    expect(procfs.readsOf(45)).toBeGreaterThan(0);
    procfs.resetReads();
    const result = await scan();
    expect(procfs.readsOf(45)).toBe(0);
    expectEqualsFull(result);
  });

  it("misses a known process's pty opened without an allocation until the periodic full pass", async () => {
    await scan();
    procfs.procs.get(102)?.fds.set(1, slaveFd(HOST_PTS, 0)); // opens an existing /dev/pts/0: pty.nr does not move
    clock = 59_999;
    const stale = await scan();
    expect(stale.mode).toBe("incremental");
    expect(stale.ptyFds.some((fd) => fd.pid === 102)).toBe(false);
    clock = 60_000;
    const result = await scan();
    expect(result.mode).toBe("full");
    expect(result.ptyFds).toContainEqual({ pid: 102, fd: 1, role: "slave", devptsDev: "0:24", index: 0 });
    expectEqualsFull(result);
  });

  it("finds a pty a known process allocated for itself at once, by a full pass: pty.nr disagrees", async () => {
    await scan();
    const sleeper = procfs.procs.get(104);
    sleeper?.fds.set(5, masterFd(HOST_PTS, 7));
    sleeper?.fds.set(6, slaveFd(HOST_PTS, 7));
    const result = await scan();
    expect(result.mode).toBe("full");
    expect(result.ptyFds).toContainEqual({ pid: 104, fd: 6, role: "slave", devptsDev: "0:24", index: 7 });
    expectEqualsFull(result);
  });

  it("treats a holder's reused pid (new start time) as a new process", async () => {
    await scan();
    procfs.add(11, { comm: "reused", startTicks: 9_999, fds: new Map([[0, slaveFd(HOST_PTS, 0)]]) });
    const result = await scan();
    expect(result.mode).toBe("incremental");
    expect(result.processes.get(11)).toMatchObject({ comm: "reused", startTicks: 9_999 });
    expectEqualsFull(result);
  });

  it("confirms each known pty file by a stat of its first fd, and re-reads the holder when that is not the same file any more", async () => {
    await scan();
    const shell = procfs.procs.get(11);
    // fds 0-2 name one file: one entry, confirmed through fd 0. (A change to fd 1 or 2 alone, made
    // without this process running, is the CLONE_FILES case the periodic full pass catches.)
    if (shell) shell.fds.set(0, { ...slaveFd(HOST_PTS, 0), ino: 999 });
    procfs.resetReads();
    const result = await scan();
    expect(procfs.readsOf(11)).toBeGreaterThan(0);
    expectEqualsFull(result);
  });

  it("refreshes tty times of holders that did not run", async () => {
    await scan();
    const shell = procfs.procs.get(22);
    for (const fd of shell?.fds.values() ?? []) Object.assign(fd, { atimeMs: 70_000, mtimeMs: 80_000 });
    const result = await scan();
    expect(result.ttyTimes.get("0:44:1")).toEqual({ atimeMs: 70_000, mtimeMs: 80_000 });
    expectEqualsFull(result);
  });

  it("reads what others can change in a holder's stat on every pass (parent, controlling tty); its cgroup at full passes", async () => {
    await scan();
    const shell = procfs.procs.get(22);
    if (shell) Object.assign(shell, { ppid: 1, ttyNr: 0, cgroup: "d".repeat(64) });
    const result = await scan();
    expect(result.mode).toBe("incremental");
    expect(result.processes.get(22)).toMatchObject({ ppid: 1, ttyNr: 0, containerId: CONTAINER });
    expect(result.ppids.get(22)).toBe(1);
    clock = 60_000;
    const full = await scan();
    expect(full.mode).toBe("full");
    expect(full.processes.get(22)).toMatchObject({ containerId: "d".repeat(64) });
    expectEqualsFull(full);
  });

  it("counts parse problems on every pass, as a full pass does", async () => {
    procfs.add(50, { fds: new Map([[3, { ...masterFd(HOST_PTS, 9), ttyIndex: undefined }]]) });
    await scan();
    const result = await scan();
    expect(result.mode).toBe("incremental");
    expect(result.parseErrors).toEqual({ fdinfo: 1 });
    expectEqualsFull(result);
  });

  it("counts a master holder that exits before its instance is known as vanished, not as a parse error", async () => {
    await scan();
    // New since the last pass, and exiting: its namespaces are released between the read of its fds and of its mounts.
    procfs.add(25, { comm: "containerd-shim", exiting: true, fds: new Map([[9, masterFd(CONTAINER_PTS, 0)]]) });
    const result = await scan();
    expect(result.mode).toBe("incremental");
    expect(result.parseErrors).toEqual({});
    expect(result.vanished).toBe(1);
    expect(result.ptyFds.some((fd) => fd.pid === 25)).toBe(false);
    const full = procfs.quietly(() => scanProc(procfs, { initPids: [21] }));
    expect(full.parseErrors).toEqual({});
    expect(full.vanished).toBe(1);
    expect(scanDigest(result)).toEqual(scanDigest(full));
  });

  it("lists unreadable fd tables on every pass", async () => {
    procfs.add(60, { denied: true });
    await scan();
    const result = await scan();
    expect(result.unreadablePids).toEqual([60]);
    expectEqualsFull(result);
  });

  it("re-reads each holder's fds on every pass where procfs gives no fd count, and stays equal", async () => {
    procfs.noFdCount = true;
    await scan();
    procfs.resetReads();
    const result = await scan();
    expect(result.mode).toBe("incremental");
    expect(procfs.readsOf(11)).toBeGreaterThan(0);
    expect(procfs.readsOf(100)).toBe(0);
    expectEqualsFull(result);
  });

  it("goes full at once when the ptys found stop matching pty.nr", async () => {
    await scan();
    const result = await scan(allocated(procfs) + 1); // a pty it cannot see (yet)
    expect(result.mode).toBe("full");
  });

  it("does not go full on every pass for a gap that a full pass could not close either", async () => {
    const unseen = allocated(procfs) + 2; // e.g. ptys held only by unreadable processes
    expect((await scan(unseen)).mode).toBe("full");
    expect((await scan(unseen)).mode).toBe("incremental");
    expect((await scan(unseen + 1)).mode).toBe("full"); // the gap moved
  });

  it("goes full at least every fullRescanEveryMs", async () => {
    await scan();
    clock = 30_000;
    expect((await scan()).mode).toBe("incremental");
    clock = 60_000;
    expect((await scan()).mode).toBe("full");
    clock = 119_999;
    expect((await scan()).mode).toBe("incremental");
  });

  it("after forget(), reads everything again", async () => {
    await scan();
    scanner.forget();
    procfs.resetReads();
    expect((await scan()).mode).toBe("full");
    expect(procfs.readsOf(100)).toBeGreaterThan(0);
  });
});

describe("IncrementalScanner listing only the pids given out since the last pass", () => {
  let procfs: FakeProcFs;
  let mono: number;
  let scanner: IncrementalScanner;
  const sender = new DeltaSender();
  const receiver = new DeltaReceiver();
  /** A steady pass, through the thread boundary: what arrives holds the scanner's parents. */
  const pass = (mode: "full" | "incremental" = "incremental", budgetMs = Infinity): ModalScan => {
    const scan = scanner.pass({ initPids: [21] }, mode, budgetMs);
    const arrived = receiver.apply(structuredClone(sender.delta(scan, scanner.parentChanges())));
    expect(byPid(arrived.ppids)).toEqual(byPid(scan.ppids));
    return scan;
  };
  const byPid = (map: Map<number, number>): [number, number][] => [...map].sort(([a], [b]) => a - b);

  beforeEach(() => {
    procfs = host();
    procfs.positioned = true;
    mono = 0;
    scanner = new IncrementalScanner(procfs, { now: () => 0, clock: () => mono });
    sender.forget();
    receiver.forget();
    pass("full");
  });

  it("keeps an exited process's parent until the next whole listing, a minute on; a holder's goes at once", () => {
    procfs.procs.delete(105);
    procfs.procs.delete(11);
    const steady = pass();
    expect(steady.pidListing).toBe("new_pids");
    expect(steady.ppids.get(105)).toBe(1);
    expect(steady.ppids.has(11)).toBe(false);
    mono += WHOLE_LISTING_EVERY_MS;
    const listed = procfs.wholeListings;
    const whole = pass();
    expect(procfs.wholeListings).toBe(listed + 1);
    expect(whole.mode).toBe("incremental");
    expect(whole.ppids.has(105)).toBe(false);
  });

  it("reads a new process whose pid the allocator gave out past pid_max (round from the bottom), and a reused holder pid", () => {
    procfs.add(32_000, { comm: "high" });
    pass();
    procfs.add(5, { comm: "low", ppid: 32_000, fds: new Map([[0, slaveFd(HOST_PTS, 5)]]) });
    procfs.add(11, { comm: "again", ppid: 1, startTicks: 9_999 });
    const steady = pass();
    expect(procfs.wholeListings).toBe(1);
    expect(steady.processes.get(5)?.ppid).toBe(32_000);
    expect(steady.ppids.get(11)).toBe(1);
    expect(steady.processes.has(11)).toBe(false); // the new 11 holds no pty
  });

  it("a new process a cut steady pass did not reach is read by the next one, though no pid was given out since", () => {
    class TimedProcFs extends FakeProcFs {
      override statText(pid: number): string {
        mono++;
        return super.statText(pid);
      }
    }
    procfs = new TimedProcFs();
    for (const [pid, proc] of host().procs) procfs.add(pid, proc);
    procfs.positioned = true;
    scanner = new IncrementalScanner(procfs, { now: () => 0, clock: () => mono });
    sender.forget();
    receiver.forget();
    pass("full");
    procfs.add(300, { comm: "late", fds: new Map([[0, slaveFd(HOST_PTS, 7)]]) });
    const cut = pass("incremental", 3);
    expect(cut.cut).toBeDefined();
    expect(cut.processes.has(300)).toBe(false);
    const next = pass();
    expect(next.cut).toBeUndefined();
    expect(next.processes.has(300)).toBe(true);
    expect(procfs.wholeListings).toBe(1);
  });

  it("reads a refused process again on every pass, and counts a known process's parse problems on each", () => {
    procfs.add(60, { denied: true });
    procfs.add(61, { fds: new Map([[4, { ...masterFd(HOST_PTS, 9), ttyIndex: undefined }]]) });
    for (let i = 0; i < 3; i++) {
      const steady = pass();
      expect(steady.unreadablePids).toEqual([60]);
      expect(steady.parseErrors).toEqual({ fdinfo: 1 });
      expect(steady.ppids.get(60)).toBe(1);
    }
    expect(procfs.wholeListings).toBe(1);
  });
});

describe("IncrementalScanner with a pass budget", () => {
  /** Each stat read costs one unit of the fake monotonic clock. */
  class TimedProcFs extends FakeProcFs {
    time = 0;
    override statText(pid: number): string {
      this.time++;
      return super.statText(pid);
    }
  }
  const timed = (): TimedProcFs => {
    const procfs = new TimedProcFs();
    for (const [pid, proc] of host().procs) procfs.procs.set(pid, proc);
    return procfs;
  };
  const reached = (procfs: FakeProcFs): number[] => [...procfs.procs.keys()].filter((pid) => procfs.readsOf(pid) > 0).sort((a, b) => a - b);

  it("stops reading when the budget is spent, keeps the last known state of the rest, and says how many", () => {
    const procfs = timed();
    const scanner = new IncrementalScanner(procfs, { now: () => 0, clock: () => procfs.time });
    const whole = scanner.pass({ initPids: [21] }, "full");
    // pids ascending: 1 10 11 20 | 21 22 100…109. The container's shells (21, 22) change meanwhile.
    procfs.resetReads();
    const cut = scanner.pass({ initPids: [21] }, "full", 4);
    expect(cut.cut).toEqual({ unread: 12 });
    expect(reached(procfs)).toEqual([1, 10, 11, 20]);
    // The unread holders are still there, as the last pass left them.
    expect(scanDigest(cut)).toEqual(scanDigest(whole));
  });

  it("goes on after the last pid the cut one read: a full sweep ends over a few passes, and is then whole", () => {
    const procfs = timed();
    const scanner = new IncrementalScanner(procfs, { now: () => 0, clock: () => procfs.time });
    scanner.pass({}, "full");
    procfs.resetReads();
    scanner.pass({}, "full", 4); // 1 10 11 20
    procfs.resetReads();
    const next = scanner.pass({}, "full", 4); // 21 22 100 101
    expect(next.cut).toEqual({ unread: 8 }); // 102…109: the four read by the last pass are not unread
    expect(reached(procfs)).toEqual([21, 22, 100, 101]);
    procfs.resetReads();
    const last = scanner.pass({}, "full"); // no budget: the rest of the sweep, 102 on; the sweep is whole
    expect(last.cut).toBeUndefined();
    expect(reached(procfs)).toEqual([102, 103, 104, 105, 106, 107, 108, 109]);
    procfs.resetReads();
    scanner.pass({}, "full"); // a new sweep, from the lowest pid
    expect(reached(procfs)).toEqual([1, 10, 11, 20, 21, 22, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109]);
  });

  it("a process first seen after the cut waits for a later pass; one that exited is not reported", () => {
    const procfs = timed();
    const scanner = new IncrementalScanner(procfs, { now: () => 0, clock: () => procfs.time });
    scanner.pass({}, "full");
    procfs.add(200, { comm: "late", fds: new Map([[0, slaveFd(HOST_PTS, 7)]]) });
    const cut = scanner.pass({}, "full", 4);
    expect(cut.ptyFds.some((fd) => fd.pid === 200)).toBe(false);
    const after = scanner.pass({}, "full");
    expect(after.ptyFds.some((fd) => fd.pid === 200)).toBe(true);
  });

  it("is not recorded as a full pass, and is not followed by one in the same scan", async () => {
    const procfs = timed();
    let clock = 0;
    const scanner = new IncrementalScanner(procfs, { now: () => clock, clock: () => procfs.time, fullRescanEveryMs: 60_000 });
    const ptys = allocated(procfs);
    expect((await scanner.scan({ ptyAllocated: ptys }, 4)).mode).toBe("full");
    clock = 1_000;
    // The cut full pass did not count: the next is full again, ends the sweep, and that counts.
    const ended = await scanner.scan({ ptyAllocated: ptys }, 100);
    expect(ended.mode).toBe("full");
    expect(ended.cut).toBeUndefined();
    expect(scanDigest(ended)).toEqual(scanDigest(procfs.quietly(() => scanProc(procfs))));
    clock = 1_500;
    expect((await scanner.scan({ ptyAllocated: ptys })).mode).toBe("incremental");
    clock = 2_000;
    const incremental = await scanner.scan({ ptyAllocated: ptys + 1 }, 4); // disagrees with pty.nr, but has no time left
    expect(incremental.mode).toBe("incremental");
    expect(incremental.cut).toBeDefined();
  });
});

describe("IncrementalScanner partitions", () => {
  it("each reads only its pids; merged, they equal scanProc", () => {
    const procfs = host();
    const parts = [0, 1, 2].map((index) => new IncrementalScanner(procfs, { now: () => 0, partition: { index, count: 3 } }));
    for (const part of parts) part.pass({ initPids: [21] }, "full");
    procfs.add(111, { comm: "login", ppid: 10, fds: new Map([[0, slaveFd(HOST_PTS, 0)]]) });
    procfs.procs.get(22)?.fds.set(7, slaveFd(CONTAINER_PTS, 1));
    const scans = parts.map((part) => part.pass({ initPids: [21] }, "incremental"));
    scans.forEach((result, index) => {
      expect([...result.ppids.keys()].every((pid) => pid % 3 === index)).toBe(true);
    });
    expect(scanDigest(mergeScans(scans))).toEqual(scanDigest(scanProc(procfs, { initPids: [21] })));
  });
});

describe("RescanPolicy", () => {
  it.each([
    { case: "never full yet", lastFull: null, now: 0, due: true },
    { case: "just after a full pass", lastFull: 1_000, now: 1_001, due: false },
    { case: "one period later", lastFull: 1_000, now: 61_000, due: true },
  ])("dueFull: $case", ({ lastFull, now, due }) => {
    const policy = new RescanPolicy(60_000);
    if (lastFull !== null) policy.recordFull(lastFull, 5, 5);
    expect(policy.dueFull(now)).toBe(due);
  });

  it.each([
    { gapAtFull: 0, found: 5, allocated: 5, disagrees: false },
    { gapAtFull: 0, found: 5, allocated: 6, disagrees: true },
    { gapAtFull: 0, found: 6, allocated: 5, disagrees: true },
    { gapAtFull: 2, found: 5, allocated: 7, disagrees: false },
    { gapAtFull: 2, found: 5, allocated: 5, disagrees: true },
  ])(
    "disagrees(found $found, allocated $allocated) after a full pass with gap $gapAtFull → $disagrees",
    ({ gapAtFull, found, allocated, disagrees }) => {
      const policy = new RescanPolicy(60_000);
      policy.recordFull(0, 10, 10 + gapAtFull);
      expect(policy.disagrees(found, allocated)).toBe(disagrees);
    },
  );
});
