// Signallers over a fake pidfd addon: the pidfd is open while the check runs, always closed, and a pinned
// process that exited is "gone"; loading reports why pidfds are unavailable.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { KillSignaller, PidfdSignaller, loadPidfdAddon, type PidfdAddon } from "../../../src/reaper/signaller.js";

const ESRCH = constants.errno.ESRCH;

function fakeAddon(opts: { open?: number; probe?: number; send?: number } = {}): PidfdAddon & { calls: string[]; openFds: Set<number> } {
  const calls: string[] = [];
  const openFds = new Set<number>();
  return {
    calls,
    openFds,
    open(pid) {
      calls.push(`open ${pid}`);
      const fd = opts.open ?? 42;
      if (fd >= 0) openFds.add(fd);
      return fd;
    },
    sendSignal(fd, signal) {
      calls.push(`send ${fd} ${signal}`);
      return signal === 0 ? (opts.probe ?? 0) : (opts.send ?? 0);
    },
    close(fd) {
      calls.push(`close ${fd}`);
      openFds.delete(fd);
      return 0;
    },
  };
}

describe("PidfdSignaller", () => {
  it("opens the pidfd before the check, probes, sends through it and closes it", () => {
    const addon = fakeAddon();
    const outcome = new PidfdSignaller(addon).send(7, "SIGHUP", () => {
      addon.calls.push("check");
      return null;
    });
    expect(outcome).toEqual({ sent: true });
    expect(addon.calls).toEqual(["open 7", "check", "send 42 0", `send 42 ${constants.signals.SIGHUP}`, "close 42"]);
  });

  it.each([
    ["the pid is gone before the open", { open: -ESRCH }, { sent: false, gone: true, refusal: null }],
    ["the pinned process exited during the check", { probe: -ESRCH }, { sent: false, gone: true, refusal: null }],
    ["it exits between probe and signal", { send: -ESRCH }, { sent: false, gone: true, refusal: null }],
  ])("reports gone when %s", (_name, opts, expected) => {
    const addon = fakeAddon(opts);
    expect(new PidfdSignaller(addon).send(7, "SIGTERM", () => null)).toEqual(expected);
    expect(addon.openFds.size).toBe(0);
  });

  it("sends nothing on a refusal and on a check that finds the process gone; the fd is closed either way", () => {
    const addon = fakeAddon();
    const signaller = new PidfdSignaller(addon);
    expect(signaller.send(7, "SIGKILL", () => "container_main")).toEqual({ sent: false, gone: false, refusal: "container_main" });
    const vanished = (): string | null => {
      throw Object.assign(new Error("gone"), { code: "ENOENT" });
    };
    expect(signaller.send(7, "SIGKILL", vanished)).toEqual({ sent: false, gone: true, refusal: null });
    expect(addon.calls.filter((c) => c.startsWith("send"))).toEqual([]);
    expect(addon.openFds.size).toBe(0);
  });
});

describe("KillSignaller", () => {
  it("checks, then kills; ESRCH means gone", () => {
    const sent: [number, string][] = [];
    const signaller = new KillSignaller((pid, signal) => {
      if (pid === 9) throw Object.assign(new Error("no such process"), { code: "ESRCH" });
      sent.push([pid, signal]);
    });
    expect(signaller.send(7, "SIGHUP", () => null)).toEqual({ sent: true });
    expect(signaller.send(8, "SIGHUP", () => "runtime")).toEqual({ sent: false, gone: false, refusal: "runtime" });
    expect(signaller.send(9, "SIGHUP", () => null)).toEqual({ sent: false, gone: true, refusal: null });
    expect(sent).toEqual([[7, "SIGHUP"]]);
  });
});

describe("loadPidfdAddon", () => {
  it("says why there is no addon", () => {
    expect(loadPidfdAddon({ env: { PTYREAPER_PIDFD: "0" } })).toEqual({ addon: null, reason: "PTYREAPER_PIDFD=0", fallback: "disabled" });
    expect(loadPidfdAddon({ env: {}, addonPath: "/nonexistent/pidfd.node" })).toEqual({
      addon: null,
      reason: "/nonexistent/pidfd.node is not built",
      fallback: "no_addon",
    });
  });

  // Stand-in addons (plain CommonJS, loaded the same way), in one directory removed afterwards.
  const dir = mkdtempSync(join(tmpdir(), "ptyreaper-pidfd-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const stubAddon = (name: string, source: string): string => {
    const path = join(dir, `${name}.cjs`);
    writeFileSync(path, source);
    return path;
  };

  // open() answers as the kernel would.
  it.each([
    [-constants.errno.ENOSYS, "no_kernel_support", "the kernel has no pidfd_open (Linux < 5.3)"],
    [-constants.errno.EPERM, "open_failed", `pidfd_open on ourselves failed: errno ${constants.errno.EPERM}`],
  ])("open() = %i on itself: fallback %s", (open, fallback, reason) => {
    const path = stubAddon(fallback, `module.exports = { open: () => ${open}, sendSignal: () => 0, close: () => 0 };\n`);
    expect(loadPidfdAddon({ env: {}, addonPath: path })).toEqual({ addon: null, reason, fallback });
  });

  it("an addon without its functions is no addon", () => {
    const path = stubAddon("empty", "module.exports = {};\n");
    expect(loadPidfdAddon({ env: {}, addonPath: path })).toMatchObject({ addon: null, fallback: "no_addon" });
  });
});
