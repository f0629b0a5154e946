// The reaping policy, pure: which exec sessions are active, idle, exempt, or stale (and why).
import { formatDuration, formatDurationExact } from "../config/duration.js";
import type { PolicyConfig } from "../config/types.js";
import { globMatch } from "./glob.js";
import type { ContainerOverShare, ReapReason, SessionDecision, SessionState } from "./snapshot.js";
import type { RuntimeName } from "./attribution.js";
import { containerCapacity, type ExecSession, type Pty, type PtyLimits } from "./types.js";

/** A session with input or output in the last minute is "active" in tables and metrics. */
export const ACTIVE_WINDOW_MS = 60_000;

/** Absorbs float error in ratio × capacity (0.7 × 100 is 70.00000000000001). */
const RATIO_EPSILON = 1e-9;

export interface PolicyInput {
  sessions: readonly ExecSession[];
  limits: PtyLimits;
  /** Whether a runtime answered this cycle: a session of one that did not (unreachable, or its data stale) is never stale. */
  answered: (runtime: RuntimeName) => boolean;
  /** Set for one idle window after a wall-clock step: idle and age reaping wait, pressure reaping does not. */
  clockStepHold?: ClockStepHold | null;
  /**
   * Allocated ptys per devpts instance (each container has its own): under pressure, sessions of the instance
   * holding the most go first, so the tenant that fills the table pays before its neighbours. Absent: idle only.
   */
  ptysPerDevpts?: ReadonlyMap<string, number>;
}

/** A wall-clock step seen by the loop (tty times and ages straddle it, so they cannot be trusted yet). */
export interface ClockStepHold {
  /** Positive: the clock jumped forward. */
  stepMs: number;
  /** How much longer idle and age reaping are held. */
  remainingMs: number;
}

interface Candidate {
  index: number;
  session: ExecSession;
  idleMs: number;
  ageMs: number;
  /** Why idle or age reaping would have taken it but waits (a clock step); pressure still may. */
  held?: string;
}

/**
 * One decision per session, in the order given. At most `maxPerCycle` are stale: max_age first,
 * then orphaned, then idle, each longest idle first, then pressure, the sessions of the devpts instance
 * holding the most ptys first; the rest are deferred to the next cycle.
 */
export function decide(input: PolicyInput, policy: PolicyConfig, maxPerCycle: number, nowMs: number): SessionDecision[] {
  const decisions: (SessionDecision | undefined)[] = new Array<SessionDecision | undefined>(input.sessions.length);
  const byReason: Record<"max_age" | "orphaned" | "idle", Candidate[]> = { max_age: [], orphaned: [], idle: [] };
  const others: Candidate[] = [];
  const hold = input.clockStepHold ?? null;
  const holdNote =
    hold === null
      ? ""
      : `clock stepped ${hold.stepMs >= 0 ? "+" : "-"}${formatDuration(Math.abs(hold.stepMs))}, idle and age reaping held ${formatDuration(hold.remainingMs)} more`;

  input.sessions.forEach((session, index) => {
    const c: Candidate = {
      index,
      session,
      // A tty time ahead of our clock (skew) counts as "just now", never as a negative idle.
      idleMs: Math.max(0, nowMs - (policy.idleIncludesOutput ? Math.max(session.atimeMs, session.mtimeMs) : session.atimeMs)),
      ageMs: Math.max(0, nowMs - session.startedAtMs),
    };
    const exemption = exemptionOf(session, policy);
    if (exemption !== null) {
      decisions[index] = { execId: session.execId, state: "exempt", reason: null, detail: `exempt: ${exemption}` };
    } else if (!input.answered(session.runtime)) {
      decisions[index] = notStale(c, `${session.runtime} data unavailable: not reaping (idle ${formatDuration(c.idleMs)})`);
    } else if (c.ageMs < policy.minAge) {
      decisions[index] = notStale(c, `younger than minAge ${formatDurationExact(policy.minAge)} (age ${formatDuration(c.ageMs)})`);
    } else if (policy.maxAge !== null && c.ageMs >= policy.maxAge) {
      if (hold === null) byReason.max_age.push(c);
      else others.push({ ...c, held: `${holdNote}; age ${formatDuration(c.ageMs)} ≥ maxAge ${formatDurationExact(policy.maxAge)}` });
    } else if (orphanedFor(c, policy, nowMs) !== null) {
      // Not held after a clock step: the client is gone (seen, not inferred from tty times), so no one
      // can be typing into the session whatever the clock says.
      byReason.orphaned.push(c);
    } else if (policy.idleTimeout !== null && c.idleMs >= policy.idleTimeout) {
      if (hold === null) byReason.idle.push(c);
      else others.push({ ...c, held: `${holdNote}; idle ${formatDuration(c.idleMs)} ≥ idleTimeout ${formatDurationExact(policy.idleTimeout)}` });
    } else {
      others.push(c);
    }
  });

  let chosen = 0;
  const choose = (c: Candidate, reason: ReapReason, why: string): void => {
    if (chosen < maxPerCycle) {
      chosen++;
      decisions[c.index] = { execId: c.session.execId, state: "stale", reason, detail: why };
    } else {
      decisions[c.index] = {
        execId: c.session.execId,
        state: reason === "max_age" ? activity(c) : "idle",
        reason: null,
        detail: `deferred: maxPerCycle ${maxPerCycle} reached; ${why}`,
      };
    }
  };

  for (const c of byReason.max_age.sort(longestIdleFirst)) {
    choose(c, "max_age", `age ${formatDuration(c.ageMs)} ≥ maxAge ${formatDurationExact(policy.maxAge ?? 0)}`);
  }
  for (const c of byReason.orphaned.sort(longestIdleFirst)) {
    const client = c.session.client;
    const goneMs = orphanedFor(c, policy, nowMs) ?? 0;
    choose(
      c,
      "orphaned",
      `client gone ${formatDuration(goneMs)} ≥ orphanGrace ${formatDurationExact(policy.orphanGrace ?? 0)} (${client?.detail ?? "client gone"}); ` +
        `no input for ${formatDuration(inputIdleMs(c.session, nowMs))}`,
    );
  }
  for (const c of byReason.idle.sort(longestIdleFirst)) {
    choose(c, "idle", `idle ${formatDuration(c.idleMs)} ≥ idleTimeout ${formatDurationExact(policy.idleTimeout ?? 0)}`);
  }

  // Pressure: reclaim the longest-idle sessions until the count, less what this cycle already
  // reaps, is back at the low watermark.
  const capacity = containerCapacity(input.limits);
  const { allocated } = input.limits;
  // Sessions of a runtime that did not answer are already left out of `others`.
  if (capacity > 0) {
    const highCount = Math.ceil(policy.pressure.high * capacity - RATIO_EPSILON);
    const lowCount = Math.floor(policy.pressure.low * capacity + RATIO_EPSILON);
    if (allocated >= highCount) {
      let projected = allocated - chosen;
      const held = (c: Candidate): number => input.ptysPerDevpts?.get(c.session.devptsDev) ?? 0;
      const pool = others.filter((c) => c.idleMs >= policy.pressure.minIdle).sort((a, b) => held(b) - held(a) || longestIdleFirst(a, b));
      for (const c of pool) {
        if (projected <= lowCount) break;
        const tenant = input.ptysPerDevpts === undefined ? "" : `its container's devpts ${c.session.devptsDev} holds ${held(c)}, the most first; `;
        choose(
          c,
          "pressure",
          `pressure: ${allocated} of ${capacity} container ptys allocated ≥ high ${policy.pressure.high} (${highCount}), ` +
            `reclaiming to low ${policy.pressure.low} (${lowCount}); ${tenant}idle ${formatDuration(c.idleMs)} ≥ minIdle ${formatDurationExact(policy.pressure.minIdle)}`,
        );
        projected--;
      }
    }
  }

  for (const c of others) {
    decisions[c.index] ??= notStale(c, c.held ?? underThresholds(c, policy));
  }
  // Every index was filled above; the fallback keeps the type honest without a non-null assertion.
  return decisions.map((d, i) => d ?? { execId: input.sessions[i]?.execId ?? "", state: "idle", reason: null, detail: "undecided" });
}

/**
 * Why a session may never be reaped under `policy`, or null; the reaper asks it again before every signal.
 * Container init and host checks are defence in depth.
 */
export function exemptionOf(session: ExecSession, policy: PolicyConfig): string | null {
  if (session.nsPid === 1) return "container init (pid 1 in its namespace)";
  if (session.containerId === "" || session.execId === "") return "not a docker exec session";
  if (session.containerLabels[policy.exemptLabel] === "true") return `label ${policy.exemptLabel}=true`;
  const name = session.containerName.replace(/^\//, "");
  const pattern = policy.exemptContainers.find((p) => globMatch(p, name));
  if (pattern !== undefined) return `container name ${name} matches exemptContainers ${pattern}`;
  const namespace = session.kubernetes?.namespace;
  const namespacePattern = namespace === undefined ? undefined : policy.exemptNamespaces?.find((p) => globMatch(p, namespace));
  if (namespacePattern !== undefined) return `Kubernetes namespace ${namespace} matches exemptNamespaces ${namespacePattern}`;
  if (session.exemptByEnv) return "started with PTYREAPER_EXEMPT=1";
  return null;
}

function inputIdleMs(session: ExecSession, nowMs: number): number {
  return Math.max(0, nowMs - session.atimeMs);
}

/**
 * How long the client has been gone, when that makes the session stale: gone at least orphanGrace,
 * and no input for as long (typed input after the client left means someone else is there). Else null.
 */
function orphanedFor(c: Candidate, policy: PolicyConfig, nowMs: number): number | null {
  const client = c.session.client;
  if (policy.orphanGrace === null || client?.state !== "gone") return null;
  const goneMs = Math.max(0, nowMs - client.sinceMs);
  return goneMs >= policy.orphanGrace && inputIdleMs(c.session, nowMs) >= policy.orphanGrace ? goneMs : null;
}

function activity(c: Candidate): SessionState {
  return c.idleMs < ACTIVE_WINDOW_MS ? "active" : "idle";
}

function notStale(c: Candidate, detail: string): SessionDecision {
  return { execId: c.session.execId, state: activity(c), reason: null, detail };
}

function underThresholds(c: Candidate, policy: PolicyConfig): string {
  const client = c.session.client;
  const gone =
    client?.state === "gone" && policy.orphanGrace !== null
      ? `client gone (${client.detail}), within orphanGrace ${formatDurationExact(policy.orphanGrace)} or input since; `
      : "";
  const idle = `${gone}idle ${formatDuration(c.idleMs)}`;
  if (policy.idleTimeout === null) return `${idle} (idleTimeout off)`;
  return `${idle} < idleTimeout ${formatDurationExact(policy.idleTimeout)}`;
}

/** Longest idle first; then oldest; then input order, so equal sessions keep a stable order. */
function longestIdleFirst(a: Candidate, b: Candidate): number {
  return b.idleMs - a.idleMs || b.ageMs - a.ageMs || a.index - b.index;
}

/** Allocated ptys per devpts instance, as the inventory found them. */
export function ptysPerDevpts(ptys: readonly Pick<Pty, "devptsDev">[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const pty of ptys) counts.set(pty.devptsDev, (counts.get(pty.devptsDev) ?? 0) + 1);
  return counts;
}

/**
 * The containers holding more than `share` of the container capacity, most first: the ones to name when ptys
 * run short (at most 1 ÷ share of them, so their metric series stay few).
 */
export function containersOverShare(
  ptys: readonly Pick<Pty, "containerId" | "containerName" | "runtime">[],
  limits: PtyLimits,
  share: number,
): ContainerOverShare[] {
  const capacity = containerCapacity(limits);
  if (capacity === 0) return [];
  const byContainer = new Map<string, ContainerOverShare>();
  for (const pty of ptys) {
    if (pty.containerId === null) continue;
    const entry = byContainer.get(pty.containerId) ?? {
      containerId: pty.containerId,
      containerName: pty.containerName,
      runtime: pty.runtime ?? null,
      ptys: 0,
      share: 0,
    };
    entry.ptys++;
    entry.containerName ??= pty.containerName;
    entry.runtime ??= pty.runtime ?? null;
    byContainer.set(pty.containerId, entry);
  }
  return [...byContainer.values()]
    .map((c) => ({ ...c, share: c.ptys / capacity }))
    .filter((c) => c.share > share + RATIO_EPSILON)
    .sort((a, b) => b.ptys - a.ptys || a.containerId.localeCompare(b.containerId));
}
