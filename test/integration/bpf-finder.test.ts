// The BPF pty finder (native/ptyfds.bpf.c through native/ptyfinder.c) on the real kernel: it is built
// and loads here, and a read that lets the kernel name the pty fds finds exactly what reading every
// fd link finds, for host ptys, ptys in private devpts instances, dup'd and high fds.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ptyKey, type ProcScan } from "../../src/domain/types.js";
import { bpfFinderFor, loadNativeFdLinks, type FdLink, type NativeBatch } from "../../src/procfs/native.js";
import { ProcFs } from "../../src/procfs/procfs.js";
import { scanProc } from "../../src/procfs/scan.js";
import { ScanWorker } from "../../src/procfs/worker.js";
import { cleanupAll, hostPty, killAndWait, nsPty, python3, startHelper } from "./support/index.js";
import { launchDaemon } from "./support/daemon.js";

afterAll(cleanupAll);

const MAIN = new URL("../../dist/main.js", import.meta.url).pathname;

/** The finder must be built and usable here (CI provisions clang and libbpf1, and runs as root): else fail, loudly. */
function finderPath(): string {
  const path = bpfFinderFor("/proc", { env: {} });
  if (path === null)
    throw new Error(
      "BPF pty finder not available: run as root after `npm run install` with clang and libbpf1 installed (bash scripts/provision-test-host.sh)",
    );
  return path;
}

function procfsWithNative(): ProcFs {
  const load = loadNativeFdLinks({ env: {} });
  if (load.reader === null) throw new Error(`native scan helper not loaded: ${load.reason}`);
  return new ProcFs("/proc", { native: load.reader });
}

async function readAll(procfs: ProcFs, finder?: string): Promise<NativeBatch> {
  const pending = procfs.batchOfAllAsync(2, finder);
  if (pending === null) throw new Error("this build of the addon has no scanFdLinksAsync (npm run install)");
  return pending;
}

/** What a scan says of the given processes' ptys: each fd with its role, instance, index and count, and the ptys' times. */
function ptysOf(scan: ProcScan, pids: readonly number[]): unknown {
  const mine = new Set(pids);
  const fds = scan.ptyFds.filter((fd) => mine.has(fd.pid)).sort((a, b) => a.pid - b.pid || a.fd - b.fd);
  const keys = [...new Set(fds.map((fd) => ptyKey(fd.devptsDev, fd.index)))].sort();
  return { fds, processes: pids.map((pid) => scan.processes.get(pid) ?? null), times: keys.map((key) => [key, scan.ttyTimes.get(key)]) };
}

/** A python process holding a pty with its slave dup'd 1,000 times, its master at fd 20,000 (or its limit's last), and 2,000 plain files. */
async function busyHolder(): Promise<{ pid: number; index: number; masterFd: number; close(): Promise<void> }> {
  const script = [
    "import os, pty, resource, time",
    "_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)",
    "resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))",
    "high = min(20000, hard - 1)",
    "m, s = pty.openpty()",
    "[os.dup(s) for _ in range(1000)]",
    "os.dup2(m, high); os.close(m)",
    "[os.open('/dev/null', os.O_RDONLY) for _ in range(2000)]",
    "print(os.ttyname(s), high, flush=True)",
    "time.sleep(120)",
  ].join("\n");
  const { child, pid, first } = await startHelper(python3(), ["-c", script], "busy pty holder");
  const [name = "", masterFd = ""] = first.trim().split(" ");
  return { pid, index: Number(name.split("/").at(-1)), masterFd: Number(masterFd), close: () => killAndWait(pid, child) };
}

describe("BPF pty finder", () => {
  it("is built, loads as root, and names the fds read", async () => {
    const batch = await readAll(procfsWithNative(), finderPath());
    expect(batch.finder).toBe("bpf");
    // Switched off, or asked of a procfs of another pid namespace's view, it is not used.
    expect(bpfFinderFor("/proc", { env: { PTYREAPER_BPF_FINDER: "0" } })).toBeNull();
    expect(bpfFinderFor("/nonexistent-proc", { env: {} })).toBeNull();
    expect(bpfFinderFor("/proc", { env: {}, addonPath: "/nonexistent/build/Release/ptyscan.node" })).toBeNull();
  });

  it("finds exactly what reading every fd link finds: host, private devpts, devtmpfs ptmx, dup'd and high fds", async () => {
    const host = await hostPty();
    const ns = await nsPty({ count: 2 });
    const nsDevtmpfs = await nsPty({ count: 1, ptmx: "/dev/ptmx" });
    const busy = await busyHolder();
    try {
      const pids = [host.masterPid, host.slavePid, ns.pid, nsDevtmpfs.pid, busy.pid];
      const initPids = [ns.pid, nsDevtmpfs.pid];
      const procfs = procfsWithNative();
      const found = await readAll(procfs, finderPath());
      expect(found.finder).toBe("bpf");
      // A process with no pty fd comes back read, with none (this test's own); scanProc takes them below.
      expect(found.links?.get(process.pid)).toEqual([]);
      const withFinder = scanProc(procfs, { initPids }, found);
      const everyLink = scanProc(new ProcFs("/proc", { native: null }), { initPids });
      expect(ptysOf(withFinder, pids)).toEqual(ptysOf(everyLink, pids));
      // And right, not only equal: the busy holder's dup'd slave folded, its master at its high fd.
      const busyFds = withFinder.ptyFds
        .filter((fd) => fd.pid === busy.pid)
        .map((fd) => `${fd.role} ${fd.fd} ${fd.index} ×${fd.fdCount ?? 1}`)
        .sort();
      expect(busy.masterFd).toBeGreaterThan(2000);
      expect(busyFds).toEqual([`master ${busy.masterFd} ${busy.index} ×1`, expect.stringMatching(new RegExp(`^slave \\d+ ${busy.index} ×1001$`))]);
      const nsFound = withFinder.ptyFds
        .filter((fd) => fd.pid === ns.pid)
        .map((fd) => `${fd.role} ${fd.devptsDev} ${fd.index}`)
        .sort();
      expect(nsFound).toEqual([`master ${ns.devptsDev} 0`, `master ${ns.devptsDev} 1`, `slave ${ns.devptsDev} 0`, `slave ${ns.devptsDev} 1`]);
    } finally {
      await Promise.all([host.close(), ns.close(), nsDevtmpfs.close(), busy.close()]);
    }
  });

  it("when the finder cannot run, reads every link and says why", async () => {
    const host = await hostPty();
    try {
      const procfs = procfsWithNative();
      const fallback = await readAll(procfs, "/nonexistent/ptyfds.bpf.o");
      expect(fallback.finder).toMatch(/^cannot open \/nonexistent\/ptyfds\.bpf\.o: /);
      const plain = await readAll(procfs);
      expect(plain.finder).toBeUndefined();
      const shape = (batch: NativeBatch, pid: number): Pick<FdLink, "fd" | "target" | "count">[] =>
        (batch.links?.get(pid) as FdLink[]).map(({ fd, target, count }) => ({ fd, target, count }));
      expect(shape(fallback, host.masterPid)).toEqual(shape(plain, host.masterPid));
      expect(shape(fallback, host.masterPid).length).toBeGreaterThan(0);
    } finally {
      await host.close();
    }
  });

  it("ptyreaper sessions --json reports the same ptys with the finder as without it", async () => {
    const ns = await nsPty({ count: 2 });
    const dir = mkdtempSync(join(tmpdir(), "ptyr-bpf-"));
    try {
      const config = join(dir, "config.yaml");
      writeFileSync(config, "docker:\n  enabled: false\nruntimes:\n  containerd:\n    enabled: false\n  podman:\n    enabled: false\n");
      // Under strace, to see whether the command started a BPF iterator (BPF_ITER_CREATE) or not.
      const run = (
        env: NodeJS.ProcessEnv,
      ): { ptys: { devptsDev: string; index: number; masterPids: number[]; slavePids: number[] }[]; iterators: number } => {
        const trace = join(dir, "trace");
        const cli = spawnSync(
          "strace",
          ["-f", "-qq", "-e", "trace=bpf", "-o", trace, process.execPath, MAIN, "sessions", "--json", "--config", config],
          {
            encoding: "utf8",
            timeout: 60_000,
            maxBuffer: 64 << 20,
            env: { ...process.env, ...env },
          },
        );
        expect(cli.status, cli.stderr).toBe(0);
        const report = JSON.parse(cli.stdout) as { ptys: { devptsDev: string; index: number; masterPids: number[]; slavePids: number[] }[] };
        const ptys = report.ptys
          .filter((pty) => pty.devptsDev === ns.devptsDev)
          .map(({ devptsDev, index, masterPids, slavePids }) => ({ devptsDev, index, masterPids, slavePids }));
        return {
          ptys,
          iterators: readFileSync(trace, "utf8")
            .split("\n")
            .filter((line) => /bpf\(BPF_ITER_CREATE, .*\) = \d+$/.test(line)).length,
        };
      };
      const withFinder = run({});
      const without = run({ PTYREAPER_BPF_FINDER: "0" });
      expect(withFinder.iterators).toBe(1);
      expect(without.iterators).toBe(0);
      expect(withFinder.ptys).toEqual(without.ptys);
      expect(withFinder.ptys).toEqual([0, 1].map((index) => ({ devptsDev: ns.devptsDev, index, masterPids: [ns.pid], slavePids: [ns.pid] })));
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await ns.close();
    }
  });
});

/** The capability bounding set systemd gives the daemon with these unit files, as setpriv's --bounding-set. */
function boundingSet(...files: string[]): string {
  const caps = files.flatMap((file) =>
    [...readFileSync(new URL(`../../${file}`, import.meta.url), "utf8").matchAll(/^CapabilityBoundingSet=(.*)$/gm)].flatMap((m) =>
      (m[1] ?? "").trim().split(/\s+/),
    ),
  );
  return ["-all", ...caps.map((cap) => `+${cap.replace(/^CAP_/, "").toLowerCase()}`)].join(",");
}

const ptyNr = (): number => Number(readFileSync("/proc/sys/kernel/pty/nr", "utf8"));

describe("BPF finder in the daemon's full passes", () => {
  it("the scan worker finds the same ptys, holders and times with the finder as without it, and says it used it", async () => {
    const host = await hostPty();
    const ns = await nsPty({ count: 2 });
    const busy = await busyHolder();
    const on = new ScanWorker({ procRoot: "/proc", bpfFinder: true });
    const off = new ScanWorker({ procRoot: "/proc", bpfFinder: false });
    try {
      finderPath(); // fails loudly where the finder cannot run
      const pids = [host.masterPid, host.slavePid, ns.pid, busy.pid];
      const options = { initPids: [ns.pid] };
      const withFinder = await on.scan({ ...options, ptyAllocated: ptyNr() });
      const everyLink = await off.scan({ ...options, ptyAllocated: ptyNr() });
      expect([withFinder.mode, everyLink.mode]).toEqual(["full", "full"]);
      expect(withFinder.finder).toBe("bpf");
      expect(everyLink.finder).toBe("switched off for this scanner");
      expect(ptysOf(withFinder, pids)).toEqual(ptysOf(everyLink, pids));
      expect(
        withFinder.ptyFds
          .filter((fd) => fd.pid === busy.pid)
          .map((fd) => `${fd.role} ${fd.index} ×${fd.fdCount ?? 1}`)
          .sort(),
      ).toEqual([`master ${busy.index} ×1`, `slave ${busy.index} ×1001`]);
      // The finder's pass also read the fd counts: the next pass is a steady one, and a pty opened since is found by it.
      const later = await hostPty();
      try {
        const next = await on.scan({ ...options, ptyAllocated: ptyNr() });
        expect(next.mode).toBe("incremental");
        expect(next.ptyFds.filter((fd) => fd.pid === later.slavePid).map((fd) => `${fd.role} ${fd.index}`)).toEqual([`slave ${later.index}`]);
        expect(ptysOf(next, pids)).toEqual(ptysOf(withFinder, pids));
      } finally {
        await later.close();
      }
    } finally {
      await Promise.all([on.close(), off.close(), host.close(), ns.close(), busy.close()]);
    }
  });

  it("the daemon uses it with the drop-in's capabilities, and under the shipped unit's says why not (ptyreaper_scan_info)", async () => {
    finderPath();
    const dir = mkdtempSync(join(tmpdir(), "ptyr-bpf-daemon-"));
    const config = join(dir, "config.yaml");
    writeFileSync(
      config,
      "docker:\n  enabled: false\nruntimes:\n  containerd:\n    enabled: false\n  podman:\n    enabled: false\nreaper:\n  mode: dry-run\n",
    );
    const run = async (caps: string): Promise<{ labels: Record<string, string>; said: unknown[] }> => {
      // setpriv --bounding-set gives root exactly these capabilities across exec, as CapabilityBoundingSet= does.
      const d = await launchDaemon("setpriv", [
        "--bounding-set",
        caps,
        "--",
        process.execPath,
        MAIN,
        "run",
        "--config",
        config,
        "--listen",
        "127.0.0.1:0",
      ]);
      try {
        await d.cycles(1);
        const { body } = await d.get("/metrics");
        const line = body.split("\n").find((l) => l.startsWith("ptyreaper_scan_info{")) ?? "";
        const labels: Record<string, string> = Object.fromEntries(
          [...line.matchAll(/(\w+)="([^"]*)"/g)].map((m): [string, string] => [m[1] ?? "", m[2] ?? ""]),
        );
        const said: unknown[] = d
          .logs()
          .filter((l) => l.component === "scan")
          .map((l): unknown[] => [l.msg, l.reason]);
        return { labels, said };
      } finally {
        await d.stop();
      }
    };
    try {
      const unit = await run(boundingSet("systemd/ptyreaper.service"));
      expect(unit.labels).toMatchObject({
        reader: "native",
        finder: "none",
        finder_reason: "no CAP_BPF and CAP_PERFMON (see systemd/bpf-finder.conf)",
        // The shipped unit's capabilities are enough for steady passes to list only new pids.
        listing: "new_pids",
        listing_reason: "",
      });
      expect(unit.said).toEqual([
        ["full passes read every fd link: BPF finder not used", "no CAP_BPF and CAP_PERFMON (see systemd/bpf-finder.conf)"],
        ["steady passes list only the pids given out since the last pass", undefined],
      ]);
      const dropIn = await run(boundingSet("systemd/ptyreaper.service", "systemd/bpf-finder.conf"));
      expect(dropIn.labels).toMatchObject({ reader: "native", finder: "bpf", finder_reason: "" });
      expect(dropIn.said).toEqual([
        ["full passes let the kernel name the pty fds (BPF finder)", undefined],
        ["steady passes list only the pids given out since the last pass", undefined],
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
