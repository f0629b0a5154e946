// What must be equal between an incremental scan and a full one, in a form tests and the bench can compare.
import { isDeepStrictEqual } from "node:util";
import { ptyKey, type ProcScan } from "../src/domain/types.js";

const byNumber = <T>(entries: Iterable<[number, T]>): [number, T][] => [...entries].sort(([a], [b]) => a - b);

/** A scan without its order and its race counter (`vanished`), which no two passes share. */
export function scanDigest(scan: ProcScan): Record<string, unknown> {
  return {
    processes: byNumber(scan.processes),
    ppids: byNumber(scan.ppids),
    ptyFds: scan.ptyFds.map((fd) => `${fd.pid}/${fd.fd} ${fd.role} ${ptyKey(fd.devptsDev, fd.index)}`).sort(),
    ttyTimes: [...scan.ttyTimes].sort(([a], [b]) => a.localeCompare(b)),
    initDevpts: byNumber(scan.initDevpts),
    unreadablePids: [...scan.unreadablePids].sort((a, b) => a - b),
    parseErrors: Object.entries(scan.parseErrors).sort(([a], [b]) => a.localeCompare(b)),
    bootTimeSec: scan.bootTimeSec,
  };
}

/** The parts of two digests that differ, by name: empty when the scans agree. */
export function scanDifferences(a: ProcScan, b: ProcScan): string[] {
  const left = scanDigest(a);
  const right = scanDigest(b);
  return Object.keys(left).filter((key) => !isDeepStrictEqual(left[key], right[key]));
}
