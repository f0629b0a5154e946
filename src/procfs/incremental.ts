// When a pass must read everything: the one rescan policy, used by the in-process scanner and the worker pool alike.
import { ptyKey, type ProcScan } from "../domain/types.js";

export type ScanMode = "full" | "incremental";
export type ModalScan = ProcScan & { mode: ScanMode };

/** Config fullScanInterval's default: a full pass costs what the host costs (every fd link), so it is rare. */
export const DEFAULT_FULL_RESCAN_EVERY_MS = 600_000;

/** Distinct ptys in a scan, the number the kernel's pty.nr counts. */
export function distinctPtys(scan: ProcScan): number {
  // ptyKey gives each pty's one string (no new one per fd); an indexed loop makes no iterator step per fd, every cycle.
  const keys = new Set<string>();
  for (let i = 0; i < scan.ptyFds.length; i++) {
    const fd = scan.ptyFds[i] as ProcScan["ptyFds"][number];
    keys.add(ptyKey(fd.devptsDev, fd.index));
  }
  return keys.size;
}

/** When a pass must be full: the first, one every `everyMs`, and one as soon as the pty count stops matching the kernel's. */
export class RescanPolicy {
  private lastFullAt: number | null = null;
  /**
   * pty.nr minus the ptys found, at the last full pass. A gap a full pass could not close either
   * (ptys held only by processes we cannot read, or by fds in flight in a unix socket) must not
   * cause a full pass on every cycle; a change in the gap does.
   */
  private gapAtFull = 0;

  constructor(private readonly everyMs: number) {}

  dueFull(now: number): boolean {
    return this.lastFullAt === null || now - this.lastFullAt >= this.everyMs;
  }

  disagrees(found: number, allocated: number): boolean {
    return allocated - found !== this.gapAtFull;
  }

  recordFull(now: number, found: number, allocated: number): void {
    this.lastFullAt = now;
    this.gapAtFull = allocated - found;
  }

  /** After state was lost (a restarted worker): the next pass is full. */
  forget(): void {
    this.lastFullAt = null;
  }
}

/**
 * The one decision between passes: incremental unless a full one is due; full after all when the
 * incremental result disagrees with pty.nr. A pass cut by its budget is neither followed by a full
 * one (there is no time left) nor recorded as full (it did not read everything).
 */
export async function scanWithPolicy(
  policy: RescanPolicy,
  now: number,
  ptyAllocated: number,
  pass: (mode: ScanMode) => ModalScan | Promise<ModalScan>,
): Promise<ModalScan> {
  if (!policy.dueFull(now)) {
    const result = await pass("incremental");
    if (result.cut || !policy.disagrees(distinctPtys(result), ptyAllocated)) return result;
  }
  const result = await pass("full");
  if (!result.cut) policy.recordFull(now, distinctPtys(result), ptyAllocated);
  return result;
}
