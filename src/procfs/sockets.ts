// Unix socket connections: the sockets a process holds (/proc/PID/fd) and what each is connected to (sock_diag).
import { existsSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { isVanished } from "../errors.js";
import { missingFileReason, NATIVE_OUTPUTS, shippedPath } from "../shipped.js";
import { readFdLinksBounded, type FdReadBudget, type FdReadCut } from "./fd-budget.js";
import { formatDev } from "./parse.js";
import type { ProcFs } from "./procfs.js";

/** A socket file on disk as sock_diag names it: device "major:minor" and the low 32 bits of the inode. */
export interface SocketFileId {
  dev: string;
  ino: number;
}

/** One connected unix stream socket (or a listener: peer 0): its peer, and the socket file it was bound or accepted on (null: none). */
export interface UnixPeer {
  peer: number;
  file: SocketFileId | null;
}

/** Socket inode → its connection, for every connected unix stream socket and bound listener of one network namespace. */
export type UnixPeerTable = ReadonlyMap<number, UnixPeer>;

/** "socket:[12345]" (a /proc/PID/fd link) → 12345; anything else → null. */
export function parseSocketLink(target: string): number | null {
  const m = /^socket:\[(\d+)\]$/.exec(target);
  return m ? Number(m[1]) : null;
}

/** The kernel's internal dev_t (what sock_diag reports): major in the top 12 bits, minor in the low 20. */
export function formatKernelDev(dev: number): string {
  return `${dev >>> 20}:${dev & 0xfffff}`;
}

const ROW = 4;

/** The addon's flat answer: inode, peer inode, kernel dev_t of the socket file (0: none), its inode; per socket. */
export function parseUnixStreamPeers(rows: Uint32Array): Map<number, UnixPeer> {
  const table = new Map<number, UnixPeer>();
  for (let at = 0; at + ROW <= rows.length; at += ROW) {
    const ino = rows[at] ?? 0;
    const peer = rows[at + 1] ?? 0;
    const dev = rows[at + 2] ?? 0;
    const fileIno = rows[at + 3] ?? 0;
    const file = dev === 0 && fileIno === 0 ? null : { dev: formatKernelDev(dev), ino: fileIno };
    if (ino === 0 || (peer === 0 && file === null)) continue;
    table.set(ino, { peer, file });
  }
  return table;
}

/** The socket file at `path` as sock_diag would name it; throws ENOENT and friends like statSync. */
export function socketFileId(path: string): SocketFileId {
  const st = statSync(path);
  return { dev: formatDev(st.dev), ino: st.ino % 2 ** 32 };
}

/**
 * Inodes of the sockets `pid` holds, from its /proc/PID/fd links, within `budget` (else why not: the
 * cut is reported to the budget); [] when it has exited. A link closed between listing and reading is
 * skipped. Other errors (EACCES) reach the caller.
 */
export function socketInodes(procfs: ProcFs, pid: number, budget: FdReadBudget): number[] | FdReadCut {
  let links;
  try {
    links = readFdLinksBounded(procfs, pid, budget, (link) => link.startsWith("socket:["));
  } catch (err) {
    if (isVanished(err)) return [];
    throw err;
  }
  if (typeof links === "string") return links;
  const inodes: number[] = [];
  for (const { link } of links) {
    const ino = parseSocketLink(link);
    if (ino !== null) inodes.push(ino);
  }
  return inodes;
}

function isFile(p: UnixPeer, file: SocketFileId): boolean {
  return p.file !== null && p.file.dev === file.dev && p.file.ino === file.ino;
}

/** Inodes of a server's ends of socket file `file` in one table: its listener and the connections accepted on it. */
export function serverEndsOf(table: UnixPeerTable, file: SocketFileId): Set<number> {
  const ends = new Set<number>();
  for (const [ino, p] of table) if (isFile(p, file)) ends.add(ino);
  return ends;
}

/**
 * Whether the table lists the listener bound to `file`. An accepted socket lives in its client's network
 * namespace (our own connection to a server shows up anywhere), the listener in its server's: only the
 * listener proves that the server's clients are visible from here.
 */
export function listensOn(table: UnixPeerTable, file: SocketFileId): boolean {
  for (const p of table.values()) if (p.peer === 0 && isFile(p, file)) return true;
  return false;
}

/** Reads the connected unix stream sockets of the caller's network namespace; throws when the kernel refuses. */
export interface UnixPeersReader {
  read(): UnixPeerTable;
}

interface SockDiagAddon {
  unixStreamPeers(): Uint32Array;
}

/**
 * The sock_diag reader (native/sockdiag.c), or why there is none: not built (no C toolchain at
 * install). Node has no netlink sockets, and /proc/net/unix never names a socket's peer.
 */
export function loadUnixPeersReader(
  addonPath: string = shippedPath(NATIVE_OUTPUTS.sockdiag),
): { reader: UnixPeersReader; reason: null } | { reader: null; reason: string } {
  if (!existsSync(addonPath)) return { reader: null, reason: missingFileReason(addonPath) };
  try {
    const addon = createRequire(import.meta.url)(addonPath) as Partial<SockDiagAddon>;
    const dump = addon.unixStreamPeers;
    if (typeof dump !== "function") return { reader: null, reason: `${addonPath} has no unixStreamPeers` };
    return { reader: { read: () => parseUnixStreamPeers(dump()) }, reason: null };
  } catch (err) {
    return { reader: null, reason: `${addonPath}: ${(err as Error).message}` };
  }
}
