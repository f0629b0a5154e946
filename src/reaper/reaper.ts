// Ends stale exec sessions as a hung-up terminal would: SIGHUP, then SIGTERM, then SIGKILL, each
// sent only after proving the pid still is the process the scan saw.
import type { Logger } from "pino";
import { errorMessage, isVanished } from "../errors.js";
import { formatDuration } from "../config/duration.js";
import type { ExecSession } from "../domain/types.js";
import type { ReapReason, SessionDecision } from "../domain/snapshot.js";
import type { DockerPort } from "../docker/port.js";
import { classifyRdev, formatDev } from "../procfs/parse.js";
import type { ProcFs } from "../procfs/procfs.js";

export interface ReapMetrics {
  reaped(reason: ReapReason): void;
  wouldReap(reason: ReapReason): void;
  reapFailed(): void;
}

/** process.kill, injectable so unit tests never signal anything. */
export type SendSignal = (pid: number, signal: NodeJS.Signals) => void;

export interface ReaperOptions {
  procfs: ProcFs;
  docker: DockerPort | null;
  sendSignal: SendSignal;
  metrics: ReapMetrics;
  logger: Logger;
  now: () => number;
  mode: "enforce" | "dry-run";
  graceMs: number;
}

/** One process to signal, with the identity it had when the scan saw it. */
interface Target {
  pid: number;
  startTicks: number;
  pidNs: string | null;
  containerId: string;
}

type Step = "confirming" | "SIGHUP" | "SIGTERM" | "SIGKILL";
const ESCALATION = ["SIGHUP", "SIGTERM", "SIGKILL"] as const;

interface Escalation {
  session: ExecSession;
  decision: SessionDecision;
  step: Step;
  timer: NodeJS.Timeout | null;
  startedAtMs: number;
  /** The session's other holders as they were at the first signal; later signals go to these only. */
  jobs: Target[] | null;
}

export type Identity = "same" | "gone" | "different";

/** Whether `pid` still is the process the scan saw: same start time, PID namespace and container. */
export function checkIdentity(procfs: ProcFs, target: Target): Identity {
  try {
    const stat = procfs.stat(target.pid);
    if (stat === null || stat.state === "Z" || stat.state === "X") return "gone";
    if (stat.startTicks !== target.startTicks) return "different";
    if (target.pidNs !== null && procfs.namespace(target.pid, "pid") !== target.pidNs) return "different";
    if (procfs.cgroupContainerId(target.pid) !== target.containerId) return "different";
    const status = procfs.status(target.pid);
    // A container's init is never a target, whatever the scan said.
    if (status === null || status.nsPids.at(-1) === 1) return "different";
    return "same";
  } catch (err) {
    if (isVanished(err)) return "gone";
    return "different"; // unreadable: cannot prove identity, so never signal
  }
}

export class Reaper {
  private readonly options: ReaperOptions;
  private readonly inFlight = new Map<string, Escalation>();
  /** Dry-run counts each session once, not once per cycle. */
  private readonly wouldReapSeen = new Set<string>();
  private stopped = false;

  constructor(options: ReaperOptions) {
    this.options = options;
  }

  /** Reconfigure on reload; escalations in flight keep their old grace. */
  configure(mode: "enforce" | "dry-run", graceMs: number): void {
    this.options.mode = mode;
    this.options.graceMs = graceMs;
  }

  get pendingCount(): number {
    return this.inFlight.size;
  }

  /**
   * Starts an escalation for each stale session not already being handled; returns at once with how
   * many it started (in dry-run: how many it newly recorded).
   */
  reap(stale: readonly { session: ExecSession; decision: SessionDecision }[]): number {
    if (this.stopped) return 0;
    let started = 0;
    for (const { session, decision } of stale) {
      const reason = decision.reason;
      if (decision.state !== "stale" || reason === null) continue;
      if (this.options.mode === "dry-run") {
        if (this.wouldReapSeen.has(session.execId)) continue;
        this.wouldReapSeen.add(session.execId);
        started++;
        this.options.metrics.wouldReap(reason);
        this.options.logger.info({ ...describe(session, this.options.now()), reason, detail: decision.detail, result: "dry-run" }, "would reap exec session");
        continue;
      }
      if (this.inFlight.has(session.execId)) continue;
      const escalation: Escalation = { session, decision, step: "confirming", timer: null, startedAtMs: this.options.now(), jobs: null };
      this.inFlight.set(session.execId, escalation);
      started++;
      void this.begin(escalation);
    }
    return started;
  }

  /** Forget dry-run bookkeeping of sessions that no longer exist. */
  prune(liveExecIds: ReadonlySet<string>): void {
    for (const id of this.wouldReapSeen) if (!liveExecIds.has(id)) this.wouldReapSeen.delete(id);
  }

  /** Cancels pending escalations, logging each so nothing is left half-handled silently. */
  stop(): void {
    this.stopped = true;
    for (const escalation of this.inFlight.values()) {
      if (escalation.timer) clearTimeout(escalation.timer);
      this.options.logger.warn(
        { ...describe(escalation.session, this.options.now()), reason: escalation.decision.reason, step: escalation.step, result: "abandoned" },
        "shutdown: reap escalation abandoned; the session is re-examined when ptyreaper starts again",
      );
    }
    this.inFlight.clear();
  }

  private async begin(escalation: Escalation): Promise<void> {
    const { session } = escalation;
    // Docker must still say this exec runs with this pid: never act on stale data.
    const docker = this.options.docker;
    if (docker === null) return this.finish(escalation, "refused", "docker is disabled");
    try {
      const exec = await docker.inspectExec(session.execId);
      if (this.stopped) return;
      if (!exec || !exec.running) return this.finish(escalation, "already_gone", "exec no longer running");
      if (exec.pid !== session.pid) return this.finish(escalation, "refused", `exec pid is now ${exec.pid}, scan saw ${session.pid}`);
    } catch (err) {
      return this.finish(escalation, "refused", `cannot confirm with docker: ${errorMessage(err)}`);
    }
    this.signalStep(escalation, 0);
  }


  private signalStep(escalation: Escalation, level: number): void {
    if (this.stopped) return;
    const { session } = escalation;
    const signal = ESCALATION[level];
    const alive = this.liveTargets(escalation);
    if (alive.length === 0) {
      void this.confirmEnded(escalation);
      return;
    }
    if (signal === undefined) {
      this.finish(escalation, "failed", `still running after SIGKILL: pids ${alive.map((t) => t.pid).join(",")}`);
      return;
    }
    escalation.step = signal;
    for (const target of alive) {
      try {
        this.options.sendSignal(target.pid, signal);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ESRCH") {
          this.options.logger.error({ err, pid: target.pid, signal }, "signal failed");
        }
      }
    }
    this.options.logger.info({ ...describe(session, this.options.now()), signal, pids: alive.map((t) => t.pid) }, "signalled exec session");
    escalation.timer = setTimeout(() => {
      escalation.timer = null;
      this.signalStep(escalation, level + 1);
    }, this.options.graceMs);
    escalation.timer.unref();
  }

  /**
   * The exec's own process is checked against its scanned start time. Other holders of the pty
   * (its jobs) have no scanned identity, so at the first signal they must prove it (same container,
   * not an init, still holding this very pty slave) and their start time is pinned then: a job
   * that exits and whose pid is reused before the next signal is never signalled again.
   */
  private liveTargets(escalation: Escalation): Target[] {
    const { session } = escalation;
    const { procfs, logger } = this.options;
    const alive: Target[] = [];
    const leader: Target = { pid: session.pid, startTicks: session.startTicks, pidNs: session.pidNs, containerId: session.containerId };
    const identity = checkIdentity(procfs, leader);
    if (identity === "same") alive.push(leader);
    else if (identity === "different") logger.warn({ pid: leader.pid, execId: session.execId }, "pid no longer the scanned process: not signalled");
    if (escalation.jobs === null) {
      escalation.jobs = [];
      for (const pid of session.holderPids) {
        if (pid === session.pid) continue;
        const target = this.currentTarget(session, pid);
        if (target && checkIdentity(procfs, target) === "same" && holdsSlave(procfs, pid, session.devptsDev, session.index)) escalation.jobs.push(target);
      }
      alive.push(...escalation.jobs);
      return alive;
    }
    for (const job of escalation.jobs) {
      const jobIdentity = checkIdentity(procfs, job);
      if (jobIdentity === "same" && holdsSlave(procfs, job.pid, session.devptsDev, session.index)) alive.push(job);
      else if (jobIdentity === "different") logger.warn({ pid: job.pid, execId: session.execId }, "pid no longer the session's job: not signalled");
    }
    return alive;
  }

  private currentTarget(session: ExecSession, pid: number): Target | null {
    try {
      const stat = this.options.procfs.stat(pid);
      return stat ? { pid, startTicks: stat.startTicks, pidNs: session.pidNs, containerId: session.containerId } : null;
    } catch {
      return null;
    }
  }

  private async confirmEnded(escalation: Escalation): Promise<void> {
    const { session } = escalation;
    try {
      const exec = await this.options.docker?.inspectExec(session.execId);
      if (exec?.running) {
        this.finish(escalation, "failed", "processes gone but docker still reports the exec running");
        return;
      }
    } catch (err) {
      this.options.logger.warn({ err, execId: session.execId }, "could not confirm the exec ended with docker");
    }
    this.finish(escalation, "reaped", `ended after ${escalation.step}`);
  }

  private finish(escalation: Escalation, result: "reaped" | "already_gone" | "refused" | "failed", why: string): void {
    if (!this.inFlight.delete(escalation.session.execId)) return;
    const { session, decision } = escalation;
    const fields = { ...describe(session, this.options.now()), reason: decision.reason, detail: decision.detail, result, why };
    if (result === "reaped" && decision.reason) {
      this.options.metrics.reaped(decision.reason);
      this.options.logger.info(fields, "reaped exec session");
    } else if (result === "failed") {
      this.options.metrics.reapFailed();
      this.options.logger.error(fields, "failed to reap exec session");
    } else {
      this.options.logger.warn(fields, "exec session not reaped");
    }
  }
}

/** Whether `pid` has the slave of pty (devptsDev, index) open right now. */
export function holdsSlave(procfs: ProcFs, pid: number, devptsDev: string, index: number): boolean {
  try {
    for (const fd of procfs.fds(pid)) {
      let st;
      try {
        st = procfs.fdStat(pid, fd);
      } catch {
        continue; // closed meanwhile, or not a file we can stat
      }
      const kind = st.isCharacterDevice() ? classifyRdev(st.rdev) : null;
      if (kind?.role === "slave" && kind.index === index && formatDev(st.dev) === devptsDev) return true;
    }
  } catch {
    return false;
  }
  return false;
}

function describe(session: ExecSession, nowMs: number): Record<string, unknown> {
  return {
    container: session.containerName,
    containerId: session.containerId.slice(0, 12),
    execId: session.execId,
    pid: session.pid,
    tty: `pts/${session.index}@${session.devptsDev}`,
    idle: formatDuration(nowMs - Math.max(session.atimeMs, session.mtimeMs)),
    inputIdle: formatDuration(nowMs - session.atimeMs),
  };
}
