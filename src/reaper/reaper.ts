// Ends stale exec sessions as a hung-up terminal would: SIGHUP, then SIGTERM, then SIGKILL to the processes
// holding the exec's own pty, each signal sent only past the never-signal set, and counted as reaped only
// once the kernel has freed the pty. A session is pinned when judged stale: its processes and its pty's
// allocation; later steps signal only those processes (and their descendants) on that allocation.
import type { Logger } from "pino";
import { errorMessage, isVanished } from "../errors.js";
import { findAncestor } from "../domain/ancestry.js";
import { formatDuration } from "../config/duration.js";
import type { ExecSession, Inventory } from "../domain/types.js";
import type { ReapReason, SessionDecision } from "../domain/snapshot.js";
import { FdReadBudget, type FdReadCut } from "../procfs/fd-budget.js";
import {
  HOLDER_MAX_FDS,
  MIN_ALLOCATION_AGE_MS,
  STEP_READ_BUDGET_MS,
  refusalFor,
  type ProcessRef,
  type ProcessTable,
  type RefusalReason,
  type SessionGuard,
  type SessionPin,
  type TargetFacts,
} from "./identity.js";
import type { Signaller } from "./signaller.js";
import type { RuntimePort } from "../runtimes/port.js";
import type { RuntimeName } from "../domain/attribution.js";
import { confirmRuntimeSession, runtimeReleaseMs } from "./runtime-confirm.js";

/** Each count carries the session's runtime (the metrics' bounded runtime label). */
export interface ReapMetrics {
  reaped(reason: ReapReason, runtime: RuntimeName): void;
  wouldReap(reason: ReapReason, runtime: RuntimeName): void;
  reapFailed(runtime: RuntimeName): void;
  /** A target the never-signal set protected (counted once per session, process and reason). */
  reapRefused?(reason: RefusalReason, runtime: RuntimeName): void;
  /** A reaped session's pty was released this long after its client was first seen gone. */
  reclaimed?(seconds: number, runtime: RuntimeName): void;
  /** A read of a process's fds cut by HOLDER_MAX_FDS or a step's STEP_READ_BUDGET_MS (ptyreaper_process_reads_cut_total). */
  processReadsCut?(reason: FdReadCut): void;
}

/** process.kill, injectable so unit tests never signal anything. */
export type SendSignal = (pid: number, signal: NodeJS.Signals) => void;

export interface ReaperSettings {
  mode: "enforce" | "dry-run";
  graceMs: number;
  /** At most this many escalations run at once; a reload that lowers it stops the newest before their next signal. */
  maxInFlight: number;
  /** policy.idleIncludesOutput: whether output on the pty, not only input, is activity (true when left out). */
  idleIncludesOutput?: boolean;
}

export interface ReaperOptions extends ReaperSettings {
  processes: ProcessTable;
  signaller: Signaller;
  /** The runtimes in use (Docker, containerd, Podman): each confirms its sessions, and kills through its own call where it has one. */
  runtimes: readonly RuntimePort[];
  metrics: ReapMetrics;
  logger: Logger;
  now: () => number;
  /** ptyreaper's own pid: it and its ancestors are never signalled. */
  selfPid: number;
  /** The live policy's exemption for a session (null: none); asked before every signal, so a reload applies at once. */
  exemption?: (session: ExecSession) => string | null;
  /** The monotonic clock (ms) of the steps' read budgets (tests); performance.now by default. */
  readClock?: () => number;
}

const ESCALATION = ["SIGHUP", "SIGTERM", "SIGKILL"] as const;
/**
 * How long a pty may still be listed after its holders are gone: the shim closes the master only once
 * dockerd has handled the exec's exit, which took 28 s for a detached exec on this host's Docker 20.10
 * under load (docs/reliability.md).
 */
export const RELEASE_TIMEOUT_MS = 60_000;

/** How long a released pty's master may stay open in the runtime's monitor: containerd's shim may take longer (runtime-confirm.ts). */
function releaseTimeoutMs(session: Pick<ExecSession, "runtime">): number {
  return Math.max(RELEASE_TIMEOUT_MS, runtimeReleaseMs(session));
}
/** Escalations per session before it is left alone (logged); each failed one is retried on a later cycle. */
export const MAX_ATTEMPTS = 3;
/** Reads of the holders within one step (each after sending to the new ones). */
const SAME_STEP_PASSES = 3;
/** Processes walked between two looks at the step's budget. */
const WALK_CLOCK_LOOK = 64;

type Phase = "confirming" | "signalling" | "releasing" | "retry";

interface Escalation {
  session: ExecSession;
  decision: SessionDecision;
  phase: Phase;
  step: (typeof ESCALATION)[number] | null;
  timer: NodeJS.Timeout | null;
  startedAtMs: number;
  attempt: number;
  /** When the holders were found gone (phase "releasing"). */
  releasingSinceMs: number;
  /** The container's main process, from Docker at the start of this attempt. */
  containerMain: ProcessRef | null;
  /** Holders were still there one grace after SIGKILL, and were looked at once more (this attempt). */
  lookedAgainAfterKill?: boolean;
  /** Cleared when the runtime has no kill call for this exec ("unsupported"): signals by pid from then on. */
  viaRuntime?: boolean;
  /** Set once, at the first attempt's start; retries keep it (a retry must not adopt a later allocation's holders). */
  pin: SessionPin | null;
  /**
   * The pty's slave holders in the latest inventory (read in the scan thread, every fd): a process whose fds
   * the reaper's own read left unread is taken for a holder (and refused) only when listed here.
   */
  listedHolders: ReadonlySet<number>;
}

type Result = "reaped" | "already_gone" | "refused" | "failed" | "stopped";

export class Reaper {
  private readonly options: ReaperOptions;
  private readonly inFlight = new Map<string, Escalation>();
  /** Dry-run counts each session once, not once per cycle. */
  private readonly wouldReapSeen = new Set<string>();
  /** Sessions given up on after MAX_ATTEMPTS, until they leave the inventory. */
  private readonly gaveUp = new Set<string>();
  /** "execId pid reason" already logged and counted. */
  private readonly refusalsSeen = new Set<string>();
  private stopped = false;

  constructor(options: ReaperOptions) {
    this.options = options;
  }

  get signalMethod(): Signaller["method"] {
    return this.options.signaller.method;
  }

  /** Reconfigure on reload; escalations in flight check the new settings before their next signal. */
  configure(settings: ReaperSettings): void {
    this.options.mode = settings.mode;
    this.options.graceMs = settings.graceMs;
    this.options.maxInFlight = settings.maxInFlight;
    this.options.idleIncludesOutput = settings.idleIncludesOutput;
  }

  /** Escalations not yet ended: signalling, waiting for the pty's release, or waiting to retry. */
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
        this.options.metrics.wouldReap(reason, session.runtime);
        this.options.logger.info(
          { ...describe(session, this.options.now()), reason, detail: decision.detail, result: "dry-run" },
          "would reap exec session",
        );
        continue;
      }
      if (this.inFlight.has(session.execId) || this.gaveUp.has(session.execId)) continue;
      if (this.activeCount() >= this.options.maxInFlight) continue;
      const escalation: Escalation = {
        session,
        decision,
        phase: "confirming",
        step: null,
        timer: null,
        startedAtMs: this.options.now(),
        attempt: 1,
        releasingSinceMs: 0,
        containerMain: null,
        pin: null,
        listedHolders: new Set(session.holderPids),
      };
      this.inFlight.set(session.execId, escalation);
      started++;
      void this.begin(escalation);
    }
    return started;
  }

  /**
   * Once per cycle with the new inventory (whose reading began at readFromMs): a session whose holders are gone is reaped when its pty has
   * left the kernel's inventory; one still held is a failure, retried on a later cycle.
   */
  observe(inventory: Inventory, readFromMs: number): void {
    if (this.inFlight.size === 0) return; // nothing to confirm: no map of every pty, every cycle
    const byKey = new Map(inventory.ptys.map((p) => [p.key, p]));
    const budget = this.readBudget();
    for (const escalation of [...this.inFlight.values()]) {
      escalation.listedHolders = new Set(byKey.get(escalation.session.ptyKey)?.slavePids ?? []);
      if (escalation.phase !== "releasing" && escalation.phase !== "retry") continue;
      // An inventory whose reading began before the holders were found gone says nothing about the release.
      if (escalation.phase === "releasing" && readFromMs < escalation.releasingSinceMs) continue;
      const { session } = escalation;
      const pty = byKey.get(session.ptyKey);
      // Gone, or the index now belongs to another exec or allocation: the session's pty was freed.
      const reallocated = pty !== undefined && this.reallocated(escalation, pty.slavePids, budget);
      if (pty === undefined || (pty.execId !== null && pty.execId !== session.execId) || reallocated) {
        if (session.client?.state === "gone") this.options.metrics.reclaimed?.((this.options.now() - session.client.sinceMs) / 1000, session.runtime);
        this.finish(
          escalation,
          "reaped",
          `pty released after ${escalation.step ?? "no signal"}${reallocated ? " (its index is allocated again)" : ""}`,
        );
        continue;
      }
      if (escalation.phase === "retry") {
        escalation.attempt++;
        escalation.phase = "confirming";
        escalation.step = null;
        escalation.lookedAgainAfterKill = false;
        void this.begin(escalation);
        continue;
      }
      // A slave still open (by a process ptyreaper may not signal) keeps the pty for good; only the shim's master is worth waiting for.
      if (pty.slavePids.length > 0) {
        this.fail(
          escalation,
          `pty still held after its processes ended: slave holders ${pty.slavePids.join(",")}, master holders ${pty.masterPids.join(",") || "none"}`,
        );
      } else if (this.options.now() - escalation.releasingSinceMs >= releaseTimeoutMs(session)) {
        this.fail(
          escalation,
          `pty still held ${formatDuration(releaseTimeoutMs(session))} after its processes ended, by its master only: ${pty.masterPids.join(",") || "none"}`,
        );
      }
    }
  }

  /** Forget bookkeeping of sessions that no longer exist. */
  prune(liveExecIds: ReadonlySet<string>): void {
    for (const id of this.wouldReapSeen) if (!liveExecIds.has(id)) this.wouldReapSeen.delete(id);
    for (const id of this.gaveUp) if (!liveExecIds.has(id)) this.gaveUp.delete(id);
    for (const key of this.refusalsSeen)
      if (!liveExecIds.has(key.split(" ")[0] ?? "") && !this.inFlight.has(key.split(" ")[0] ?? "")) this.refusalsSeen.delete(key);
  }

  /** Cancels pending escalations, logging each so nothing is left half-handled silently. */
  stop(): void {
    this.stopped = true;
    for (const escalation of this.inFlight.values()) {
      if (escalation.timer) clearTimeout(escalation.timer);
      this.options.logger.warn(
        {
          ...describe(escalation.session, this.options.now()),
          reason: escalation.decision.reason,
          step: escalation.step,
          phase: escalation.phase,
          result: "abandoned",
        },
        "shutdown: reap escalation abandoned; the session is re-examined when ptyreaper starts again",
      );
    }
    this.inFlight.clear();
  }

  private activeCount(): number {
    let n = 0;
    for (const e of this.inFlight.values()) if (e.phase === "confirming" || e.phase === "signalling") n++;
    return n;
  }

  /**
   * The session's runtime must still record the exec with this pid (or, on a retry, report that it ended), and
   * name the container's main process; the session is then pinned and signalled.
   */
  private async begin(escalation: Escalation): Promise<void> {
    const { session } = escalation;
    const runtime = session.runtime;
    const port = this.portOf(session);
    if (!port) return this.finish(escalation, "refused", `${runtime} is not in use`);
    let confirmed;
    try {
      confirmed = await confirmRuntimeSession(port, session);
    } catch (err) {
      return this.finish(escalation, "refused", `cannot confirm with ${runtime}: ${errorMessage(err)}`);
    }
    if (this.stopped || this.inFlight.get(session.execId) !== escalation) return;
    if (confirmed.verdict === "ended") return this.ended(escalation, confirmed.why);
    if (confirmed.verdict === "refused") return this.finish(escalation, "refused", confirmed.why);
    if (confirmed.verdict === "container_gone") return this.finish(escalation, "already_gone", confirmed.why);
    if (confirmed.initPid === null) return this.finish(escalation, "refused", `${runtime} does not name the container's main process`);
    let stat;
    try {
      stat = this.options.processes.stat(confirmed.initPid);
    } catch {
      stat = null;
    }
    if (!stat) return this.finish(escalation, "refused", `cannot read the container's main process ${confirmed.initPid}`);
    escalation.containerMain = { pid: confirmed.initPid, startTicks: stat.startTicks };
    if (!this.pinned(escalation)) return;
    escalation.phase = "signalling";
    escalation.viaRuntime ??= confirmed.verdict === "running" && port.killExec !== undefined;
    void this.runtimeStep(escalation, 0, port);
  }

  private portOf(session: Pick<ExecSession, "runtime">): RuntimePort | undefined {
    return this.options.runtimes.find((p) => p.runtime === session.runtime);
  }

  /**
   * One escalation step through the runtime's own kill call, after the same never-signal check on the exec's
   * process; the other holders of the pty (its children) then get the same signal by pid. "unsupported"
   * (Podman before 4.8) falls back to signals by pid for this and every later step.
   */
  private async runtimeStep(escalation: Escalation, level: number, port: RuntimePort): Promise<void> {
    if (this.stopped || this.inFlight.get(escalation.session.execId) !== escalation) return;
    const signal = ESCALATION[level];
    const kill = port.killExec?.bind(port);
    if (!escalation.viaRuntime || signal === undefined || kill === undefined) return this.signalStep(escalation, level);
    const halt = this.haltReason(escalation);
    if (halt !== null) return this.finish(escalation, "stopped", `escalation stopped before ${signal}: ${halt}`);
    const { session } = escalation;
    let refusal: string | null;
    try {
      refusal = this.check(escalation, session.pid, this.readBudget());
    } catch (err) {
      if (!isVanished(err)) throw err;
      return this.signalStep(escalation, level); // the exec's process is gone: only its leftovers, if any, by pid
    }
    // A refusal is reported by the pid path, which applies the same check and fails the attempt.
    if (refusal !== null) return this.signalStep(escalation, level);
    let outcome;
    try {
      outcome = await kill({ id: session.execId, container: { namespace: session.runtimeNamespace ?? null, id: session.containerId } }, signal);
    } catch (err) {
      this.options.logger.warn({ err, execId: session.execId, runtime: port.runtime }, "kill through the runtime failed: signalling by pid");
      outcome = "unsupported" as const;
    }
    if (this.stopped || this.inFlight.get(session.execId) !== escalation) return;
    if (outcome === "unsupported") {
      escalation.viaRuntime = false;
      this.options.logger.info({ execId: session.execId, runtime: port.runtime }, "the runtime has no kill call for this exec: signalling by pid");
      return this.signalStep(escalation, level);
    }
    if (outcome === "signalled") {
      escalation.step = signal;
      this.options.logger.info(
        { ...describe(session, this.options.now()), signal, via: port.runtime, attempt: escalation.attempt },
        "signalled exec session through its runtime",
      );
    }
    this.signalStep(escalation, level, outcome === "signalled" ? session.pid : null, port);
  }

  /** Why an escalation must not go on (a reload changed the rules); null to go on. */
  private haltReason(escalation: Escalation): string | null {
    if (this.options.mode !== "enforce") return `mode is now ${this.options.mode}`;
    const exemption = this.options.exemption?.(escalation.session) ?? null;
    if (exemption !== null) return `now exempt: ${exemption}`;
    const active = [...this.inFlight.values()].filter((e) => e.phase === "signalling").sort((a, b) => a.startedAtMs - b.startedAtMs);
    if (active.indexOf(escalation) >= this.options.maxInFlight) return `maxPerCycle is now ${this.options.maxInFlight}`;
    return null;
  }

  /** `skipPid`: the exec's process, already signalled at this level through its runtime (`port`, whose call the next level uses too). */
  private signalStep(escalation: Escalation, level: number, skipPid: number | null = null, port: RuntimePort | null = null): void {
    if (this.stopped || this.inFlight.get(escalation.session.execId) !== escalation) return;
    const halt = this.haltReason(escalation);
    if (halt !== null) return this.finish(escalation, "stopped", `escalation stopped before ${ESCALATION[level] ?? "its end"}: ${halt}`);
    const { session } = escalation;
    const signal = ESCALATION[level];
    const sent: number[] = [];
    const refused: string[] = [];
    const examined = new Set<number>();
    const budget = this.readBudget();
    // Read again right after sending (only processes new since the last read): a child forked just before its
    // parent got the signal is reached in the same step, rather than outliving the exec's process.
    let moved: number[] = [];
    for (let pass = 0; pass < SAME_STEP_PASSES && moved.length === 0; pass++) {
      const fresh = this.holders(escalation, examined, budget).filter((pid) => pid !== skipPid);
      if (fresh.length === 0) break;
      moved = this.onOtherAllocation(escalation, fresh, budget);
      if (moved.length === 0) this.sendAll(escalation, fresh, signal, sent, refused, budget);
    }
    if (moved.length > 0) {
      if (sent.length > 0)
        this.options.logger.info(
          { ...describe(session, this.options.now()), signal, pids: sent, attempt: escalation.attempt },
          "signalled exec session",
        );
      return this.allocationChanged(escalation, moved, signal);
    }
    if (sent.length === 0 && skipPid === null) {
      if (refused.length === 0) {
        void this.confirmEnded(escalation);
        return;
      }
      if (signal === undefined && !escalation.lookedAgainAfterKill) {
        // A holder SIGKILLed a grace ago may still be closing its files on a loaded host: one more look first.
        escalation.lookedAgainAfterKill = true;
        escalation.timer = setTimeout(() => {
          escalation.timer = null;
          this.signalStep(escalation, level);
        }, this.options.graceMs);
        escalation.timer.unref();
        return;
      }
      const after = escalation.step ? `after ${escalation.step}` : "before any signal";
      this.fail(escalation, `pty still held ${after} by pids ${refused.join(", ")}`);
      return;
    }
    escalation.step = signal ?? null;
    if (sent.length > 0)
      this.options.logger.info(
        { ...describe(session, this.options.now()), signal, pids: sent, attempt: escalation.attempt },
        "signalled exec session",
      );
    escalation.timer = setTimeout(() => {
      escalation.timer = null;
      if (port !== null) void this.runtimeStep(escalation, level + 1, port);
      else this.signalStep(escalation, level + 1);
    }, this.options.graceMs);
    escalation.timer.unref();
  }

  private sendAll(
    escalation: Escalation,
    candidates: readonly number[],
    signal: NodeJS.Signals | undefined,
    sent: number[],
    refused: string[],
    budget: FdReadBudget,
  ): void {
    const { session } = escalation;
    for (const pid of candidates) {
      if (signal === undefined) {
        refused.push(String(pid));
        continue;
      }
      let outcome;
      try {
        outcome = this.options.signaller.send(pid, signal, () => this.check(escalation, pid, budget));
      } catch (err) {
        this.options.logger.error({ err, pid, signal, execId: session.execId }, "signal failed");
        refused.push(`${pid} (signal failed)`);
        continue;
      }
      if (outcome.sent) sent.push(pid);
      else if (outcome.refusal !== null) {
        this.refuse(escalation, pid, outcome.refusal as RefusalReason);
        refused.push(`${pid} (${outcome.refusal})`);
      }
    }
  }

  /**
   * In-container processes holding the session's pty now: re-read at every step from the container's cgroup, so a
   * child forked after SIGHUP, or a process that opened the pty since the last full scan, is found. One whose fds
   * were not read within the budget is among them when the latest inventory lists it as a holder: then check()
   * refuses it (never signalled on a guess) and the cut is counted.
   */
  private holders(escalation: Escalation, examined: Set<number>, budget: FdReadBudget): number[] {
    const { processes } = this.options;
    const { session } = escalation;
    let cgroup: string;
    try {
      cgroup = processes.cgroup(escalation.containerMain?.pid ?? -1);
    } catch {
      return []; // the main process is gone: the container stopped, and its processes with it
    }
    const found: number[] = [];
    // The container's cgroup lists its processes (it must list its main one, else the listing is not the one the
    // texts name: another cgroup namespace's view). Failing that, every process's cgroup is read. Either way a
    // container may run thousands: the scan's holders go first, so a walk the step's budget cuts short still
    // reaches them; the rest are not signalled this step (a later one walks again).
    const members = processes.cgroupMembers(cgroup);
    const all = members !== null && members.includes(escalation.containerMain?.pid ?? -1) ? members : processes.pids();
    const walk = [...all.filter((pid) => escalation.listedHolders.has(pid)), ...all.filter((pid) => !escalation.listedHolders.has(pid))];
    for (const [at, pid] of walk.entries()) {
      if (at % WALK_CLOCK_LOOK === WALK_CLOCK_LOOK - 1 && budget.spent) {
        budget.cut("read_budget");
        break;
      }
      if (examined.has(pid)) continue;
      examined.add(pid);
      try {
        if (processes.cgroup(pid) !== cgroup) continue;
        const held = processes.slaveCtimeNs(pid, session.devptsDev, session.index, budget);
        if (typeof held === "bigint" || (typeof held === "string" && escalation.listedHolders.has(pid))) found.push(pid);
      } catch {
        continue; // exited during the walk
      }
    }
    return found;
  }

  /** The never-signal check, run while the target is pinned; throws a vanished error when it is gone. */
  private check(escalation: Escalation, pid: number, budget: FdReadBudget): string | null {
    const { processes } = this.options;
    const { session } = escalation;
    const main = escalation.containerMain;
    if (main === null) return "unreadable";
    let target: TargetFacts;
    let guard: SessionGuard;
    try {
      const stat = processes.stat(pid);
      if (stat === null) return "unreadable";
      if (stat.state === "Z" || stat.state === "X") throw Object.assign(new Error(`pid ${pid} is a zombie`), { code: "ESRCH" });
      const mainStat = processes.stat(main.pid);
      if (mainStat === null || mainStat.startTicks !== main.startTicks) return "unreadable";
      // Must still hold this very pty. One that closed it since it was found is no longer a target: like one
      // that exited, it is passed over, not refused (a refusal would count against the session).
      const ctimeNs = processes.slaveCtimeNs(pid, session.devptsDev, session.index, budget);
      if (ctimeNs === null) throw Object.assign(new Error(`pid ${pid} let go of the pty`), { code: "ESRCH" });
      if (typeof ctimeNs === "string") return ctimeNs; // its fds were not read: whether it holds this pty is not known
      if (escalation.pin !== null && ctimeNs !== escalation.pin.allocation.ctimeNs) return "allocation_changed";
      target = {
        pid,
        startTicks: stat.startTicks,
        comm: stat.comm,
        nsPids: processes.nsPids(pid) ?? [],
        cgroup: processes.cgroup(pid),
        ancestors: this.ancestors(stat.ppid),
      };
      guard = {
        exec: { pid: session.pid, startTicks: session.startTicks },
        containerMain: main,
        containerMainAncestors: new Set(this.ancestors(mainStat.ppid).map((a) => a.pid)),
        containerCgroup: processes.cgroup(main.pid),
        self: new Set([this.options.selfPid, ...this.ancestors(this.selfParent()).map((a) => a.pid)]),
        pinned: escalation.pin?.processes ?? null,
      };
    } catch (err) {
      if (isVanished(err)) throw err;
      return "unreadable"; // cannot prove who it is, so never signal
    }
    const refusal = refusalFor(target, guard);
    if (refusal === "pid_reused") {
      this.options.logger.warn({ pid, execId: session.execId }, "pid no longer the scanned process: not signalled");
    }
    // A descendant found now is pinned too: it stays the session's if its parent dies and it is reparented.
    if (refusal === null && escalation.pin !== null) escalation.pin.processes.set(pid, target.startTicks);
    return refusal;
  }

  /**
   * Pins the session at the first attempt's start: the exec's process must still hold its pty (its fd names the
   * allocation), and every holder in the container the never-signal rules allow now is recorded with it. False
   * (the escalation finished) when it cannot be pinned.
   */
  private pinned(escalation: Escalation): boolean {
    if (escalation.pin !== null) return true;
    const { processes } = this.options;
    const { session } = escalation;
    const budget = this.readBudget();
    let ctimeNs: bigint | null | FdReadCut = null;
    try {
      if (processes.stat(session.pid)?.startTicks === session.startTicks)
        ctimeNs = processes.slaveCtimeNs(session.pid, session.devptsDev, session.index, budget);
    } catch (err) {
      if (!isVanished(err)) {
        this.finish(escalation, "refused", `cannot read the exec's process ${session.pid}: ${errorMessage(err)}`);
        return false;
      }
    }
    if (ctimeNs === null) {
      this.finish(escalation, "already_gone", "the exec's process no longer holds its pty");
      return false;
    }
    if (typeof ctimeNs === "string") {
      this.refuse(escalation, session.pid, ctimeNs);
      this.finish(
        escalation,
        "refused",
        `the exec's process ${session.pid} does not hold its pty on a standard stream, and its fds were not read (${ctimeNs})`,
      );
      return false;
    }
    if (Number(ctimeNs / 1_000_000n) > this.options.now() - MIN_ALLOCATION_AGE_MS) {
      this.finish(escalation, "stopped", "the pty's inode changed under a second ago: judged again on a later cycle");
      return false;
    }
    const active = this.activeSinceJudged(escalation, budget);
    if (active !== null) {
      this.finish(escalation, "stopped", `${active}: judged again on a later cycle`);
      return false;
    }
    const allocation = { devptsDev: session.devptsDev, index: session.index, ctimeNs };
    const pin: SessionPin = { processes: new Map([[session.pid, session.startTicks]]), allocation };
    for (const pid of this.holders(escalation, new Set(), budget)) {
      try {
        if (processes.slaveCtimeNs(pid, session.devptsDev, session.index, budget) === ctimeNs && this.check(escalation, pid, budget) === null) {
          pin.processes.set(pid, processes.stat(pid)?.startTicks ?? -1);
        }
      } catch (err) {
        if (!isVanished(err)) throw err;
      }
    }
    escalation.pin = pin;
    this.options.logger.debug({ execId: session.execId, pinned: [...pin.processes.keys()], ctimeNs: String(ctimeNs) }, "exec session pinned");
    return true;
  }

  /**
   * For a session judged stale by its idle clock (idle, or pressure's minIdle): whether its pty saw activity
   * after the times the decision was made on, read now through the exec's own fd. A scan pass cut by its
   * budget carries a holder's older times, so on a loaded host a shell being typed into could look idle;
   * this is the last look before any signal. null: no newer activity (or max_age and orphaned, which do
   * not depend on it).
   */
  private activeSinceJudged(escalation: Escalation, budget: FdReadBudget): string | null {
    const { session, decision } = escalation;
    if (decision.reason !== "idle" && decision.reason !== "pressure") return null;
    const fresh = this.options.processes.slaveActivity(session.pid, session.devptsDev, session.index, budget);
    if (fresh === null || typeof fresh === "string") return null; // not held (the caller saw it held) or cut: the ctime read decided
    const withOutput = this.options.idleIncludesOutput ?? true;
    const judged = withOutput ? Math.max(session.atimeMs, session.mtimeMs) : session.atimeMs;
    const now = withOutput ? Math.max(fresh.atimeMs, fresh.mtimeMs) : fresh.atimeMs;
    // 1 ms: the scan's times and this read round the same nanoseconds differently.
    if (now <= judged + 1) return null;
    return `${withOutput ? "input or output" : "input"} on the pty ${formatDuration(Math.max(0, this.options.now() - now))} ago, after the times it was judged idle on`;
  }

  /** Of `pids` (holders of the session's index), those holding another allocation than the pinned one. */
  private onOtherAllocation(escalation: Escalation, pids: readonly number[], budget: FdReadBudget): number[] {
    const { pin, session } = escalation;
    if (pin === null) return [];
    return pids.filter((pid) => {
      try {
        const ctimeNs = this.options.processes.slaveCtimeNs(pid, session.devptsDev, session.index, budget);
        return typeof ctimeNs === "bigint" && ctimeNs !== pin.allocation.ctimeNs;
      } catch {
        return false; // exited
      }
    });
  }

  /** Whether the pinned allocation is gone though its index is held: the slave holders hold another one, and no pinned process is among them. */
  private reallocated(escalation: Escalation, slavePids: readonly number[], budget: FdReadBudget): boolean {
    const moved = this.onOtherAllocation(escalation, slavePids, budget);
    return moved.length > 0 && !moved.some((pid) => this.isPinned(escalation, pid));
  }

  private isPinned(escalation: Escalation, pid: number): boolean {
    try {
      const start = escalation.pin?.processes.get(pid);
      return start !== undefined && this.options.processes.stat(pid)?.startTicks === start;
    } catch {
      return false;
    }
  }

  /**
   * The index is held on another allocation: no more signals. A pinned process among the holders means the same
   * allocation with a moved ctime (a chmod): stopped, judged again later. Otherwise the pinned allocation was
   * freed and the index handed out again: its holders are refused and the release decides (observe).
   */
  private allocationChanged(escalation: Escalation, holders: readonly number[], signal: NodeJS.Signals | undefined): void {
    const before = signal ?? "its end";
    if (holders.some((pid) => this.isPinned(escalation, pid))) {
      return this.finish(escalation, "stopped", `escalation stopped before ${before}: the pty's inode changed while the session holds it`);
    }
    for (const pid of holders) this.refuse(escalation, pid, "allocation_changed");
    this.options.logger.info(
      { ...describe(escalation.session, this.options.now()), holders, before },
      "the session's pty index is allocated again: escalation stopped",
    );
    this.awaitRelease(escalation);
  }

  /** The runtime reports the exec ended: the first attempt found it so (not ours); a later one signals nothing more and waits for the release. */
  private ended(escalation: Escalation, why: string): void {
    if (escalation.attempt === 1) return this.finish(escalation, "already_gone", why);
    this.options.logger.info(
      { execId: escalation.session.execId, attempt: escalation.attempt, why },
      "exec ended: no more signals, waiting for its pty's release",
    );
    this.awaitRelease(escalation);
  }

  /** Reaped only once the kernel freed the pty: observe() decides. */
  private awaitRelease(escalation: Escalation): void {
    if (escalation.timer) clearTimeout(escalation.timer);
    escalation.timer = null;
    escalation.phase = "releasing";
    escalation.releasingSinceMs = this.options.now();
  }

  /** One step's (or one observe's) reads of fd tables: each process capped, all of them within one time budget, cuts counted. */
  private readBudget(): FdReadBudget {
    return new FdReadBudget(HOLDER_MAX_FDS, STEP_READ_BUDGET_MS, (cut) => this.options.metrics.processReadsCut?.(cut), this.options.readClock);
  }

  private selfParent(): number {
    try {
      return this.options.processes.stat(this.options.selfPid)?.ppid ?? 0;
    } catch {
      return 0;
    }
  }

  /** pid and its ancestors up to (not including) the host's init; the walk ends at one that cannot be read. */
  private ancestors(pid: number): ProcessRef[] {
    const read = (at: number): (ProcessRef & { ppid: number }) | undefined => {
      try {
        const stat = this.options.processes.stat(at);
        return stat ? { pid: at, startTicks: stat.startTicks, ppid: stat.ppid } : undefined;
      } catch {
        return undefined; // gone or unreadable: the chain ends here
      }
    };
    const chain: ProcessRef[] = [];
    // A test that never accepts: the whole walk, each process taken on the way.
    const take = ({ pid: at, startTicks }: ProcessRef): boolean => {
      chain.push({ pid: at, startTicks });
      return false;
    };
    findAncestor(
      read(pid),
      (node) => node.pid,
      (node) => read(node.ppid),
      take,
    );
    return chain;
  }

  private refuse(escalation: Escalation, pid: number, reason: RefusalReason): void {
    const key = `${escalation.session.execId} ${pid} ${reason}`;
    if (this.refusalsSeen.has(key)) return;
    this.refusalsSeen.add(key);
    this.options.metrics.reapRefused?.(reason, escalation.session.runtime);
    this.options.logger.warn(
      { ...describe(escalation.session, this.options.now()), target: pid, refusal: reason },
      "refused to signal a holder of the session's pty",
    );
  }

  /**
   * No process holds the pty any more: the runtime must not still report the exec running, unless it reports exits
   * late (dockerd: see RELEASE_TIMEOUT_MS), when the pty's release decides, not its answer.
   */
  private async confirmEnded(escalation: Escalation): Promise<void> {
    const { session } = escalation;
    const port = this.portOf(session);
    try {
      const confirmed = port ? await confirmRuntimeSession(port, session) : null;
      if (this.inFlight.get(session.execId) !== escalation) return;
      if (confirmed?.verdict === "running" && port?.reportsExitLate === true) {
        this.options.logger.debug({ execId: session.execId }, `no process holds the pty any more; ${session.runtime} still reports the exec running`);
      } else if (confirmed?.verdict === "running") {
        this.fail(escalation, `no process holds the pty any more but ${session.runtime} still reports the exec running`);
        return;
      }
    } catch (err) {
      this.options.logger.warn({ err, execId: session.execId, runtime: session.runtime }, "could not confirm the exec ended with its runtime");
    }
    this.awaitRelease(escalation);
  }

  /** A failed attempt: counted and logged; retried on a later cycle until MAX_ATTEMPTS. */
  private fail(escalation: Escalation, why: string): void {
    const { session } = escalation;
    this.options.metrics.reapFailed(session.runtime);
    const last = escalation.attempt >= MAX_ATTEMPTS;
    this.options.logger.error(
      {
        ...describe(session, this.options.now()),
        reason: escalation.decision.reason,
        result: "failed",
        why,
        attempt: escalation.attempt,
        retry: !last,
      },
      "failed to reap exec session",
    );
    if (last) {
      this.inFlight.delete(session.execId);
      this.gaveUp.add(session.execId);
      return;
    }
    escalation.phase = "retry";
  }

  private finish(escalation: Escalation, result: Result, why: string): void {
    if (this.inFlight.get(escalation.session.execId) !== escalation) return;
    this.inFlight.delete(escalation.session.execId);
    if (escalation.timer) clearTimeout(escalation.timer);
    const { session, decision } = escalation;
    const fields = {
      ...describe(session, this.options.now()),
      reason: decision.reason,
      detail: decision.detail,
      result,
      why,
      attempt: escalation.attempt,
    };
    if (result === "reaped" && decision.reason) {
      this.options.metrics.reaped(decision.reason, session.runtime);
      this.options.logger.info(fields, "reaped exec session");
    } else {
      this.options.logger.warn(fields, "exec session not reaped");
    }
  }
}

function describe(session: ExecSession, nowMs: number): Record<string, unknown> {
  return {
    runtime: session.runtime,
    ...(session.kubernetes
      ? { pod: `${session.kubernetes.namespace}/${session.kubernetes.pod}`, kubernetesContainer: session.kubernetes.container }
      : {}),
    container: session.containerName,
    containerId: session.containerId.slice(0, 12),
    execId: session.execId,
    pid: session.pid,
    tty: `pts/${session.index}@${session.devptsDev}`,
    idle: formatDuration(nowMs - Math.max(session.atimeMs, session.mtimeMs)),
    inputIdle: formatDuration(nowMs - session.atimeMs),
  };
}
