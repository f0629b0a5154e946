// How the reaper delivers a signal: through a pidfd (native/pidfd.c) when it can, else kill(2) after a start-time check.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { constants } from "node:os";
import { isVanished } from "../errors.js";
import { missingFileReason, NATIVE_OUTPUTS, shippedPath } from "../shipped.js";

export type SignalMethod = "pidfd" | "kill";

/** Why signals fall back to kill(2): a fixed set, so it can be a metric label (the log line has the detail). */
export const PIDFD_FALLBACK_REASONS = ["disabled", "no_addon", "no_kernel_support", "open_failed"] as const;
export type PidfdFallbackReason = (typeof PIDFD_FALLBACK_REASONS)[number];

/** Why a signal was not sent: the check said no, or the process was already gone. */
export type SendOutcome = { sent: true } | { sent: false; gone: boolean; refusal: string | null };

/**
 * Sends `signal` to `pid` only if `check()` (run while the process is pinned, when the method can pin
 * it) returns null; a returned string is the refusal reason. "gone" means the process exited first
 * (check() may say so by throwing ENOENT or ESRCH).
 */
export interface Signaller {
  readonly method: SignalMethod;
  send(pid: number, signal: NodeJS.Signals, check: () => string | null): SendOutcome;
}

/** The addon's exports: negative errno values, never throws for a syscall failure. */
export interface PidfdAddon {
  open(pid: number): number;
  sendSignal(fd: number, signal: number): number;
  close(fd: number): number;
}

const ESRCH = constants.errno.ESRCH;
const ENOSYS = constants.errno.ENOSYS;

function signalNumber(signal: NodeJS.Signals): number {
  const number = constants.signals[signal];
  if (number === undefined) throw new Error(`unknown signal ${signal}`);
  return number;
}

/**
 * The pidfd is opened before the check, so the check reads the very process the signal then goes to:
 * a pid reused after the open gets a new process the pidfd does not refer to (ESRCH instead).
 */
export class PidfdSignaller implements Signaller {
  readonly method = "pidfd" as const;
  constructor(private readonly addon: PidfdAddon) {}

  send(pid: number, signal: NodeJS.Signals, check: () => string | null): SendOutcome {
    const fd = this.addon.open(pid);
    if (fd === -ESRCH) return { sent: false, gone: true, refusal: null };
    if (fd < 0) throw Object.assign(new Error(`pidfd_open(${pid}) failed: errno ${-fd}`), { errno: -fd });
    try {
      const refusal = runCheck(check);
      if (refusal !== null) return refusal;
      // Signal 0: the pinned process still exists (a check that read a new process under an old pid cannot pass this).
      if (this.addon.sendSignal(fd, 0) === -ESRCH) return { sent: false, gone: true, refusal: null };
      const rc = this.addon.sendSignal(fd, signalNumber(signal));
      if (rc === -ESRCH) return { sent: false, gone: true, refusal: null };
      if (rc < 0) throw Object.assign(new Error(`pidfd_send_signal(${pid}, ${signal}) failed: errno ${-rc}`), { errno: -rc });
      return { sent: true };
    } finally {
      this.addon.close(fd);
    }
  }
}

/** Without pidfds: the check, then kill(2); a pid reused in between is the window pidfds close. */
export class KillSignaller implements Signaller {
  readonly method = "kill" as const;
  constructor(private readonly kill: (pid: number, signal: NodeJS.Signals) => void) {}

  send(pid: number, signal: NodeJS.Signals, check: () => string | null): SendOutcome {
    const refusal = runCheck(check);
    if (refusal !== null) return refusal;
    try {
      this.kill(pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ESRCH") return { sent: false, gone: true, refusal: null };
      throw err;
    }
    return { sent: true };
  }
}

/** The check's verdict as an outcome; null when it allows the signal. */
function runCheck(check: () => string | null): SendOutcome | null {
  try {
    const refusal = check();
    return refusal === null ? null : { sent: false, gone: false, refusal };
  } catch (err) {
    if (isVanished(err)) return { sent: false, gone: true, refusal: null };
    throw err;
  }
}

export interface PidfdLoad {
  addon: PidfdAddon | null;
  /** Why there is no addon (not built, kernel without pidfds, switched off); null when loaded. */
  reason: string | null;
  /** The same, as one of PIDFD_FALLBACK_REASONS; null when loaded. */
  fallback: PidfdFallbackReason | null;
}

export function defaultPidfdAddonPath(): string {
  return shippedPath(NATIVE_OUTPUTS.pidfd);
}

/** Loads the addon and proves the kernel has pidfds by opening one on `selfPid`. */
export function loadPidfdAddon(options: { addonPath?: string; env?: NodeJS.ProcessEnv; selfPid?: number } = {}): PidfdLoad {
  const env = options.env ?? process.env;
  if (env.PTYREAPER_PIDFD === "0") return { addon: null, reason: "PTYREAPER_PIDFD=0", fallback: "disabled" };
  const path = options.addonPath ?? defaultPidfdAddonPath();
  if (!existsSync(path)) return { addon: null, reason: missingFileReason(path), fallback: "no_addon" };
  let addon: Partial<PidfdAddon>;
  try {
    addon = createRequire(import.meta.url)(path) as Partial<PidfdAddon>;
  } catch (err) {
    return { addon: null, reason: `${path}: ${(err as Error).message}`, fallback: "no_addon" };
  }
  if (typeof addon.open !== "function" || typeof addon.sendSignal !== "function" || typeof addon.close !== "function") {
    return { addon: null, reason: `${path} lacks open/sendSignal/close`, fallback: "no_addon" };
  }
  const fd = addon.open(options.selfPid ?? process.pid);
  if (fd === -ENOSYS) return { addon: null, reason: "the kernel has no pidfd_open (Linux < 5.3)", fallback: "no_kernel_support" };
  if (fd < 0) return { addon: null, reason: `pidfd_open on ourselves failed: errno ${-fd}`, fallback: "open_failed" };
  addon.close(fd);
  return { addon: addon as PidfdAddon, reason: null, fallback: null };
}
