// Loading the optional native fd-link reader: every way it can be unavailable leaves the JS reads in use.
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { bpfFinder, capsAllowBpf, loadNativeFdLinks } from "../../../src/procfs/native.js";
import { ProcFs } from "../../../src/procfs/procfs.js";

const dir = mkdtempSync(join(tmpdir(), "ptyr-native-unit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("loadNativeFdLinks", () => {
  it("is off when PTYREAPER_NATIVE_SCAN=0, whether or not the addon is built", () => {
    expect(loadNativeFdLinks({ env: { PTYREAPER_NATIVE_SCAN: "0" } })).toEqual({ reader: null, reason: "PTYREAPER_NATIVE_SCAN=0" });
  });

  it("says the addon is not built when its file is absent", () => {
    const path = join(dir, "absent.node");
    expect(loadNativeFdLinks({ addonPath: path, env: {} })).toEqual({ reader: null, reason: `${path} is not built` });
  });

  it("says why when the file is not a loadable addon, instead of throwing", () => {
    const path = join(dir, "broken.node");
    writeFileSync(path, "not an ELF object");
    const load = loadNativeFdLinks({ addonPath: path, env: {} });
    expect(load.reader).toBeNull();
    expect(load.reason).toMatch(/^.*broken\.node: /);
  });

  it("says so when a loadable module lacks scanFdLinks", () => {
    const path = join(dir, "other.cjs");
    writeFileSync(path, "module.exports = { somethingElse() {} };");
    expect(loadNativeFdLinks({ addonPath: path, env: {} })).toEqual({ reader: null, reason: `${path} has no scanFdLinks` });
  });

  it("is not used by a ProcFs over a fixture tree, nor when the caller passes null", () => {
    expect(new ProcFs(dir).native).toBeNull();
    expect(new ProcFs("/proc", { native: null }).fdLinksMayBePty(1)).toBeNull();
    expect(new ProcFs("/proc", { native: null }).batchOf([1], 2, { links: true, fdCounts: true })).toBeNull();
  });
});

describe("the BPF finder's capability gate", () => {
  // Bits of CapEff: CAP_SYS_ADMIN 21, CAP_PERFMON 38, CAP_BPF 39; the shipped unit's set is KILL, SYS_PTRACE, DAC_READ_SEARCH.
  const bit = (n: number): bigint => 1n << BigInt(n);
  const hex = (bits: bigint): string => bits.toString(16).padStart(16, "0");
  const UNIT = bit(5) | bit(19) | bit(2);

  it("needs CAP_BPF with CAP_PERFMON, or CAP_SYS_ADMIN", () => {
    expect(capsAllowBpf(hex(UNIT))).toBe(false);
    expect(capsAllowBpf(hex(UNIT | bit(39)))).toBe(false);
    expect(capsAllowBpf(hex(UNIT | bit(38)))).toBe(false);
    expect(capsAllowBpf(hex(UNIT | bit(38) | bit(39)))).toBe(true);
    expect(capsAllowBpf(hex(UNIT | bit(21)))).toBe(true);
    expect(capsAllowBpf("000001ffffffffff")).toBe(true); // root's full set on Linux 6.x
    expect(capsAllowBpf("")).toBe(false);
    expect(capsAllowBpf("not hex")).toBe(false);
  });

  it("says why it is not used: switched off, or the capabilities missing, before anything else", () => {
    expect(bpfFinder("/proc", { env: { PTYREAPER_BPF_FINDER: "0" }, capEff: "000001ffffffffff" })).toEqual({
      path: null,
      reason: "PTYREAPER_BPF_FINDER=0",
    });
    expect(bpfFinder("/proc", { env: {}, capEff: hex(UNIT) })).toEqual({
      path: null,
      reason: "no CAP_BPF and CAP_PERFMON (see systemd/bpf-finder.conf)",
    });
    const missing = bpfFinder("/proc", { env: {}, capEff: hex(UNIT | bit(38) | bit(39)), addonPath: "/nonexistent/build/Release/ptyscan.node" });
    expect(missing).toEqual({ path: null, reason: "/nonexistent/build/Release/ptyfds.bpf.o is not built" });
  });
});

describe("statFds, the native stat of the files fds name", () => {
  const load = loadNativeFdLinks({ env: {} });

  it("gives what Node's stat of /proc/PID/fd/FD gives, and ENOENT for a process that is gone", () => {
    // A missing addon fails here loudly: the test command builds it (npm ci runs node-gyp).
    expect(load.reader, load.reason ?? "").not.toBeNull();
    const procfs = new ProcFs("/proc");
    const path = join(dir, "held");
    writeFileSync(path, "x");
    const fd = openSync(path, "r");
    // A character device, as a pty slave is; nothing here writes either file, so their times hold still.
    const nul = openSync("/dev/null", "r");
    try {
      const gone = 0x3fffff; // above any pid_max: never a process
      const stats = procfs.statFds(Int32Array.of(process.pid, process.pid, gone), Int32Array.of(fd, nul, 0));
      expect(stats).not.toBeNull();
      const [held, device, missing] = stats ?? [];
      for (const [stat, which] of [
        [held, fd],
        [device, nul],
      ] as const) {
        const node = procfs.fdStat(process.pid, String(which));
        expect(stat).toMatchObject({ dev: node.dev, ino: node.ino, rdev: node.rdev, atimeMs: node.atimeMs, mtimeMs: node.mtimeMs });
        expect((stat as { isCharacterDevice(): boolean }).isCharacterDevice()).toBe(node.isCharacterDevice());
      }
      expect((device as { isCharacterDevice(): boolean }).isCharacterDevice()).toBe(true);
      expect(missing).toBeInstanceOf(Error);
      expect((missing as NodeJS.ErrnoException).code).toBe("ENOENT");
    } finally {
      closeSync(fd);
      closeSync(nul);
    }
  });
});
