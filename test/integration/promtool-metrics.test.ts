// The real /metrics exposition, hostile names included, checked by Prometheus' own `promtool check metrics`.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pino from "pino";
import { buildServer } from "../../src/http/server.js";
import { PtyreaperMetrics } from "../../src/metrics/metrics.js";
import { makeDecision, makePty, makeSnapshot } from "../unit/metrics/snapshot-factory.js";
import type { Snapshot } from "../../src/domain/snapshot.js";

const HOSTILE_NAMES = [
  'quote"in"name',
  "back\\slash\\",
  "new\nline\n",
  "tab\tcr\rnul\u0000del\u007f",
  "ünïcødé-名前-🐳-مرحبا-\u2028",
  "lone\uD800surrogate",
  "} ptyreaper_pty_allocated 999\n# TYPE x counter",
  "z".repeat(10_000),
];

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "ptyreaper-promtool-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `promtool check metrics` on a file; fails loudly when promtool is not installed. */
function promtoolCheck(file: string): { status: number; output: string } {
  const result = spawnSync("promtool", ["check", "metrics"], { input: readFileSync(file), encoding: "utf8" });
  if (result.error) {
    throw new Error(
      `promtool could not be run (${result.error.message}): install Debian's "prometheus" package (scripts/provision-test-host.sh does)`,
    );
  }
  return { status: result.status ?? -1, output: `${result.stdout}${result.stderr}` };
}

function realisticSnapshot(): Snapshot {
  const containers = HOSTILE_NAMES.map((name, i) => ({ id: i.toString(16).padStart(64, "a"), name }));
  const ptys = containers.flatMap((c, i) => [makePty("container", c), ...Array.from({ length: i + 1 }, () => makePty("exec", c))]);
  ptys.push(makePty("host"), makePty("host"), makePty("unattributed"));
  return makeSnapshot({
    limits: { allocated: ptys.length + 2, max: 4096, reserve: 1024 },
    ptys,
    decisions: [
      ...Array.from({ length: 5 }, () => makeDecision("active")),
      ...Array.from({ length: 3 }, () => makeDecision("idle")),
      ...Array.from({ length: 4 }, () => makeDecision("stale")),
      makeDecision("exempt"),
    ],
  });
}

async function scrape(metrics: PtyreaperMetrics): Promise<string> {
  const app = buildServer({
    exposition: () => metrics.exposition(),
    sessions: () => null,
    liveness: () => ({ ok: true, reason: "" }),
    readiness: () => ({ ok: true, reason: "" }),
    logger: pino({ level: "silent" }),
  });
  try {
    const res = await app.inject({ method: "GET", url: "/metrics" });
    expect(res.statusCode).toBe(200);
    return res.body;
  } finally {
    await app.close();
  }
}

describe("promtool check metrics", () => {
  it("is installed (this suite fails without it rather than skipping)", () => {
    const result = spawnSync("promtool", ["--version"], { encoding: "utf8" });
    expect(result.error, 'install Debian\'s "prometheus" package').toBeUndefined();
    expect(`${result.stdout}${result.stderr}`).toContain("promtool");
  });

  it("accepts the full exposition of a realistic snapshot with hostile container names, without lint complaints", async () => {
    const metrics = new PtyreaperMetrics({ version: '0.1.0-test+"quoted"' });
    metrics.setDockerUp(true);
    metrics.setRuntimeEnabled("docker", true);
    metrics.configLoaded({ mode: "dry-run", file: "/etc/ptyreaper/config.yaml" }, 1_700_000_000_000);
    metrics.configReloadFailed();
    metrics.observeSnapshot(realisticSnapshot());
    metrics.reaped("idle", "docker");
    metrics.reaped("pressure", "containerd");
    metrics.wouldReap("max_age", "podman");
    metrics.reapFailed("containerd");
    metrics.reapRefused("runtime", "cri-o");
    metrics.reclaimed(42, "podman");
    metrics.pollFailed("policy");
    metrics.setSignalMethod("kill", "no_kernel_support");
    for (const d of [0.0004, 0.003, 0.04, 0.2, 1.5, 12]) metrics.pollSucceeded(d, 1_700_000_000_000);

    const body = await scrape(metrics);
    const file = join(dir, "metrics.prom");
    writeFileSync(file, body);

    // The scrape really carries every hostile series and the default process metrics.
    expect(body.match(/^ptyreaper_container_ptys\{/gm)).toHaveLength(HOSTILE_NAMES.length);
    expect(body).toContain('container_name="quote\\"in\\"name"');
    expect(body).toMatch(/^process_resident_memory_bytes \d+/m);
    // Per-session series carry the runtime, every runtime present from the start.
    expect(body).toMatch(/^ptyreaper_reaped_sessions_total\{reason="pressure",runtime="containerd"\} 1$/m);
    expect(body).toMatch(/^ptyreaper_reaped_sessions_total\{reason="pressure",runtime="cri-o"\} 0$/m);
    expect(body).toMatch(/^ptyreaper_reclaim_seconds_count\{runtime="podman"\} 1$/m);
    expect(body).toMatch(/^ptyreaper_signal_info\{method="kill",reason="no_kernel_support"\} 1$/m);

    const { status, output } = promtoolCheck(file);
    expect(output.split("\n").filter((l) => l.includes("ptyreaper_"))).toEqual([]);
    expect(output).toBe("");
    expect(status).toBe(0);
  });

  it("accepts the exposition when containers have no pty capacity left (max <= reserve)", async () => {
    const metrics = new PtyreaperMetrics({ version: "0.1.0" });
    metrics.observeSnapshot(makeSnapshot({ limits: { allocated: 40, max: 1024, reserve: 1024 } }));
    const body = await scrape(metrics);
    expect(body).toMatch(/^ptyreaper_pty_usage_ratio 1$/m);
    const file = join(dir, "zero-capacity.prom");
    writeFileSync(file, body);
    const { status, output } = promtoolCheck(file);
    expect(output).toBe("");
    expect(status).toBe(0);
  });

  it("is sensitive: promtool rejects a broken exposition, so a pass above means something", () => {
    const file = join(dir, "broken.prom");
    writeFileSync(file, '# TYPE ptyreaper_bad counter\nptyreaper_bad{name="unterminated} 1\n');
    expect(promtoolCheck(file).status).not.toBe(0);
  });
});
