// What the kernel counts against what a scan finds: the proof, in tests, that a pty is leaked or freed.
import { statSync } from "node:fs";
import { ptyKey } from "../../../src/domain/types.js";
import { classifyRdev, formatDev } from "../../../src/procfs/parse.js";
import { ProcFs } from "../../../src/procfs/procfs.js";
import { scanProc } from "../../../src/procfs/scan.js";
import { ptyNr, waitFor } from "./util.js";

/** The pty key ("devpts:index") of the slave a process has on `fd`; throws when that fd is no pty slave. */
export function slaveKey(pid: number, fd = 0): string {
  const st = statSync(`/proc/${pid}/fd/${fd}`);
  const kind = classifyRdev(st.rdev);
  if (kind?.role !== "slave") throw new Error(`pid ${pid} fd ${fd} is not a pty slave`);
  return ptyKey(formatDev(st.dev), kind.index);
}

/** The ptys some process holds an end of, by key ("devpts:index"): a pty no process holds is freed. */
export function heldPtys(procfs = new ProcFs("/proc")): Set<string> {
  return new Set(scanProc(procfs).ptyFds.map((fd) => ptyKey(fd.devptsDev, fd.index)));
}

/**
 * pty.nr together with the ptys a scan finds, from a scan during which pty.nr did not move and whose
 * distinct ptys equal it. pty.nr is global, so tests check what their own pty contributes to it, not a
 * delta that other work on the host could disturb.
 */
export async function accountedPtys(procfs = new ProcFs("/proc")): Promise<{ nr: number; keys: Set<string> }> {
  return waitFor(
    () => {
      const before = ptyNr();
      const keys = heldPtys(procfs);
      return before === ptyNr() && keys.size === before ? { nr: before, keys } : null;
    },
    15_000,
    "a scan whose distinct ptys equal pty.nr",
    200,
  );
}
