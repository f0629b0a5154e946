// Pure parsers of /proc text: no I/O, each tested with tables.

/** One number per file, as in /proc/sys/kernel/pty/{nr,max,reserve}. */
export function parseSysctlInt(text: string): number | null {
  const trimmed = text.trim();
  if (!/^\d+$/.test(trimmed)) return null;
  return Number(trimmed);
}

export interface StatFields {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  pgrp: number;
  sid: number;
  ttyNr: number;
  startTicks: number;
}

/**
 * /proc/PID/stat. comm may hold spaces and parentheses, so it runs from the first "(" to the
 * last ")"; fields after it are counted from there (field 3 is the first after comm).
 */
export function parseStat(text: string): StatFields | null {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 1 || close < open) return null;
  const pid = Number(text.slice(0, open).trim());
  if (!Number.isInteger(pid)) return null;
  // Fields after comm are single-space separated; field 3 (state) is token 0, field N token N - 3.
  // Read in place, neither split nor sliced: the scanner parses one of these per process per pass, and the
  // daemon runs without V8's optimizing compiler, which would otherwise remove the garbage.
  let start = close + 2;
  let stop = text.length;
  while (start < stop && text.charCodeAt(start) <= 32) start++;
  while (stop > start && text.charCodeAt(stop - 1) <= 32) stop--;
  const fields: StatFields = { pid, comm: text.slice(open + 1, close), state: "", ppid: 0, pgrp: 0, sid: 0, ttyNr: 0, startTicks: 0 };
  for (let token = 0; token < 20; token++) {
    let end = text.indexOf(" ", start);
    if (end < 0 || end > stop) {
      if (token < 19) return null; // fewer than 20 fields after comm: truncated
      end = stop;
    }
    if (token === 0) fields.state = text.slice(start, end);
    else if (token <= 4 || token === 19) {
      const value = integerAt(text, start, end);
      if (Number.isNaN(value)) return null;
      if (token === 1) fields.ppid = value;
      else if (token === 2) fields.pgrp = value;
      else if (token === 3) fields.sid = value;
      else if (token === 4) fields.ttyNr = value;
      else fields.startTicks = value;
    }
    start = end + 1;
  }
  return fields;
}

/** The decimal integer text[start..end) spells (an optional "-", then digits), else NaN. */
function integerAt(text: string, start: number, end: number): number {
  const negative = text.charCodeAt(start) === 45;
  let at = negative ? start + 1 : start;
  if (at >= end) return NaN;
  let value = 0;
  for (; at < end; at++) {
    const digit = text.charCodeAt(at) - 48;
    if (digit < 0 || digit > 9) return NaN;
    value = value * 10 + digit;
  }
  return negative ? -value : value;
}

export interface StatusFields {
  uid: number;
  /** NSpid, outermost namespace first; [pid] on kernels before 4.1, which lack the line. */
  nsPids: number[];
}

/** /proc/PID/status: the real uid and NSpid. */
export function parseStatus(text: string): StatusFields | null {
  let uid: number | null = null;
  let nsPids: number[] = [];
  let pid: number | null = null;
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const key = line.slice(0, colon);
    const values = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/);
    if (key === "Uid") uid = Number(values[0]);
    else if (key === "NSpid") nsPids = values.map(Number);
    else if (key === "Pid") pid = Number(values[0]);
  }
  if (uid === null || !Number.isInteger(uid)) return null;
  if (nsPids.length === 0 && pid !== null) nsPids = [pid];
  if (!nsPids.every(Number.isInteger)) return null;
  return { uid, nsPids };
}

/** The `tty-index:` line of /proc/PID/fdinfo/FD for a pty master (absent before Linux 4.19). */
export function parseFdinfoTtyIndex(text: string): number | null {
  const match = /^tty-index:\s*(\d+)\s*$/m.exec(text);
  return match ? Number(match[1]) : null;
}

export interface MountinfoEntry {
  /** "major:minor" of the mounted filesystem. */
  dev: string;
  mountPoint: string;
  fsType: string;
}

/** /proc/PID/mountinfo; mount points are octal-escaped (\040 for a space). */
export function parseMountinfo(text: string): MountinfoEntry[] {
  const entries: MountinfoEntry[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    const sep = fields.indexOf("-");
    if (sep < 6 || fields.length < sep + 2) continue;
    const dev = fields[2] ?? "";
    if (!/^\d+:\d+$/.test(dev)) continue;
    entries.push({
      dev,
      mountPoint: unescapeOctal(fields[4] ?? ""),
      fsType: fields[sep + 1] ?? "",
    });
  }
  return entries;
}

function unescapeOctal(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * The devpts instance mounted at `mountPoint`: the last matching entry, since a later mount on
 * the same point hides the earlier ones (the kernel follows the mount stack the same way).
 */
export function devptsAt(entries: MountinfoEntry[], mountPoint: string): string | null {
  let found: string | null = null;
  for (const entry of entries) {
    if (entry.mountPoint === mountPoint && entry.fsType === "devpts") found = entry.dev;
    else if (entry.mountPoint === mountPoint) found = null;
  }
  return found;
}

/** Whether `dev` is a devpts filesystem in this mount table. */
export function isDevptsDev(entries: MountinfoEntry[], dev: string): boolean {
  return entries.some((entry) => entry.dev === dev && entry.fsType === "devpts");
}

/** The `btime` line of /proc/stat: boot time in seconds since the epoch. */
export function parseBootTime(text: string): number | null {
  const match = /^btime\s+(\d+)\s*$/m.exec(text);
  return match ? Number(match[1]) : null;
}

/** How far the pid allocator has gone, read together: the last pid given out here, forks since boot, and pid_max. */
export interface PidMarks {
  /** /proc/loadavg's last field: the last pid allocated in the reader's pid namespace. */
  lastPid: number;
  /** /proc/stat `processes`: tasks forked since boot, on the whole host. */
  forks: number;
  pidMax: number;
}

/** The marks from the texts of /proc/stat, /proc/loadavg and /proc/sys/kernel/pid_max; null when one is not as the kernel writes it. */
export function parsePidMarks(stat: string, loadavg: string, pidMax: string): PidMarks | null {
  const forks = /^processes (\d+)$/m.exec(stat)?.[1];
  const lastPid = /^\S+ \S+ \S+ \d+\/\d+ (\d+)\s*$/.exec(loadavg)?.[1];
  const max = /^(\d+)\s*$/.exec(pidMax)?.[1];
  if (forks === undefined || lastPid === undefined || max === undefined) return null;
  return { lastPid: Number(lastPid), forks: Number(forks), pidMax: Number(max) };
}

/** A namespace link such as `pid:[4026531836]` → "4026531836". */
export function parseNsLink(text: string): string | null {
  const match = /^[a-z_]+:\[(\d+)\]$/.exec(text.trim());
  return match?.[1] ?? null;
}

/** /proc/PID/cmdline: NUL-separated arguments. */
export function parseCmdline(text: string): string[] {
  const args = text.split("\0");
  if (args.at(-1) === "") args.pop();
  return args;
}

/** Linux's user-space dev_t encoding (new_encode_dev), as in st_dev and st_rdev. */
export function decodeDev(dev: number): { major: number; minor: number } {
  return { major: devMajor(dev), minor: devMinor(dev) };
}

function devMajor(dev: number): number {
  return Math.floor(dev / 256) & 0xfff;
}

function devMinor(dev: number): number {
  return (dev & 0xff) | (Math.floor(dev / 4096) & 0xfff00);
}

/** "major:minor" of each device number met: a host has a few devpts instances, and a steady pass formats each held slave's. */
const formattedDevs = new Map<number, string>();
const FORMATTED_DEVS_KEPT = 4096;

export function formatDev(dev: number): string {
  let text = formattedDevs.get(dev);
  if (text === undefined) {
    text = `${devMajor(dev)}:${devMinor(dev)}`;
    if (formattedDevs.size >= FORMATTED_DEVS_KEPT) formattedDevs.clear(); // bounded, whatever the devices
    formattedDevs.set(dev, text);
  }
  return text;
}

const PTY_SLAVE_MAJOR_FIRST = 136;
const PTY_SLAVE_MAJOR_LAST = 143;
const PTMX_MAJOR = 5;
const PTMX_MINOR = 2;

export type PtyDeviceKind = { role: "slave"; index: number } | { role: "master" } | null;

/** What a character device number says about a pty end: a slave /dev/pts/N or the ptmx multiplexer. */
export function classifyRdev(rdev: number): PtyDeviceKind {
  if (devMajor(rdev) === PTMX_MAJOR && devMinor(rdev) === PTMX_MINOR) return { role: "master" };
  const index = slaveIndexOf(rdev);
  return index === null ? null : { role: "slave", index };
}

/** The index of the pty slave a character device number names, or null when it names none (no object made: see confirm in scan.ts). */
export function slaveIndexOf(rdev: number): number | null {
  const major = devMajor(rdev);
  return major >= PTY_SLAVE_MAJOR_FIRST && major <= PTY_SLAVE_MAJOR_LAST ? (major - PTY_SLAVE_MAJOR_FIRST) * 256 + devMinor(rdev) : null;
}

/** What a pty's link text contains: pty slaves, ptmx, and /dev/console (a bind of a pts). native/ptyscan.c is given this list. */
export const PTY_LINK_NEEDLES: readonly string[] = Object.freeze(["pts", "ptmx", "console"]);

/** Cheap text filter on readlink output before paying for a stat: absolute, and one of PTY_LINK_NEEDLES. */
export function mayBePty(linkTarget: string): boolean {
  return linkTarget.startsWith("/") && PTY_LINK_NEEDLES.some((needle) => linkTarget.includes(needle));
}
