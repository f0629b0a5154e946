// Prometheus metrics of the daemon: one registry it owns, fed from each poll cycle's snapshot and events.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { containerCapacity, PTY_OWNERS, type PtyOwner } from "../domain/types.js";
import { REAP_REASONS, SESSION_STATES, type ReapReason, type SessionState, type Snapshot } from "../domain/snapshot.js";
import { capLabelValue } from "./labels.js";
import { FD_READ_CUTS, type FdReadCut } from "../procfs/fd-budget.js";
import { REFUSAL_REASONS, type RefusalReason } from "../reaper/identity.js";
import type { PidfdFallbackReason, SignalMethod } from "../reaper/signaller.js";
import { CLIENT_STATES, type ClientStateName } from "../domain/client.js";
import { countMasterOnly, EXPECTED_MASTER_HOLDERS } from "../domain/master-only.js";

import { POLL_STAGES, type PollStage } from "../poller/stages.js";

/** Why a read of a container-controlled process was cut short: ptyreaper_process_reads_cut_total's reasons. */
export type ProcessReadCut = "argv_budget" | FdReadCut;
export const PROCESS_READ_CUTS: readonly ProcessReadCut[] = ["argv_budget", ...FD_READ_CUTS];
export { POLL_STAGES, type PollStage };

const DOCKER_UP = "ptyreaper_docker_up";

/** Container runtimes ptyreaper can watch. */
import { RUNTIME_NAMES, type RuntimeName } from "../domain/attribution.js";
import { AUTH_REFUSALS, WEB_RELOAD_REFUSALS, type AuthRefusal, type WebReloadRefusal } from "../http/webconfig.js";

/** What the config says about the running daemon, for ptyreaper_config_info. */
export interface ConfigInfo {
  mode: "enforce" | "dry-run";
  /** The config file in force, or "" for the built-in defaults. */
  file: string;
}

/** 1 ms … 10 s: a scan of a quiet host takes milliseconds, a loaded one with a slow Docker socket seconds. */
export const POLL_DURATION_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** 10 s … 1 d: an orphan goes in orphanGrace (2 m) plus a cycle or two; a session reaped as idle in hours. */
export const RECLAIM_BUCKETS: readonly number[] = [10, 30, 60, 120, 180, 300, 600, 1800, 3600, 14_400, 86_400];

/**
 * prom-client default gauges whose names end in _total, which promtool's lint rejects (_total is for
 * counters). Each is the sum over the per-type series prom-client also exports (nodejs_active_handles etc.).
 */
export const DROPPED_DEFAULT_METRICS: readonly string[] = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];

export interface PtyreaperMetricsOptions {
  version: string;
  /** Defaults to a new registry: never prom-client's global one. */
  registry?: Registry;
  /** Node process metrics (cpu, memory, fds, event loop); default true. */
  defaultMetrics?: boolean;
}

/**
 * Usage of the container capacity (max - reserve - 1, see containerCapacity). When that capacity is 0 no
 * container can allocate a pty at all, which is saturation: we report 1 rather than NaN or +Inf, so
 * `ratio >= 0.8` alerts fire and dashboards stay finite. At exactly 1 the next container pty is refused.
 * Above 1 is possible: host logins may allocate up to max - 1.
 */
export function ptyUsageRatio(allocated: number, capacity: number): number {
  return capacity > 0 ? allocated / capacity : 1;
}

/** Counts per runtime and label value, every pair starting at 0: each series is set every cycle, including those back at 0. */
function zeroCounts<V extends string>(values: readonly V[]): Map<RuntimeName, Map<V, number>> {
  return new Map(RUNTIME_NAMES.map((runtime) => [runtime, new Map(values.map((v) => [v, 0]))]));
}

function countOne<V extends string>(counts: Map<RuntimeName, Map<V, number>>, runtime: RuntimeName, value: V): void {
  const byValue = counts.get(runtime);
  byValue?.set(value, (byValue.get(value) ?? 0) + 1);
}

/**
 * How often prom-client's event-loop delay histogram (nodejs_eventloop_lag_*) takes a sample. Each sample wakes the
 * main thread, and on the bench VM a wake-up of an otherwise idle loop costs about 80 µs of CPU: prom-client's
 * default, 10 ms, cost 25-45 ms of CPU every 10 s, and 50 ms still 16 ms (an idle daemon measured with
 * /proc/PID/task/TID/schedstat), a third of the 0.5 % budget. Once a second costs under 1 ms. A block of the loop
 * of a second or more always shows in the next sample; a shorter one shows with a chance in proportion to its
 * length, and no longer than it was.
 */
export const EVENT_LOOP_SAMPLE_MS = 1_000;

type ScanLabels = Record<"reader" | "reason" | "finder" | "finder_reason" | "listing" | "listing_reason", string>;

export class PtyreaperMetrics {
  readonly registry: Registry;

  private readonly ptyAllocated: Gauge;
  private readonly ptyMax: Gauge;
  private readonly ptyReserve: Gauge;
  private readonly ptyUsage: Gauge;
  private readonly ptysByOwner: Gauge<"owner">;
  private readonly containerPtys: Gauge<"container_id" | "container_name" | "runtime">;
  private readonly execSessions: Gauge<"state" | "runtime">;
  private readonly reapedTotal: Counter<"reason" | "runtime">;
  private readonly wouldReapTotal: Counter<"reason" | "runtime">;
  private readonly reapFailuresTotal: Counter<"runtime">;
  private readonly pollDuration: Histogram;
  private readonly pollErrorsTotal: Counter<"stage">;
  private readonly lastPollSuccess: Gauge;
  private readonly dockerUp: Gauge;
  private readonly runtimeUp: Gauge;
  private readonly clockStepsTotal: Counter;
  private readonly runtimeEnabled: Gauge<"runtime">;
  private readonly configInfo: Gauge<"mode" | "file">;
  private readonly reloadSuccessful: Gauge;
  private readonly reloadSuccessTime: Gauge;
  private readonly scanInfo: Gauge<keyof ScanLabels>;
  /** ptyreaper_scan_info's labels: the reader, the BPF finder ("none" until a full pass reports one), the pid listing. */
  private scanLabels: ScanLabels = { reader: "", reason: "", finder: "none", finder_reason: "", listing: "all_pids", listing_reason: "no pass yet" };
  private readonly scanPassesCutTotal: Counter;
  private readonly scansTotal: Counter<"pass">;
  private readonly reapRefusalsTotal: Counter<"reason" | "runtime">;
  private readonly signalInfo: Gauge<"method" | "reason">;
  private readonly execClients: Gauge<"client" | "runtime">;
  private readonly clientEvidenceAvailable: Gauge<"runtime">;
  private readonly reclaimSeconds: Histogram<"runtime">;
  private readonly masterOnlyPtys: Gauge<"runtime" | "holder">;
  private readonly containerPtyShare: Gauge<"container_id" | "container_name" | "runtime">;
  private readonly processReadsCutTotal: Counter<"reason">;
  private readonly authRefusalsTotal: Counter<"reason">;
  private readonly webConfigReloadFailuresTotal: Counter<"reason">;

  constructor(options: PtyreaperMetricsOptions) {
    this.registry = options.registry ?? new Registry();
    const registers = [this.registry];

    this.ptyAllocated = new Gauge({
      name: "ptyreaper_pty_allocated",
      help: "Pseudo-terminal pairs allocated on the host now, across all devpts instances (/proc/sys/kernel/pty/nr).",
      registers,
    });
    this.ptyMax = new Gauge({
      name: "ptyreaper_pty_max",
      help: "Kernel limit on allocated pseudo-terminals (/proc/sys/kernel/pty/max).",
      registers,
    });
    this.ptyReserve = new Gauge({
      name: "ptyreaper_pty_reserve",
      help: "Pseudo-terminals kept for the host's initial devpts mount (/proc/sys/kernel/pty/reserve); containers hold at most max - reserve - 1.",
      registers,
    });
    this.ptyUsage = new Gauge({
      name: "ptyreaper_pty_usage_ratio",
      help: "Allocated pseudo-terminals divided by the container capacity (max - reserve - 1); at 1 a new docker exec -it fails with ENOSPC. Reported as 1 when that capacity is 0.",
      registers,
    });
    this.ptysByOwner = new Gauge({
      name: "ptyreaper_ptys",
      help: "Allocated pseudo-terminals found in /proc, by who holds them: exec (a docker exec session), container (a container's own tty), host, unattributed.",
      labelNames: ["owner"],
      registers,
    });
    this.containerPtys = new Gauge({
      name: "ptyreaper_container_ptys",
      help: "Pseudo-terminals held by processes of one container (its own tty and its exec sessions); runtime is unknown when no runtime claims the container.",
      labelNames: ["container_id", "container_name", "runtime"],
      registers,
    });
    this.execSessions = new Gauge({
      name: "ptyreaper_exec_sessions",
      help: "Running exec sessions holding a pty, by policy state (active, idle under every threshold, stale chosen for reaping, exempt) and the runtime that started them.",
      labelNames: ["state", "runtime"],
      registers,
    });
    this.reapedTotal = new Counter({
      name: "ptyreaper_reaped_sessions_total",
      help: "Exec sessions ended by ptyreaper, by the policy reason (idle, max_age, pressure, orphaned: client gone) and the session's runtime.",
      labelNames: ["reason", "runtime"],
      registers,
    });
    this.wouldReapTotal = new Counter({
      name: "ptyreaper_would_reap_sessions_total",
      help: "Exec sessions that dry-run mode would have ended, by the policy reason (idle, max_age, pressure, orphaned: client gone) and the session's runtime.",
      labelNames: ["reason", "runtime"],
      registers,
    });
    this.reapFailuresTotal = new Counter({
      name: "ptyreaper_reap_failures_total",
      help: "Reap attempts whose pty was not released (still held after SIGKILL, or held by a process ptyreaper may not signal), by the session's runtime; each is retried up to 3 attempts.",
      labelNames: ["runtime"],
      registers,
    });
    this.pollDuration = new Histogram({
      name: "ptyreaper_poll_duration_seconds",
      help: "Duration of successful poll cycles: /proc scan, Docker lookup, policy and reaping.",
      buckets: [...POLL_DURATION_BUCKETS],
      registers,
    });
    this.pollErrorsTotal = new Counter({
      name: "ptyreaper_poll_errors_total",
      help: "Poll cycle steps that failed, by stage: limits, scan, docker, policy, release, reap, publish, record, notify, cycle.",
      labelNames: ["stage"],
      registers,
    });
    this.lastPollSuccess = new Gauge({
      name: "ptyreaper_last_poll_success_timestamp_seconds",
      help: "Unix time of the last poll cycle that completed; 0 before the first one. Alert when time() minus this exceeds a few poll intervals.",
      registers,
    });
    this.dockerUp = new Gauge({
      name: DOCKER_UP,
      help: "1 when the Docker engine answered the last poll cycle, 0 when it is unreachable (no session is reaped then); absent when Docker is not in use (docker.enabled false, or auto without its socket at start).",
      registers,
    });
    this.runtimeUp = new Gauge({
      name: "ptyreaper_runtime_up",
      help: "1 when the container runtime answered the last poll cycle, 0 when it did not (none of its sessions is reaped then); absent for a runtime not in use.",
      labelNames: ["runtime"],
      registers,
    });
    this.runtimeEnabled = new Gauge({
      name: "ptyreaper_runtime_enabled",
      help: "1 when this container runtime is in use (docker.enabled true, or auto with its socket there at start), 0 when it is off (false, or auto without its socket): tells a runtime that is off from one that is down.",
      labelNames: ["runtime"],
      registers,
    });
    this.configInfo = new Gauge({
      name: "ptyreaper_config_info",
      help: "Always 1; the labels describe the config in force: mode (enforce or dry-run) and the config file (empty for the built-in defaults).",
      labelNames: ["mode", "file"],
      registers,
    });
    this.reloadSuccessful = new Gauge({
      name: "ptyreaper_config_last_reload_successful",
      help: "1 when the last config load or reload (SIGHUP) succeeded, 0 when the last reload was rejected and the previous config stays in force.",
      registers,
    });
    this.reloadSuccessTime = new Gauge({
      name: "ptyreaper_config_last_reload_success_timestamp_seconds",
      help: "Unix time of the last successful config load (at start) or reload.",
      registers,
    });
    this.clockStepsTotal = new Counter({
      name: "ptyreaper_clock_steps_total",
      help: "Wall-clock steps seen between poll cycles (beyond 5s of monotonic time); idle and age reaping wait one idle window after each.",
      registers,
    });
    this.scanInfo = new Gauge({
      name: "ptyreaper_scan_info",
      help: "1, labelled with the /proc reader in use (native addon or js) and why, whether full passes let the kernel name the pty fds (finder bpf: the BPF finder, with CAP_BPF and CAP_PERFMON) or read every fd link (none, and why), and whether steady passes list only the pids given out since the last pass (listing new_pids) or every pid (all_pids, and why).",
      labelNames: ["reader", "reason", "finder", "finder_reason", "listing", "listing_reason"],
      registers,
    });
    this.scanPassesCutTotal = new Counter({
      name: "ptyreaper_scan_passes_cut_total",
      help: "/proc passes that ran out of their time budget and completed with what they had read (the rest kept their last known state).",
      registers,
    });
    this.scansTotal = new Counter({
      name: "ptyreaper_scans_total",
      help: "Cycles' /proc scans by the pass their answer came from: full (every process's fds, every fullScanInterval and when the ptys found stop matching pty/nr) or steady (new processes and pty holders only).",
      labelNames: ["pass"],
      registers,
    });
    for (const pass of ["full", "steady"]) this.scansTotal.inc({ pass }, 0);
    this.execClients = new Gauge({
      name: "ptyreaper_exec_clients",
      help: "Running exec sessions holding a pty, by where their client is (attached, gone: it exited or dropped its connection, unknown: no evidence, only the idle policy applies) and the session's runtime.",
      labelNames: ["client", "runtime"],
      registers,
    });
    this.clientEvidenceAvailable = new Gauge({
      name: "ptyreaper_client_evidence_available",
      help: "1 when ptyreaper can tell whether this runtime's exec clients are still there, 0 when it cannot (another network namespace than the runtime, or no sock_diag reader): its clients stay unknown and orphanGrace does not apply. Absent until the runtime first answered.",
      labelNames: ["runtime"],
      registers,
    });
    this.reclaimSeconds = new Histogram({
      name: "ptyreaper_reclaim_seconds",
      help: "Time from the cycle that first saw a session's client gone to the cycle that saw its pty released, for sessions ptyreaper chose to reap, by the session's runtime.",
      labelNames: ["runtime"],
      buckets: [...RECLAIM_BUCKETS],
      registers,
    });
    this.processReadsCutTotal = new Counter({
      name: "ptyreaper_process_reads_cut_total",
      help: "Reads of a process that a cap or budget cut short, by reason: argv_budget (a parsed program's command line kept to its head: WHOLE_ARGV_PER_PASS spent this pass), fd_cap (a process holding more fds than the read's cap: a would-be client (64), containerd (16,384) or a holder of a pty being reaped (1,024): its fds left unread, a client unknown, a holder never signalled), read_budget (the same because a cycle's or a reap step's time budget for such reads was spent).",
      labelNames: ["reason"],
      registers,
    });
    this.containerPtyShare = new Gauge({
      name: "ptyreaper_container_pty_share",
      help: "Share of the container pty capacity (max - reserve - 1) one container holds, only for containers above policy.pressure.containerShare (so at most 1/containerShare series): the tenant filling the table.",
      labelNames: ["container_id", "container_name", "runtime"],
      registers,
    });
    this.masterOnlyPtys = new Gauge({
      name: "ptyreaper_master_only_ptys",
      help: "Ptys held only by masters for masterOnlyGrace, with no process on the slave end: leaks no session explains, never reaped. By the holder's runtime (docker, containerd, cri-o, podman, unknown, none) and role (containerd-shim, conmon, crio, oci-runtime-exec, dockerd, container, host).",
      labelNames: ["runtime", "holder"],
      registers,
    });
    this.authRefusalsTotal = new Counter({
      name: "ptyreaper_http_auth_refusals_total",
      help: "Requests basic auth refused, by reason: missing (no or malformed credentials), wrong (user or password; 401), limited (the address's failed checks are over its limit; 429), busy (bcrypt compares at their cap; 429), error (the check itself failed; 500).",
      labelNames: ["reason"],
      registers,
    });
    this.webConfigReloadFailuresTotal = new Counter({
      name: "ptyreaper_web_config_reload_failures_total",
      help: "Changed web configs refused, the one in force staying: invalid (unreadable or does not validate), empty (no keys, or only comments), drops_tls, drops_auth (would take away TLS, client certificates or basic auth in force), needs_restart (turning TLS or client certificates on).",
      labelNames: ["reason"],
      registers,
    });
    const buildInfo = new Gauge({
      name: "ptyreaper_build_info",
      help: "Always 1; the version label says which ptyreaper build is running.",
      labelNames: ["version"],
      registers,
    });
    buildInfo.set({ version: capLabelValue(options.version) }, 1);
    this.reapRefusalsTotal = new Counter({
      name: "ptyreaper_reap_refusals_total",
      help: "Holders of a stale session's pty that the never-signal set protected, by reason and the session's runtime (once per session, process and reason).",
      labelNames: ["reason", "runtime"],
      registers,
    });
    this.signalInfo = new Gauge({
      name: "ptyreaper_signal_info",
      help: "Always 1; method says how signals are sent: pidfd (pinned, no PID-reuse window) or kill (start-time check, then kill(2)); with kill, reason says why: disabled, no_addon, no_kernel_support or open_failed.",
      labelNames: ["method", "reason"],
      registers,
    });

    // Every known label value present from the start: rate() and absent() need the zero. The runtime label
    // takes only the four runtime names, so each per-session metric has at most four times its series.
    for (const owner of PTY_OWNERS) this.ptysByOwner.set({ owner }, 0);
    for (const runtime of RUNTIME_NAMES) {
      for (const state of SESSION_STATES) this.execSessions.set({ state, runtime }, 0);
      for (const client of CLIENT_STATES) this.execClients.set({ client, runtime }, 0);
      for (const reason of REAP_REASONS) {
        this.reapedTotal.inc({ reason, runtime }, 0);
        this.wouldReapTotal.inc({ reason, runtime }, 0);
      }
      for (const reason of REFUSAL_REASONS) this.reapRefusalsTotal.inc({ reason, runtime }, 0);
      this.reapFailuresTotal.inc({ runtime }, 0);
      this.reclaimSeconds.zero({ runtime });
    }
    for (const stage of POLL_STAGES) this.pollErrorsTotal.inc({ stage }, 0);
    for (const { runtime, holder } of EXPECTED_MASTER_HOLDERS) this.masterOnlyPtys.set({ runtime, holder }, 0);
    for (const reason of AUTH_REFUSALS) this.authRefusalsTotal.inc({ reason }, 0);
    for (const reason of PROCESS_READ_CUTS) this.processReadsCutTotal.inc({ reason }, 0);
    for (const reason of WEB_RELOAD_REFUSALS) this.webConfigReloadFailuresTotal.inc({ reason }, 0);

    if (options.defaultMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
      for (const name of DROPPED_DEFAULT_METRICS) this.registry.removeSingleMetric(name);
    }
  }

  /** Sets every gauge from one cycle's snapshot. Synchronous, so a scrape never sees half of it. */
  observeSnapshot(snapshot: Snapshot): void {
    const { limits, ptys } = snapshot.inventory;
    this.ptyAllocated.set(limits.allocated);
    this.ptyMax.set(limits.max);
    this.ptyReserve.set(limits.reserve);
    this.ptyUsage.set(ptyUsageRatio(limits.allocated, containerCapacity(limits)));

    const byOwner = new Map<PtyOwner, number>(PTY_OWNERS.map((o) => [o, 0]));
    const byContainer = new Map<string, { name: string; runtime: RuntimeName | null; count: number }>();
    for (const pty of ptys) {
      byOwner.set(pty.owner, (byOwner.get(pty.owner) ?? 0) + 1);
      if (pty.containerId === null) continue;
      const entry = byContainer.get(pty.containerId);
      if (entry) {
        entry.count += 1;
        if (entry.name === "" && pty.containerName) entry.name = pty.containerName;
        entry.runtime ??= pty.runtime ?? null;
      } else {
        byContainer.set(pty.containerId, { name: pty.containerName ?? "", runtime: pty.runtime ?? null, count: 1 });
      }
    }
    for (const [owner, count] of byOwner) this.ptysByOwner.set({ owner }, count);

    this.containerPtyShare.reset();
    for (const c of snapshot.overShare ?? []) {
      this.containerPtyShare.set(
        { container_id: capLabelValue(c.containerId), container_name: capLabelValue(c.containerName ?? ""), runtime: c.runtime ?? "unknown" },
        c.share,
      );
    }

    // Rebuilt from scratch: drops vanished and renamed containers alike.
    this.containerPtys.reset();
    for (const [id, { name, runtime, count }] of byContainer) {
      this.containerPtys.set({ container_id: capLabelValue(id), container_name: capLabelValue(name), runtime: runtime ?? "unknown" }, count);
    }

    const runtimeOfExec = new Map(snapshot.inventory.sessions.map((s) => [s.execId, s.runtime]));
    const byState = zeroCounts<SessionState>(SESSION_STATES);
    for (const d of snapshot.decisions) {
      const runtime = runtimeOfExec.get(d.execId);
      if (runtime !== undefined) countOne(byState, runtime, d.state);
    }
    for (const [runtime, counts] of byState) for (const [state, count] of counts) this.execSessions.set({ state, runtime }, count);

    // Each runtime's usual holder stays at 0; any other pair (both labels take a few fixed values) lives while counted.
    this.masterOnlyPtys.reset();
    for (const { runtime, holder } of EXPECTED_MASTER_HOLDERS) this.masterOnlyPtys.set({ runtime, holder }, 0);
    for (const { runtime, holder, count } of countMasterOnly(ptys).values()) this.masterOnlyPtys.set({ runtime, holder }, count);

    const byClient = zeroCounts<ClientStateName>(CLIENT_STATES);
    for (const s of snapshot.inventory.sessions) countOne(byClient, s.runtime, s.client?.state ?? "unknown");
    for (const [runtime, counts] of byClient) for (const [client, count] of counts) this.execClients.set({ client, runtime }, count);
  }

  /** A reaped session's pty was released this long after its client was first seen gone. */
  reclaimed(seconds: number, runtime: RuntimeName): void {
    if (Number.isFinite(seconds)) this.reclaimSeconds.observe({ runtime }, Math.max(0, seconds));
  }

  reaped(reason: ReapReason, runtime: RuntimeName): void {
    this.reapedTotal.inc({ reason, runtime });
  }

  wouldReap(reason: ReapReason, runtime: RuntimeName): void {
    this.wouldReapTotal.inc({ reason, runtime });
  }

  reapFailed(runtime: RuntimeName): void {
    this.reapFailuresTotal.inc({ runtime });
  }

  reapRefused(reason: RefusalReason, runtime: RuntimeName): void {
    this.reapRefusalsTotal.inc({ reason, runtime });
  }

  /** One series: the method in use and, for the kill(2) fallback, why (an alert can tell switched off from broken). */
  setSignalMethod(method: SignalMethod, fallback: PidfdFallbackReason | null = null): void {
    this.signalInfo.reset();
    this.signalInfo.set(fallback === null ? { method } : { method, reason: fallback }, 1);
  }

  pollSucceeded(durationSeconds: number, atMs: number): void {
    // A clock step can make a measured duration negative; it still was a cycle.
    if (Number.isFinite(durationSeconds)) this.pollDuration.observe(Math.max(0, durationSeconds));
    this.lastPollSuccess.set(atMs / 1000);
  }

  pollFailed(stage: PollStage): void {
    this.pollErrorsTotal.inc({ stage });
  }

  /** A cap or budget cut `count` reads of processes short (bounded reasons: PROCESS_READ_CUTS). */
  processReadsCut(reason: ProcessReadCut, count = 1): void {
    this.processReadsCutTotal.inc({ reason }, count);
  }

  clockStepped(): void {
    this.clockStepsTotal.inc();
  }

  /** null: Docker is disabled, so it is neither up nor down (setRuntimeEnabled removed the series). */
  setDockerUp(up: boolean | null): void {
    if (up !== null) this.dockerUp.set(up ? 1 : 0);
    this.setRuntimeUp("docker", up);
  }

  /** null: the runtime is not in use, so it has no series. */
  setRuntimeUp(runtime: RuntimeName, up: boolean | null): void {
    if (up === null) this.runtimeUp.remove({ runtime });
    else this.runtimeUp.set({ runtime }, up ? 1 : 0);
  }

  setClientEvidenceAvailable(runtime: RuntimeName, available: boolean): void {
    this.clientEvidenceAvailable.set({ runtime }, available ? 1 : 0);
  }

  /** A disabled runtime has no _up series at all: a dashboard must not read "disabled" as "down". */
  setRuntimeEnabled(runtime: RuntimeName, enabled: boolean): void {
    this.runtimeEnabled.set({ runtime }, enabled ? 1 : 0);
    if (runtime !== "docker") return;
    const registered = this.registry.getSingleMetric(DOCKER_UP) !== undefined;
    if (!enabled && registered) this.registry.removeSingleMetric(DOCKER_UP);
    if (enabled && !registered) this.registry.registerMetric(this.dockerUp);
  }

  /** A config was loaded (at start) or reloaded and is now in force. */
  configLoaded(info: ConfigInfo, atMs: number): void {
    this.configInfo.reset();
    this.configInfo.set({ mode: info.mode, file: capLabelValue(info.file) }, 1);
    this.reloadSuccessful.set(1);
    this.reloadSuccessTime.set(atMs / 1000);
  }

  /** A reload was rejected: the previous config, and its info series, stay in force. */
  configReloadFailed(): void {
    this.reloadSuccessful.set(0);
  }

  /** A request refused by basic auth. */
  authRefused(reason: AuthRefusal): void {
    this.authRefusalsTotal.inc({ reason });
  }

  /** A changed web config was refused; the one in force stays. */
  webConfigReloadFailed(reason: WebReloadRefusal): void {
    this.webConfigReloadFailuresTotal.inc({ reason });
  }

  setScanReader(reader: string, reason: string): void {
    this.relabelScan({ reader, reason: capLabelValue(reason) });
  }

  /** A full pass's BPF finder outcome (ProcScan.finder): "bpf", or why every fd link was read. */
  setScanFinder(outcome: string): void {
    this.relabelScan(outcome === "bpf" ? { finder: "bpf", finder_reason: "" } : { finder: "none", finder_reason: capLabelValue(outcome) });
  }

  /** A pass's pid listing (ProcScan.pidListing): "new_pids", or why steady passes list every pid. */
  setScanListing(outcome: string): void {
    this.relabelScan(
      outcome === "new_pids" ? { listing: "new_pids", listing_reason: "" } : { listing: "all_pids", listing_reason: capLabelValue(outcome) },
    );
  }

  /** ptyreaper_scan_info's one series, relabelled when a label changes. */
  private relabelScan(change: Partial<ScanLabels>): void {
    const labels = { ...this.scanLabels, ...change };
    if ((Object.keys(labels) as (keyof ScanLabels)[]).every((name) => this.scanLabels[name] === labels[name])) return;
    this.scanLabels = labels;
    this.scanInfo.reset();
    this.scanInfo.set(labels, 1);
  }

  /** A cycle's scan, by the pass its answer came from. */
  scanned(pass: "full" | "steady"): void {
    this.scansTotal.inc({ pass });
  }

  scanPassCut(): void {
    this.scanPassesCutTotal.inc();
  }

  /** The text exposition of the whole registry; reads only what the last cycle stored. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
