// Table tests for every pure /proc parser in src/procfs/parse.ts, with text as the kernel writes it.
import { describe, expect, it } from "vitest";
import {
  classifyRdev,
  decodeDev,
  devptsAt,
  formatDev,
  isDevptsDev,
  mayBePty,
  parseBootTime,
  parseCmdline,
  parseFdinfoTtyIndex,
  parseMountinfo,
  parseNsLink,
  parseStat,
  parseStatus,
  parseSysctlInt,
  type MountinfoEntry,
} from "../../../src/procfs/parse.js";

/** new_encode_dev(), as the kernel reports st_dev / st_rdev to user space. */
function encodeDev(major: number, minor: number): number {
  return (minor & 0xff) + major * 256 + (minor - (minor & 0xff)) * 4096;
}

describe("parseSysctlInt", () => {
  it.each([
    ["4096\n", 4096],
    ["0\n", 0],
    [" 1024 \n", 1024],
    ["", null],
    ["\n", null],
    ["abc\n", null],
    ["-1\n", null],
    ["1.5\n", null],
    ["12 13\n", null],
  ])("%j → %j", (text, expected) => {
    expect(parseSysctlInt(text)).toBe(expected);
  });
});

describe("parseStat", () => {
  // Fields after comm, from field 3 (state) to field 24, as in a real line: starttime (22) is 63462.
  const tail = (state: string, ppid: number, pgrp: number, sid: number, ttyNr: number, start: number): string =>
    `${state} ${ppid} ${pgrp} ${sid} ${ttyNr} -1 4194304 103 0 0 0 0 0 0 0 20 0 1 0 ${start} 3133440 382 18446744073709551615 0 0\n`;

  it.each([
    {
      what: "a plain line",
      text: `16116 (cat) ${tail("R", 16112, 16112, 5361, 0, 63462)}`,
      expected: { pid: 16116, comm: "cat", state: "R", ppid: 16112, pgrp: 16112, sid: 5361, ttyNr: 0, startTicks: 63462 },
    },
    {
      what: "a shell on /dev/pts/3 (tty_nr 136:3)",
      text: `4321 (sh) ${tail("S", 4300, 4321, 4321, 34819, 99)}`,
      expected: { pid: 4321, comm: "sh", state: "S", ppid: 4300, pgrp: 4321, sid: 4321, ttyNr: 34819, startTicks: 99 },
    },
    {
      what: "comm with spaces",
      text: `77 (tmux: server) ${tail("S", 1, 77, 77, 0, 5)}`,
      expected: { pid: 77, comm: "tmux: server", state: "S", ppid: 1, pgrp: 77, sid: 77, ttyNr: 0, startTicks: 5 },
    },
    {
      what: "comm with parentheses and a fake field list inside",
      text: `78 (a) S 1 2 3 (b) ${tail("D", 9, 78, 78, 0, 6)}`,
      expected: { pid: 78, comm: "a) S 1 2 3 (b", state: "D", ppid: 9, pgrp: 78, sid: 78, ttyNr: 0, startTicks: 6 },
    },
    {
      what: "comm that is only parentheses",
      text: `79 ()) ${tail("S", 1, 79, 79, 0, 7)}`,
      expected: { pid: 79, comm: ")", state: "S", ppid: 1, pgrp: 79, sid: 79, ttyNr: 0, startTicks: 7 },
    },
    {
      what: "an empty comm",
      text: `80 () ${tail("S", 1, 80, 80, 0, 8)}`,
      expected: { pid: 80, comm: "", state: "S", ppid: 1, pgrp: 80, sid: 80, ttyNr: 0, startTicks: 8 },
    },
    {
      what: "a kernel thread (ppid 2) without trailing newline",
      text: `25 (kdevtmpfs) ${tail("S", 2, 0, 0, 0, 3)}`.trimEnd(),
      expected: { pid: 25, comm: "kdevtmpfs", state: "S", ppid: 2, pgrp: 0, sid: 0, ttyNr: 0, startTicks: 3 },
    },
    {
      what: "a zombie",
      text: `81 (sh) ${tail("Z", 80, 80, 80, 0, 1234567890)}`,
      expected: { pid: 81, comm: "sh", state: "Z", ppid: 80, pgrp: 80, sid: 80, ttyNr: 0, startTicks: 1234567890 },
    },
  ])("parses $what", ({ text, expected }) => {
    expect(parseStat(text)).toEqual(expected);
  });

  it.each([
    ["a line truncated after field 10", "16116 (cat) R 16112 16112 5361 0 -1 4194304 103\n"],
    ["a line truncated right after comm", "16116 (cat)"],
    ["a line truncated inside comm", "16116 (ca"],
    ["no pid before comm", "(cat) R 1 1 1 0 -1 4194304 103 0 0 0 0 0 0 0 20 0 1 0 5 6 7\n"],
    ["a pid that is not a number", "x1 (cat) R 1 1 1 0 -1 4194304 103 0 0 0 0 0 0 0 20 0 1 0 5 6 7\n"],
    ["a starttime that is not a number", "5 (cat) R 1 1 1 0 -1 4194304 103 0 0 0 0 0 0 0 20 0 1 0 x 6 7\n"],
    ["a ppid that is not a number", "5 (cat) R p 1 1 0 -1 4194304 103 0 0 0 0 0 0 0 20 0 1 0 5 6 7\n"],
    ["an empty field (two spaces)", "5 (cat) R  1 1 0 -1 4194304 103 0 0 0 0 0 0 0 20 0 1 0 5 6 7\n"],
    ["a sid with a sign inside", "5 (cat) R 1 1 1-1 0 -1 4194304 103 0 0 0 0 0 0 0 20 0 1 0 5 6 7\n"],
    ["an empty file", ""],
    ["garbage", "hello world\n"],
  ])("rejects %s", (_what, text) => {
    expect(parseStat(text)).toBeNull();
  });
});

describe("parseStatus", () => {
  const status = (...lines: string[]): string =>
    ["Name:\tsh", "Umask:\t0022", "State:\tS (sleeping)", ...lines, "Gid:\t0\t0\t0\t0", "FDSize:\t64", "Groups:\t "].join("\n") + "\n";

  it.each([
    {
      what: "a host process (NSpid with one pid)",
      text: status(
        "Tgid:\t4321",
        "Pid:\t4321",
        "PPid:\t1",
        "Uid:\t1000\t1000\t1000\t1000",
        "NStgid:\t4321",
        "NSpid:\t4321",
        "NSpgid:\t4321",
        "NSsid:\t4321",
      ),
      expected: { uid: 1000, nsPids: [4321] },
    },
    {
      what: "a container's init (NSpid ends in 1)",
      text: status("Pid:\t2514", "Uid:\t0\t0\t0\t0", "NSpid:\t2514\t1"),
      expected: { uid: 0, nsPids: [2514, 1] },
    },
    {
      what: "a process three PID namespaces deep",
      text: status("Pid:\t900", "Uid:\t0\t0\t0\t0", "NSpid:\t900\t45\t7"),
      expected: { uid: 0, nsPids: [900, 45, 7] },
    },
    {
      what: "an old kernel without NSpid: the pid alone",
      text: status("Pid:\t77", "PPid:\t1", "Uid:\t33\t33\t33\t33"),
      expected: { uid: 33, nsPids: [77] },
    },
    {
      what: "the real uid, not the effective one",
      text: status("Pid:\t5", "Uid:\t1000\t0\t0\t0", "NSpid:\t5"),
      expected: { uid: 1000, nsPids: [5] },
    },
  ])("parses $what", ({ text, expected }) => {
    expect(parseStatus(text)).toEqual(expected);
  });

  it.each([
    ["no Uid line", status("Pid:\t5", "NSpid:\t5")],
    ["a Uid that is not a number", status("Pid:\t5", "Uid:\tx\t0\t0\t0", "NSpid:\t5")],
    ["an NSpid that is not a number", status("Pid:\t5", "Uid:\t0\t0\t0\t0", "NSpid:\t5\tx")],
    ["an empty file", ""],
  ])("rejects %s", (_what, text) => {
    expect(parseStatus(text)).toBeNull();
  });
});

describe("parseFdinfoTtyIndex", () => {
  it.each([
    ["a master on Linux ≥ 4.19", "pos:\t0\nflags:\t02100002\nmnt_id:\t24\nino:\t91\ntty-index:\t0\n", 0],
    ["an index above 255", "pos:\t0\nflags:\t02104002\nmnt_id:\t75\nino:\t2\ntty-index:\t300\n", 300],
    ["tty-index not on the last line", "pos:\t0\ntty-index:\t7\nflags:\t02\n", 7],
    ["a master on an old kernel (no tty-index)", "pos:\t0\nflags:\t02100002\nmnt_id:\t24\n", null],
    ["a slave's fdinfo", "pos:\t0\nflags:\t0100002\nmnt_id:\t29\nino:\t3\n", null],
    ["a malformed index", "pos:\t0\ntty-index:\tx\n", null],
    ["an empty file", "", null],
  ])("%s → %j", (_what, text, expected) => {
    expect(parseFdinfoTtyIndex(text)).toBe(expected);
  });
});

describe("parseMountinfo", () => {
  it.each<[string, string, MountinfoEntry[]]>([
    [
      "the host's stacked devpts mounts, as on a sandbox",
      [
        "24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334432k,mode=755",
        "26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000",
        "29 26 0:26 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000",
      ].join("\n") + "\n",
      [
        { dev: "0:6", mountPoint: "/dev", fsType: "devtmpfs" },
        { dev: "0:24", mountPoint: "/dev/pts", fsType: "devpts" },
        { dev: "0:26", mountPoint: "/dev/pts", fsType: "devpts" },
      ],
    ],
    [
      "optional fields before the separator",
      "42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 master:3 - ext4 /dev/vda rw\n",
      [{ dev: "254:0", mountPoint: "/var/lib/docker", fsType: "ext4" }],
    ],
    [
      "octal escapes for space, tab, newline and backslash",
      "50 27 0:40 / /mnt/a\\040b\\011c\\012d\\134e rw - tmpfs tmpfs rw\n",
      [{ dev: "0:40", mountPoint: "/mnt/a b\tc\nd\\e", fsType: "tmpfs" }],
    ],
    [
      "a container's view: its own devpts and a /dev/console bind",
      [
        "700 699 0:44 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666",
        "701 699 0:44 /0 /dev/console rw,nosuid,noexec,relatime - devpts devpts rw,gid=5,mode=620,ptmxmode=666",
      ].join("\n"),
      [
        { dev: "0:44", mountPoint: "/dev/pts", fsType: "devpts" },
        { dev: "0:44", mountPoint: "/dev/console", fsType: "devpts" },
      ],
    ],
    [
      "malformed and blank lines skipped",
      ["", "garbage", "1 2 3 4 5 6 - x", "60 27 notadev / /x rw - tmpfs tmpfs rw", "61 27 0:41 / /y rw - tmpfs tmpfs rw", ""].join("\n"),
      [{ dev: "0:41", mountPoint: "/y", fsType: "tmpfs" }],
    ],
    ["an empty file", "", []],
  ])("parses %s", (_what, text, expected) => {
    expect(parseMountinfo(text)).toEqual(expected);
  });
});

describe("devptsAt and isDevptsDev", () => {
  const devtmpfs: MountinfoEntry = { dev: "0:6", mountPoint: "/dev", fsType: "devtmpfs" };
  const first: MountinfoEntry = { dev: "0:24", mountPoint: "/dev/pts", fsType: "devpts" };
  const stacked: MountinfoEntry = { dev: "0:26", mountPoint: "/dev/pts", fsType: "devpts" };
  const hiding: MountinfoEntry = { dev: "0:30", mountPoint: "/dev/pts", fsType: "tmpfs" };
  const elsewhere: MountinfoEntry = { dev: "0:50", mountPoint: "/tmp/pts", fsType: "devpts" };

  it.each<[string, MountinfoEntry[], string, string | null]>([
    ["one devpts", [devtmpfs, first], "/dev/pts", "0:24"],
    ["stacked devpts: the top one", [devtmpfs, first, stacked], "/dev/pts", "0:26"],
    ["devpts hidden by a later tmpfs", [devtmpfs, first, hiding], "/dev/pts", null],
    ["devpts mounted again over the tmpfs", [devtmpfs, first, hiding, stacked], "/dev/pts", "0:26"],
    ["no devpts at that point", [devtmpfs, elsewhere], "/dev/pts", null],
    ["a devpts on another point", [devtmpfs, first, elsewhere], "/tmp/pts", "0:50"],
    ["an empty table", [], "/dev/pts", null],
  ])("devptsAt: %s", (_what, table, point, expected) => {
    expect(devptsAt(table, point)).toBe(expected);
  });

  it.each<[string, MountinfoEntry[], string, boolean]>([
    ["a lower stacked devpts is still devpts", [devtmpfs, first, stacked], "0:24", true],
    ["the top devpts", [devtmpfs, first, stacked], "0:26", true],
    ["devtmpfs is not", [devtmpfs, first], "0:6", false],
    ["an unknown dev", [devtmpfs, first], "0:99", false],
  ])("isDevptsDev: %s", (_what, table, dev, expected) => {
    expect(isDevptsDev(table, dev)).toBe(expected);
  });
});

describe("parseBootTime", () => {
  it.each([
    ["a /proc/stat", "cpu  1 2 3 4\ncpu0 1 2 3 4\nintr 0\nctxt 99\nbtime 1700000000\nprocesses 5\n", 1700000000],
    ["btime on the last line without newline", "cpu  1 2\nbtime 42", 42],
    ["no btime line", "cpu  1 2 3 4\nctxt 99\n", null],
    ["a malformed btime", "btime x\n", null],
  ])("%s → %j", (_what, text, expected) => {
    expect(parseBootTime(text)).toBe(expected);
  });
});

describe("parseNsLink", () => {
  it.each([
    ["pid:[4026531836]", "4026531836"],
    ["mnt:[4026531841]\n", "4026531841"],
    ["pid_for_children:[4026532251]", "4026532251"],
    ["pid:[]", null],
    ["/proc/1/ns/pid", null],
    ["", null],
  ])("%j → %j", (text, expected) => {
    expect(parseNsLink(text)).toBe(expected);
  });
});

describe("parseCmdline", () => {
  it.each([
    ["sleep\u00001000000\u0000", ["sleep", "1000000"]],
    ["sh\u0000", ["sh"]],
    ["a\u0000\u0000b\u0000", ["a", "", "b"]],
    ["nginx: worker process", ["nginx: worker process"]],
    ["", []],
  ])("%j → %j", (text, expected) => {
    expect(parseCmdline(text)).toEqual(expected);
  });
});

describe("decodeDev and formatDev", () => {
  it.each([
    ["devtmpfs", encodeDev(0, 6), 0, 6],
    ["a devpts instance", encodeDev(0, 26), 0, 26],
    ["the ext4 root", encodeDev(254, 0), 254, 0],
    ["/dev/ptmx", encodeDev(5, 2), 5, 2],
    ["/dev/pts/0", 34816, 136, 0],
    ["/dev/pts/255", encodeDev(136, 255), 136, 255],
    ["/dev/pts/256: minor above 255", encodeDev(136, 256), 136, 256],
    ["/dev/pts/300", 1083436, 136, 300],
    ["/dev/pts/4095", encodeDev(136, 4095), 136, 4095],
    ["the largest minor (20 bits)", encodeDev(0, 0xfffff), 0, 0xfffff],
    ["the largest major (12 bits)", encodeDev(0xfff, 1), 0xfff, 1],
    ["anonymous dev 0:300 (many mounts)", encodeDev(0, 300), 0, 300],
  ])("%s", (_what, dev, major, minor) => {
    expect(decodeDev(dev)).toEqual({ major, minor });
    expect(formatDev(dev)).toBe(`${major}:${minor}`);
  });
});

describe("classifyRdev", () => {
  it.each([
    ["ptmx (5:2) is a master", encodeDev(5, 2), { role: "master" }],
    ["/dev/pts/0", encodeDev(136, 0), { role: "slave", index: 0 }],
    ["/dev/pts/7", encodeDev(136, 7), { role: "slave", index: 7 }],
    ["/dev/pts/300: devpts keeps every index in major 136", encodeDev(136, 300), { role: "slave", index: 300 }],
    ["/dev/pts/1048575", encodeDev(136, 0xfffff), { role: "slave", index: 0xfffff }],
    ["/dev/tty (5:0)", encodeDev(5, 0), null],
    ["/dev/console (5:1)", encodeDev(5, 1), null],
    ["/dev/tty1 (4:1)", encodeDev(4, 1), null],
    ["/dev/null (1:3)", encodeDev(1, 3), null],
    ["a legacy BSD pty slave (3:0)", encodeDev(3, 0), null],
    ["a legacy BSD pty master (2:0)", encodeDev(2, 0), null],
    ["major 135", encodeDev(135, 0), null],
    ["major 144", encodeDev(144, 0), null],
  ])("%s", (_what, rdev, expected) => {
    expect(classifyRdev(rdev)).toEqual(expected);
  });
});

describe("mayBePty", () => {
  it.each([
    ["/dev/pts/3", true],
    ["/dev/pts/300", true],
    ["/dev/ptmx", true],
    ["/dev/pts/ptmx", true],
    ["/ptmx", true], // a master received from another mount namespace
    ["/dev/console", true],
    ["/dev/pts/3 (deleted)", true],
    ["/dev/tty", false],
    ["/dev/null", false],
    ["socket:[12345]", false],
    ["pipe:[6002]", false],
    ["anon_inode:[eventpoll]", false],
    ["pts", false],
    ["", false],
  ])("%j → %j", (link, expected) => {
    expect(mayBePty(link)).toBe(expected);
  });
});
