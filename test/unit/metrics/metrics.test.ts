// PtyreaperMetrics: values from hand-built snapshots, initial zeros, vanished containers, hostile names.
import { describe, expect, it } from "vitest";
import { Registry } from "prom-client";
import { DROPPED_DEFAULT_METRICS, POLL_STAGES, PtyreaperMetrics, ptyUsageRatio } from "../../../src/metrics/metrics.js";
import { LABEL_VALUE_MAX } from "../../../src/metrics/labels.js";
import { REFUSAL_REASONS } from "../../../src/reaper/identity.js";
import { makeDecision, makePty, makeSessionFor, makeSnapshot } from "./snapshot-factory.js";
import type { Pty } from "../../../src/domain/types.js";

const RUNTIMES = ["docker", "containerd", "cri-o", "podman"] as const;

/**
 * The series of a per-session metric as `series()` keys them: `label` at each of `values` for every runtime, all 0
 * except `counts`, keyed "runtime/value" (e.g. "podman/idle").
 */
function perRuntime(label: string, values: readonly string[], counts: Record<string, number> = {}): Map<string, number> {
  const out = new Map<string, number>();
  for (const runtime of RUNTIMES) {
    for (const value of values) {
      const key = [`${label}=${value}`, `runtime=${runtime}`].sort().join(",");
      out.set(key, counts[`${runtime}/${value}`] ?? 0);
    }
  }
  return out;
}

const REASONS = ["idle", "max_age", "pressure", "orphaned"];
const STATES = ["active", "idle", "stale", "exempt"];
const CLIENTS = ["attached", "gone", "unknown"];

function metrics(): PtyreaperMetrics {
  return new PtyreaperMetrics({ version: "1.2.3", defaultMetrics: false });
}

/** Every series of one metric as "labels → value", labels rendered as a stable `k=v,k=v` key. */
async function series(m: PtyreaperMetrics, name: string): Promise<Map<string, number>> {
  const metric = m.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const got = await metric.get();
  const out = new Map<string, number>();
  for (const v of got.values) {
    const key = Object.entries(v.labels)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, val]) => `${k}=${String(val)}`)
      .join(",");
    // Histograms name each series (_bucket, _sum, _count); other metrics leave metricName unset.
    const metricName = (v as { metricName?: string }).metricName;
    out.set(metricName ? `${metricName}{${key}}` : key, v.value);
  }
  return out;
}

async function value(m: PtyreaperMetrics, name: string, key = ""): Promise<number | undefined> {
  return (await series(m, name)).get(key);
}

/** Reverses the text format's label value escaping (\\, \", \n). */
function unescapeLabelValue(escaped: string): string {
  return escaped.replace(/\\(.)/gsu, (_all, c: string) => (c === "n" ? "\n" : c));
}

/** Label values of container_name in the exposition text, read back like a Prometheus parser would. */
function containerNamesIn(body: string): string[] {
  const names: string[] = [];
  for (const line of body.split("\n")) {
    const m = /^ptyreaper_container_ptys\{container_id="[^"]*",container_name="((?:[^"\\]|\\.)*)",runtime="[a-z-]+"\} \d+$/su.exec(line);
    if (m?.[1] !== undefined) names.push(unescapeLabelValue(m[1]));
  }
  return names;
}

describe("PtyreaperMetrics", () => {
  it("uses its own registry, never prom-client's global one", () => {
    const a = metrics();
    const b = metrics();
    expect(a.registry).not.toBe(b.registry);
    const given = new Registry();
    expect(new PtyreaperMetrics({ version: "x", registry: given, defaultMetrics: false }).registry).toBe(given);
  });

  it("exposes exactly the ptyreaper_ metric names of the spec", async () => {
    const names = (await metrics().registry.getMetricsAsJSON()).map((m) => m.name).sort();
    expect(names).toEqual(
      [
        "ptyreaper_build_info",
        "ptyreaper_client_evidence_available",
        "ptyreaper_clock_steps_total",
        "ptyreaper_config_info",
        "ptyreaper_config_last_reload_success_timestamp_seconds",
        "ptyreaper_config_last_reload_successful",
        "ptyreaper_container_ptys",
        "ptyreaper_container_pty_share",
        "ptyreaper_docker_up",
        "ptyreaper_exec_sessions",
        "ptyreaper_exec_clients",
        "ptyreaper_http_auth_refusals_total",
        "ptyreaper_reclaim_seconds",
        "ptyreaper_last_poll_success_timestamp_seconds",
        "ptyreaper_master_only_ptys",
        "ptyreaper_poll_duration_seconds",
        "ptyreaper_poll_errors_total",
        "ptyreaper_process_reads_cut_total",
        "ptyreaper_pty_allocated",
        "ptyreaper_pty_max",
        "ptyreaper_pty_reserve",
        "ptyreaper_pty_usage_ratio",
        "ptyreaper_ptys",
        "ptyreaper_reap_failures_total",
        "ptyreaper_reap_refusals_total",
        "ptyreaper_reaped_sessions_total",
        "ptyreaper_runtime_enabled",
        "ptyreaper_runtime_up",
        "ptyreaper_scan_info",
        "ptyreaper_scan_passes_cut_total",
        "ptyreaper_scans_total",
        "ptyreaper_signal_info",
        "ptyreaper_web_config_reload_failures_total",
        "ptyreaper_would_reap_sessions_total",
      ].sort(),
    );
  });

  it("starts every labelled counter and gauge at 0 for every known label value and runtime", async () => {
    const m = metrics();
    expect(await series(m, "ptyreaper_reaped_sessions_total")).toEqual(perRuntime("reason", REASONS));
    expect(await series(m, "ptyreaper_would_reap_sessions_total")).toEqual(perRuntime("reason", REASONS));
    expect(await series(m, "ptyreaper_exec_clients")).toEqual(perRuntime("client", CLIENTS));
    expect(await series(m, "ptyreaper_reap_failures_total")).toEqual(new Map(RUNTIMES.map((r) => [`runtime=${r}`, 0])));
    expect(await series(m, "ptyreaper_reap_refusals_total")).toEqual(perRuntime("reason", REFUSAL_REASONS));
    // The histogram too: increase() of its buckets and count works from the first reclaim of each runtime.
    const reclaim = await series(m, "ptyreaper_reclaim_seconds");
    for (const runtime of RUNTIMES) expect(reclaim.get(`ptyreaper_reclaim_seconds_count{runtime=${runtime}}`)).toBe(0);
    expect([...(await series(m, "ptyreaper_poll_errors_total")).keys()]).toEqual(POLL_STAGES.map((s) => `stage=${s}`));
    expect(await series(m, "ptyreaper_ptys")).toEqual(
      new Map([
        ["owner=exec", 0],
        ["owner=container", 0],
        ["owner=host", 0],
        ["owner=unattributed", 0],
      ]),
    );
    expect(await series(m, "ptyreaper_exec_sessions")).toEqual(perRuntime("state", STATES));
    expect(await value(m, "ptyreaper_docker_up")).toBe(0);
    expect(await value(m, "ptyreaper_last_poll_success_timestamp_seconds")).toBe(0);
    expect((await series(m, "ptyreaper_container_ptys")).size).toBe(0);
  });

  it("reports build info as 1 with the version label", async () => {
    expect(await series(metrics(), "ptyreaper_build_info")).toEqual(new Map([["version=1.2.3", 1]]));
  });

  it("sets pty gauges, owners, per-container counts and session states from a snapshot", async () => {
    const web = { id: "a".repeat(64), name: "web" };
    const db = { id: "b".repeat(64), name: "db" };
    const decisions = [makeDecision("active"), makeDecision("stale"), makeDecision("stale"), makeDecision("exempt")];
    const m = metrics();
    m.observeSnapshot(
      makeSnapshot({
        limits: { allocated: 9, max: 4096, reserve: 1024 },
        ptys: [
          makePty("exec", web),
          makePty("exec", web),
          makePty("container", web),
          makePty("exec", db),
          makePty("host"),
          makePty("host"),
          makePty("unattributed"),
        ],
        decisions,
        sessions: decisions.map((d) => ({ ...makeSessionFor("attached"), execId: d.execId })),
      }),
    );
    expect(await value(m, "ptyreaper_pty_allocated")).toBe(9);
    expect(await value(m, "ptyreaper_pty_max")).toBe(4096);
    expect(await value(m, "ptyreaper_pty_reserve")).toBe(1024);
    expect(await value(m, "ptyreaper_pty_usage_ratio")).toBeCloseTo(9 / 3071, 12);
    expect(await series(m, "ptyreaper_ptys")).toEqual(
      new Map([
        ["owner=exec", 3],
        ["owner=container", 1],
        ["owner=host", 2],
        ["owner=unattributed", 1],
      ]),
    );
    expect(await series(m, "ptyreaper_container_ptys")).toEqual(
      new Map([
        [`container_id=${web.id},container_name=web,runtime=docker`, 3],
        [`container_id=${db.id},container_name=db,runtime=docker`, 1],
      ]),
    );
    // Each session counted under its decision's state and its own runtime.
    expect(await series(m, "ptyreaper_exec_sessions")).toEqual(
      perRuntime("state", STATES, { "docker/active": 1, "docker/stale": 2, "docker/exempt": 1 }),
    );
  });

  it("labels sessions and container ptys with their runtime, an unclaimed container's as unknown", async () => {
    const m = metrics();
    const pod = { id: "1".repeat(64), name: "team-a/web-0/app" };
    const box = { id: "2".repeat(64), name: "toolbox" };
    const stray = { id: "3".repeat(64), name: null };
    const snapshot = makeSnapshot({
      ptys: [
        { ...makePty("exec", pod), runtime: "containerd" },
        { ...makePty("exec", box), runtime: "podman" },
        { ...makePty("container", stray), runtime: null },
      ],
    });
    const inPod = { ...makeSessionFor("gone"), runtime: "containerd" as const };
    const inBox = { ...makeSessionFor("attached"), runtime: "podman" as const };
    const docker = makeSessionFor("unknown");
    snapshot.inventory.sessions.push(inPod, inBox, docker);
    snapshot.decisions.push(makeDecision("stale", inPod.execId), makeDecision("active", inBox.execId), makeDecision("idle", docker.execId));
    m.observeSnapshot(snapshot);
    expect(await series(m, "ptyreaper_container_ptys")).toEqual(
      new Map([
        [`container_id=${pod.id},container_name=team-a/web-0/app,runtime=containerd`, 1],
        [`container_id=${box.id},container_name=toolbox,runtime=podman`, 1],
        [`container_id=${stray.id},container_name=,runtime=unknown`, 1],
      ]),
    );
    expect(await series(m, "ptyreaper_exec_sessions")).toEqual(
      perRuntime("state", STATES, { "containerd/stale": 1, "podman/active": 1, "docker/idle": 1 }),
    );
    expect(await series(m, "ptyreaper_exec_clients")).toEqual(
      perRuntime("client", CLIENTS, { "containerd/gone": 1, "podman/attached": 1, "docker/unknown": 1 }),
    );
    m.observeSnapshot(makeSnapshot({}));
    expect(await series(m, "ptyreaper_exec_sessions")).toEqual(perRuntime("state", STATES));
  });

  it("deletes the series of containers that vanished and of renamed containers", async () => {
    const keep = { id: "c".repeat(64), name: "keep" };
    const gone = { id: "d".repeat(64), name: "vanished-container" };
    const m = metrics();
    m.observeSnapshot(makeSnapshot({ ptys: [makePty("exec", keep), makePty("exec", gone)] }));
    expect((await series(m, "ptyreaper_container_ptys")).size).toBe(2);

    m.observeSnapshot(makeSnapshot({ ptys: [makePty("exec", { ...keep, name: "renamed" })] }));
    expect(await series(m, "ptyreaper_container_ptys")).toEqual(new Map([[`container_id=${keep.id},container_name=renamed,runtime=docker`, 1]]));
    const { body } = await m.exposition();
    expect(body).not.toContain("vanished-container");
    expect(body).not.toContain('container_name="keep"');

    m.observeSnapshot(makeSnapshot({ ptys: [makePty("host")] }));
    expect((await series(m, "ptyreaper_container_ptys")).size).toBe(0);
  });

  it("resets owner and state counts to 0 when they disappear from the next snapshot", async () => {
    const m = metrics();
    m.observeSnapshot(makeSnapshot({ ptys: [makePty("host")], decisions: [makeDecision("idle")] }));
    m.observeSnapshot(makeSnapshot({}));
    expect(await value(m, "ptyreaper_ptys", "owner=host")).toBe(0);
    expect(await value(m, "ptyreaper_exec_sessions", "runtime=docker,state=idle")).toBe(0);
  });

  it("labels a container whose name is unknown with an empty name, and takes a later pty's name", async () => {
    const id = "e".repeat(64);
    const m = metrics();
    m.observeSnapshot(makeSnapshot({ ptys: [makePty("container", { id, name: null }), makePty("exec", { id, name: "late" })] }));
    expect(await series(m, "ptyreaper_container_ptys")).toEqual(new Map([[`container_id=${id},container_name=late,runtime=docker`, 2]]));
    m.observeSnapshot(makeSnapshot({ ptys: [makePty("container", { id, name: null })] }));
    expect(await series(m, "ptyreaper_container_ptys")).toEqual(new Map([[`container_id=${id},container_name=,runtime=docker`, 1]]));
  });

  it.each([
    { allocated: 0, max: 4096, reserve: 1024, ratio: 0 },
    // 3071 held: the next container pty is refused (devpts_new_index), so that is 100%
    { allocated: 3071, max: 4096, reserve: 1024, ratio: 1 },
    { allocated: 3072, max: 4096, reserve: 1024, ratio: 3072 / 3071 },
    { allocated: 4000, max: 4096, reserve: 1024, ratio: 4000 / 3071 },
    { allocated: 5, max: 11, reserve: 0, ratio: 0.5 },
    // capacity 0: saturated, reported as 1 (never NaN or +Inf)
    { allocated: 0, max: 1025, reserve: 1024, ratio: 1 },
    { allocated: 0, max: 1024, reserve: 1024, ratio: 1 },
    { allocated: 7, max: 1024, reserve: 1024, ratio: 1 },
    { allocated: 7, max: 100, reserve: 1024, ratio: 1 },
  ])("usage ratio of $allocated / ($max - $reserve - 1) is $ratio", async ({ allocated, max, reserve, ratio }) => {
    const m = metrics();
    m.observeSnapshot(makeSnapshot({ limits: { allocated, max, reserve } }));
    const got = await value(m, "ptyreaper_pty_usage_ratio");
    expect(got).toBeCloseTo(ratio, 12);
    expect(Number.isFinite(got)).toBe(true);
  });

  it("ptyUsageRatio is finite for every capacity", () => {
    expect(ptyUsageRatio(0, 0)).toBe(1);
    expect(ptyUsageRatio(10, 0)).toBe(1);
    expect(ptyUsageRatio(10, 20)).toBe(0.5);
  });

  it("counts reaps, dry-run reaps, failures and refusals by reason and runtime", async () => {
    const m = metrics();
    m.reaped("idle", "docker");
    m.reaped("idle", "docker");
    m.reaped("idle", "podman");
    m.reaped("pressure", "containerd");
    m.wouldReap("max_age", "docker");
    m.wouldReap("orphaned", "containerd");
    m.reaped("orphaned", "docker");
    m.reapFailed("docker");
    m.reapFailed("containerd");
    m.reapFailed("containerd");
    m.reapRefused("container_main", "podman");
    expect(await series(m, "ptyreaper_reaped_sessions_total")).toEqual(
      perRuntime("reason", REASONS, { "docker/idle": 2, "podman/idle": 1, "containerd/pressure": 1, "docker/orphaned": 1 }),
    );
    expect(await series(m, "ptyreaper_would_reap_sessions_total")).toEqual(
      perRuntime("reason", REASONS, { "docker/max_age": 1, "containerd/orphaned": 1 }),
    );
    expect(await series(m, "ptyreaper_reap_failures_total")).toEqual(
      new Map([
        ["runtime=docker", 1],
        ["runtime=containerd", 2],
        ["runtime=cri-o", 0],
        ["runtime=podman", 0],
      ]),
    );
    expect(await series(m, "ptyreaper_reap_refusals_total")).toEqual(perRuntime("reason", REFUSAL_REASONS, { "podman/container_main": 1 }));
  });

  it("records poll durations in the histogram and the last success time in seconds", async () => {
    const m = metrics();
    m.pollSucceeded(0.003, 1_700_000_000_500);
    m.pollSucceeded(2, 1_700_000_010_250);
    m.pollSucceeded(-1, 1_700_000_020_000); // clock stepped back: counted in the lowest bucket
    const h = await series(m, "ptyreaper_poll_duration_seconds");
    expect(h.get("ptyreaper_poll_duration_seconds_count{}")).toBe(3);
    expect(h.get("ptyreaper_poll_duration_seconds_sum{}")).toBeCloseTo(2.003, 9);
    expect(h.get("ptyreaper_poll_duration_seconds_bucket{le=0.001}")).toBe(1);
    expect(h.get("ptyreaper_poll_duration_seconds_bucket{le=0.005}")).toBe(2);
    expect(h.get("ptyreaper_poll_duration_seconds_bucket{le=1}")).toBe(2);
    expect(h.get("ptyreaper_poll_duration_seconds_bucket{le=2.5}")).toBe(3);
    expect(h.get("ptyreaper_poll_duration_seconds_bucket{le=10}")).toBe(3);
    expect(await value(m, "ptyreaper_last_poll_success_timestamp_seconds")).toBe(1_700_000_020);
  });

  it("counts exec sessions by client state, a session without one as unknown, and resets them each snapshot", async () => {
    const m = metrics();
    const snapshot = makeSnapshot({});
    const base = makeSessionFor("attached");
    snapshot.inventory.sessions.push(base, makeSessionFor("gone"), makeSessionFor("gone"), makeSessionFor("unknown"), {
      ...base,
      execId: "no-client",
      client: undefined,
    });
    m.observeSnapshot(snapshot);
    expect(await series(m, "ptyreaper_exec_clients")).toEqual(
      perRuntime("client", CLIENTS, { "docker/attached": 1, "docker/gone": 2, "docker/unknown": 2 }),
    );
    m.observeSnapshot(makeSnapshot({}));
    expect(await series(m, "ptyreaper_exec_clients")).toEqual(perRuntime("client", CLIENTS));
  });

  it("records the time to reclaim in seconds by runtime, a negative one (clock step) as 0", async () => {
    const m = metrics();
    m.reclaimed(140, "docker");
    m.reclaimed(-3, "docker");
    m.reclaimed(Number.NaN, "docker");
    m.reclaimed(40, "containerd");
    const h = await series(m, "ptyreaper_reclaim_seconds");
    expect(h.get("ptyreaper_reclaim_seconds_count{runtime=docker}")).toBe(2);
    expect(h.get("ptyreaper_reclaim_seconds_bucket{le=10,runtime=docker}")).toBe(1);
    expect(h.get("ptyreaper_reclaim_seconds_bucket{le=120,runtime=docker}")).toBe(1);
    expect(h.get("ptyreaper_reclaim_seconds_bucket{le=180,runtime=docker}")).toBe(2);
    expect(h.get("ptyreaper_reclaim_seconds_count{runtime=containerd}")).toBe(1);
    expect(h.get("ptyreaper_reclaim_seconds_bucket{le=30,runtime=containerd}")).toBe(0);
    expect(h.get("ptyreaper_reclaim_seconds_bucket{le=60,runtime=containerd}")).toBe(1);
    expect(h.get("ptyreaper_reclaim_seconds_count{runtime=podman}")).toBe(0);
  });

  it("has histogram buckets from 1 ms to 10 s", async () => {
    const h = await series(metrics(), "ptyreaper_poll_duration_seconds");
    const bounds = [...h.keys()]
      .map((k) => /le=([^}]+)/.exec(k)?.[1])
      .filter((b): b is string => b !== undefined && b !== "+Inf")
      .map(Number);
    expect(Math.min(...bounds)).toBe(0.001);
    expect(Math.max(...bounds)).toBe(10);
  });

  it("counts poll errors by stage", async () => {
    const m = metrics();
    m.pollFailed("policy");
    m.pollFailed("policy");
    m.pollFailed("scan");
    const s = await series(m, "ptyreaper_poll_errors_total");
    expect(s.get("stage=policy")).toBe(2);
    // Docker down is not a failed cycle (it is ptyreaper_docker_up 0); stage "docker" counts only a
    // step that threw while publishing Docker's state, so nothing here moves it.
    expect(s.get("stage=docker")).toBe(0);
    expect(s.get("stage=scan")).toBe(1);
    expect(s.get("stage=reap")).toBe(0);
  });

  it("labels the scan reader in use, one series, and counts cut passes", async () => {
    const m = metrics();
    m.setScanReader("js", "PTYREAPER_NATIVE_SCAN=0");
    m.setScanReader("native", "addon loaded");
    expect([...(await series(m, "ptyreaper_scan_info")).entries()]).toEqual([
      ["finder=none,finder_reason=,listing=all_pids,listing_reason=no pass yet,reader=native,reason=addon loaded", 1],
    ]);
    // A full pass's finder outcome joins the same series: used, or why not (the reader's labels stay).
    m.setScanFinder("bpf");
    expect([...(await series(m, "ptyreaper_scan_info")).entries()]).toEqual([
      ["finder=bpf,finder_reason=,listing=all_pids,listing_reason=no pass yet,reader=native,reason=addon loaded", 1],
    ]);
    m.setScanFinder("the kernel refused the BPF iterator: Operation not permitted");
    expect([...(await series(m, "ptyreaper_scan_info")).entries()]).toEqual([
      [
        "finder=none,finder_reason=the kernel refused the BPF iterator: Operation not permitted,listing=all_pids,listing_reason=no pass yet,reader=native,reason=addon loaded",
        1,
      ],
    ]);
    // Steady passes' pid listing joins it too: only new pids, or every pid and why.
    m.setScanListing("new_pids");
    expect([...(await series(m, "ptyreaper_scan_info")).keys()]).toEqual([
      "finder=none,finder_reason=the kernel refused the BPF iterator: Operation not permitted,listing=new_pids,listing_reason=,reader=native,reason=addon loaded",
    ]);
    m.setScanListing("not this process's pid namespace");
    expect([...(await series(m, "ptyreaper_scan_info")).keys()]).toEqual([
      "finder=none,finder_reason=the kernel refused the BPF iterator: Operation not permitted,listing=all_pids,listing_reason=not this process's pid namespace,reader=native,reason=addon loaded",
    ]);
    expect(await value(m, "ptyreaper_scan_passes_cut_total")).toBe(0);
    m.scanPassCut();
    m.scanPassCut();
    expect(await value(m, "ptyreaper_scan_passes_cut_total")).toBe(2);
  });

  it("counts cycles' scans by the pass their answer came from, both series from the start", async () => {
    const m = metrics();
    expect([...(await series(m, "ptyreaper_scans_total")).entries()].sort()).toEqual([
      ["pass=full", 0],
      ["pass=steady", 0],
    ]);
    m.scanned("full");
    m.scanned("steady");
    m.scanned("steady");
    expect([...(await series(m, "ptyreaper_scans_total")).entries()].sort()).toEqual([
      ["pass=full", 1],
      ["pass=steady", 2],
    ]);
  });

  it("labels the signal method in use, one series, with why for the kill(2) fallback", async () => {
    const m = metrics();
    m.setSignalMethod("pidfd");
    expect([...(await series(m, "ptyreaper_signal_info")).entries()]).toEqual([["method=pidfd", 1]]);
    m.setSignalMethod("kill", "disabled");
    expect([...(await series(m, "ptyreaper_signal_info")).entries()]).toEqual([["method=kill,reason=disabled", 1]]);
  });

  it("follows Docker up and down", async () => {
    const m = metrics();
    m.setDockerUp(true);
    expect(await value(m, "ptyreaper_docker_up")).toBe(1);
    m.setDockerUp(false);
    expect(await value(m, "ptyreaper_docker_up")).toBe(0);
  });

  it("Docker disabled: runtime_enabled 0 and no docker_up series at all (disabled is not down)", async () => {
    const m = metrics();
    m.setRuntimeEnabled("docker", false);
    m.setDockerUp(null);
    const body = (await m.exposition()).body;
    expect(body).toMatch(/^ptyreaper_runtime_enabled\{runtime="docker"\} 0$/m);
    expect(body).not.toMatch(/^ptyreaper_docker_up/m);
    m.setRuntimeEnabled("docker", true);
    m.setDockerUp(false);
    expect(await value(m, "ptyreaper_docker_up")).toBe(0);
    expect(await series(m, "ptyreaper_runtime_enabled")).toEqual(new Map([["runtime=docker", 1]]));
  });

  it("config info, reload success and failure", async () => {
    const m = metrics();
    m.configLoaded({ mode: "enforce", file: "/etc/ptyreaper/config.yaml" }, 1_700_000_000_000);
    expect(await series(m, "ptyreaper_config_info")).toEqual(new Map([["file=/etc/ptyreaper/config.yaml,mode=enforce", 1]]));
    expect(await value(m, "ptyreaper_config_last_reload_successful")).toBe(1);
    m.configReloadFailed();
    expect(await value(m, "ptyreaper_config_last_reload_successful")).toBe(0);
    expect(await value(m, "ptyreaper_config_last_reload_success_timestamp_seconds")).toBe(1_700_000_000);
    m.configLoaded({ mode: "dry-run", file: "" }, 1_700_000_100_000);
    expect(await series(m, "ptyreaper_config_info")).toEqual(new Map([["file=,mode=dry-run", 1]]));
    expect(await value(m, "ptyreaper_config_last_reload_successful")).toBe(1);
    expect(await value(m, "ptyreaper_config_last_reload_success_timestamp_seconds")).toBe(1_700_000_100);
  });

  it("serves the text format with its content type, HELP and TYPE lines", async () => {
    const m = metrics();
    m.observeSnapshot(makeSnapshot({ limits: { allocated: 12 } }));
    const { contentType, body } = await m.exposition();
    expect(contentType).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(body).toContain("# TYPE ptyreaper_pty_allocated gauge\nptyreaper_pty_allocated 12\n");
    expect(body).toContain("# TYPE ptyreaper_reaped_sessions_total counter\n");
    expect(body).toContain("# TYPE ptyreaper_poll_duration_seconds histogram\n");
    expect(body).toMatch(/^# HELP ptyreaper_pty_usage_ratio .*max - reserve - 1/m);
  });

  it("includes Node process metrics in its own registry unless disabled, minus the gauges promtool rejects", async () => {
    const withDefaults = new PtyreaperMetrics({ version: "x" });
    const names = (await withDefaults.registry.getMetricsAsJSON()).map((m) => m.name);
    expect(names).toContain("process_cpu_user_seconds_total");
    expect(names).toContain("process_resident_memory_bytes");
    expect(names).toContain("nodejs_active_handles");
    for (const dropped of DROPPED_DEFAULT_METRICS) expect(names).not.toContain(dropped);
    expect(names.filter((n) => !n.startsWith("ptyreaper_"))).not.toHaveLength(0);
    const without = (await metrics().registry.getMetricsAsJSON()).map((m) => m.name);
    expect(without.every((n) => n.startsWith("ptyreaper_"))).toBe(true);
  });

  describe("hostile container names", () => {
    const hostile = [
      'quo"te',
      "back\\slash",
      "new\nline",
      "tab\tand\rcarriage",
      '\\"\\n literally',
      "ünïcødé 名前 🐳 مرحبا",
      "x".repeat(10_000),
      "}\nptyreaper_pty_allocated 999\n#",
    ];

    it("escapes them so each reads back as the original (capped) name, one line per series", async () => {
      const m = metrics();
      const ptys = hostile.map((name, i) => makePty("exec", { id: String(i).padStart(64, "0"), name }));
      m.observeSnapshot(makeSnapshot({ limits: { allocated: 3 }, ptys }));
      const { body } = await m.exposition();
      const expected = hostile.map((n) => (n.length > LABEL_VALUE_MAX ? "x".repeat(LABEL_VALUE_MAX - 1) + "…" : n));
      expect(containerNamesIn(body).sort()).toEqual(expected.sort());
      // The injected line did not become a sample.
      expect(body.split("\n").filter((l) => l.startsWith("ptyreaper_pty_allocated "))).toEqual(["ptyreaper_pty_allocated 3"]);
    });

    it("renders quotes, backslashes and newlines with the text format's escapes", async () => {
      const m = metrics();
      m.observeSnapshot(makeSnapshot({ ptys: [makePty("exec", { id: "f".repeat(64), name: 'a"b\\c\nd' })] }));
      const { body } = await m.exposition();
      expect(body).toContain(`container_name="a\\"b\\\\c\\nd",runtime="docker"} 1\n`);
    });

    it("caps a 10 kB name at LABEL_VALUE_MAX code points", async () => {
      const m = metrics();
      m.observeSnapshot(makeSnapshot({ ptys: [makePty("exec", { id: "f".repeat(64), name: "🐳".repeat(5_000) })] }));
      const [name] = containerNamesIn((await m.exposition()).body);
      expect(Array.from(name ?? "")).toHaveLength(LABEL_VALUE_MAX);
      expect(name?.endsWith("🐳…")).toBe(true);
    });
  });
});

describe("ptyreaper_master_only_ptys", () => {
  const EXPECTED_ZERO = [
    "holder=containerd-shim,runtime=containerd",
    "holder=containerd-shim,runtime=docker",
    "holder=conmon,runtime=cri-o",
    "holder=conmon,runtime=podman",
    "holder=crio,runtime=cri-o",
    "holder=dockerd,runtime=docker",
    "holder=host,runtime=none",
    "holder=oci-runtime-exec,runtime=cri-o",
  ].sort();

  function masterOnlyPty(role: NonNullable<Pty["masterOnly"]>["role"], runtime: NonNullable<Pty["masterOnly"]>["runtime"]): Pty {
    const pty = makePty("unattributed");
    return {
      ...pty,
      slavePids: [],
      leaderPid: null,
      masterOnly: { role, runtime, containerId: null, holderPid: pty.masterPids[0] ?? 0, holderCommand: "x", sinceMs: 0 },
    };
  }

  it("starts at 0 for each runtime's usual holder", async () => {
    const got = await series(metrics(), "ptyreaper_master_only_ptys");
    expect([...got.keys()].sort()).toEqual(EXPECTED_ZERO);
    expect([...got.values()].every((v) => v === 0)).toBe(true);
  });

  it("counts master-only ptys by runtime and holder; an unusual pair lives while counted", async () => {
    const m = metrics();
    const ptys = [
      ...Array.from({ length: 3 }, () => masterOnlyPty("containerd-shim", "containerd")),
      masterOnlyPty("conmon", "podman"),
      masterOnlyPty("containerd-shim", "unknown"),
      makePty("host"),
    ];
    m.observeSnapshot(makeSnapshot({ ptys }));
    const got = await series(m, "ptyreaper_master_only_ptys");
    expect(got.get("holder=containerd-shim,runtime=containerd")).toBe(3);
    expect(got.get("holder=conmon,runtime=podman")).toBe(1);
    expect(got.get("holder=containerd-shim,runtime=unknown")).toBe(1);
    expect(got.get("holder=host,runtime=none")).toBe(0);

    m.observeSnapshot(makeSnapshot({ ptys: [] }));
    const after = await series(m, "ptyreaper_master_only_ptys");
    expect([...after.keys()].sort()).toEqual(EXPECTED_ZERO);
    expect([...after.values()].every((v) => v === 0)).toBe(true);
  });
});

describe("the HTTP surface's refusals", () => {
  it("counts auth refusals and refused web config reloads by a bounded reason, each present at 0 from the start", async () => {
    const m = metrics();
    expect([...(await series(m, "ptyreaper_http_auth_refusals_total")).keys()]).toEqual([
      "reason=missing",
      "reason=wrong",
      "reason=limited",
      "reason=busy",
      "reason=error",
    ]);
    expect([...(await series(m, "ptyreaper_web_config_reload_failures_total")).keys()]).toEqual([
      "reason=invalid",
      "reason=empty",
      "reason=drops_tls",
      "reason=drops_auth",
      "reason=needs_restart",
    ]);
    m.authRefused("limited");
    m.authRefused("limited");
    m.webConfigReloadFailed("empty");
    expect((await series(m, "ptyreaper_http_auth_refusals_total")).get("reason=limited")).toBe(2);
    expect((await series(m, "ptyreaper_web_config_reload_failures_total")).get("reason=empty")).toBe(1);
  });
});
