// Steady passes on the real /proc list only the pids the kernel gave out since the last pass (PidListing): a process
// started meanwhile, even one whose pid the allocator handed out below the last mark, is read at the next pass, and
// the parents that cross to the main thread stay equal to the scanner's.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import { killAndWait, python3 } from "./support/index.js";
import { trackProcess } from "./support/track.js";
import type { ModalScan } from "../../src/procfs/incremental.js";
import { WHOLE_LISTING_EVERY_MS } from "../../src/procfs/pid-listing.js";
import { ProcFs } from "../../src/procfs/procfs.js";
import { IncrementalScanner } from "../../src/procfs/scan.js";
import { DeltaReceiver, DeltaSender } from "../../src/procfs/scan-delta.js";

/** The real /proc, counting whole listings and listings from a pid. */
class CountingProcFs extends ProcFs {
  whole = 0;
  between = 0;
  override pids(): number[] {
    this.whole++;
    return super.pids();
  }
  override pidsBetween(from: number, to: number): number[] | null {
    this.between++;
    return super.pidsBetween(from, to);
  }
}

/** Holds a new pty (master and slave) and says so. */
const PTY_HOLDER_PY = String.raw`
import os, time
master, slave = os.openpty()
print("ready", flush=True)
time.sleep(600)
`;

const started: ChildProcess[] = [];

async function start(args: string[], what: string): Promise<number> {
  const child = spawn(args[0] ?? "", args.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
  if (child.pid === undefined) throw new Error(`could not start ${what}`);
  trackProcess(child.pid, what, child);
  started.push(child);
  if (args[0] === python3()) {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    const line = await lines[Symbol.asyncIterator]().next();
    if (line.value !== "ready") throw new Error(`${what} did not start`);
  }
  return child.pid;
}

afterEach(async () => {
  await Promise.all(started.splice(0).map((child) => killAndWait(child.pid ?? 0, child)));
});

describe("steady passes list only the pids given out since the last (real kernel)", () => {
  let clock = 0;
  const procfs = new CountingProcFs("/proc");
  const scanner = new IncrementalScanner(procfs, { now: () => clock, clock: () => clock });
  const sender = new DeltaSender();
  const receiver = new DeltaReceiver();

  /** One pass, through the thread boundary as the scan thread sends it: what arrives must hold the same parents. */
  function pass(mode: "full" | "incremental"): ModalScan {
    const scan = scanner.pass({}, mode);
    const arrived = receiver.apply(structuredClone(sender.delta(scan, scanner.parentChanges())));
    expect(new Map([...arrived.ppids].sort(([a], [b]) => a - b))).toEqual(new Map([...scan.ppids].sort(([a], [b]) => a - b)));
    return scan;
  }

  it("finds a process and a pty holder started between two passes without listing every pid", async () => {
    pass("full");
    const sleeper = await start(["sleep", "600"], "idle sleep");
    const holder = await start([python3(), "-c", PTY_HOLDER_PY], "pty holder");
    const before = procfs.whole;
    const scan = pass("incremental");
    expect(procfs.whole).toBe(before);
    expect(procfs.between).toBeGreaterThan(0);
    expect(scan.ppids.get(sleeper)).toBe(process.pid);
    expect(scan.processes.has(sleeper)).toBe(false); // holds no pty: its parent is known, nothing more is read
    expect(scan.processes.get(holder)?.ppid).toBe(process.pid);
    expect(scan.ptyFds.filter((fd) => fd.pid === holder).map((fd) => fd.role)).toEqual(expect.arrayContaining(["master", "slave"]));
  });

  it("finds a process whose pid the allocator gave out below the last mark (ns_last_pid moved back)", async () => {
    pass("incremental");
    const mark = procfs.pidMarks()?.lastPid ?? 0;
    expect(mark).toBeGreaterThan(2_000);
    const path = "/proc/sys/kernel/ns_last_pid";
    const saved = readFileSync(path, "utf8").trim();
    try {
      writeFileSync(path, String(mark - 1_000));
      const low = await start(["sleep", "600"], "sleep below the mark");
      expect(low).toBeLessThan(mark);
      const before = procfs.whole;
      const scan = pass("incremental");
      expect(procfs.whole).toBe(before);
      expect(scan.ppids.get(low)).toBe(process.pid);
    } finally {
      // The allocator goes on from where it was, as if never moved back.
      writeFileSync(path, String(Math.max(Number(saved), procfs.pidMarks()?.lastPid ?? 0)));
    }
  });

  it("forgets processes that exited at the next whole listing, and parents cross as the scanner has them", async () => {
    const gone = await start(["sleep", "600"], "sleep that exits");
    pass("incremental");
    const child = started.pop();
    await killAndWait(gone, child ?? null);
    const before = procfs.whole;
    clock += WHOLE_LISTING_EVERY_MS;
    const scan = pass("incremental");
    expect(procfs.whole).toBe(before + 1);
    expect(scan.ppids.has(gone)).toBe(false);
    expect(scan.ppids.get(process.pid)).toBeDefined();
  });
});
