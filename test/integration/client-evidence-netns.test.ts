// Client evidence and network namespaces, on the real kernel with the real Docker engine and a private containerd:
// sock_diag lists only the reader's own namespace, so a daemon under `unshare -n` cannot see Docker's CLIs' connections
// (nor the engine's listener). It must say so once, in the log and as ptyreaper_client_evidence_available 0; on the
// host the metric is 1. containerd's CRI evidence reads FIFOs in /proc and needs sock_diag only to name containerd's
// process, which our own connection does from anywhere (an accepted socket lives in its client's namespace): 1 in both.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupAll, waitFor } from "./support/index.js";
import { startPrivateContainerd, type PrivateContainerd } from "./support/containerd.js";
import { launchDaemon, MAIN, readMetric, startDaemon, type RunningDaemon } from "./support/daemon.js";

const WARNING = /exec clients cannot be seen from here: they stay unknown and orphanGrace does not apply/;

describe("client evidence seen from another network namespace", { timeout: 180_000 }, () => {
  let containerd: PrivateContainerd | null = null;
  let dir = "";
  let yaml = "";
  const daemons: RunningDaemon[] = [];

  beforeAll(async () => {
    containerd = await startPrivateContainerd("netns");
    dir = mkdtempSync(join(tmpdir(), "ptyreaper-netns-"));
    // Dry-run: these daemons watch the whole host; they only observe.
    yaml = [
      "pollInterval: 1s",
      "reaper: {mode: dry-run}",
      "runtimes:",
      "  containerd:",
      "    enabled: true",
      `    socket: ${containerd.socket}`,
      "  podman: {enabled: false}",
      "",
    ].join("\n");
  }, 120_000);

  afterAll(async () => {
    for (const d of daemons) await d.stop();
    await containerd?.destroy();
    await cleanupAll();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it("in the host's namespace: available for Docker and containerd, and nothing said", async () => {
    const d = await startDaemon(yaml);
    daemons.push(d);
    await d.cycles(2);
    expect(await d.metric("ptyreaper_client_evidence_available", { runtime: "docker" })).toBe(1);
    expect(await d.metric("ptyreaper_client_evidence_available", { runtime: "containerd" })).toBe(1);
    expect(d.logs().filter((l) => WARNING.test(String(l.msg)))).toEqual([]);
  });

  it("under unshare -n: one warning for Docker however many cycles, and its metric 0; containerd's still 1", async () => {
    const config = join(dir, "config.yaml");
    writeFileSync(config, yaml);
    // The new namespace's loopback comes up so the daemon can listen; the test reads it from inside (nsenter).
    const d = await launchDaemon("unshare", [
      "-n",
      "sh",
      "-c",
      `ip link set lo up && exec "$0" "$@"`,
      process.execPath,
      MAIN,
      "run",
      "--config",
      config,
      "--listen",
      "127.0.0.1:0",
    ]);
    daemons.push(d);
    const metrics = (): string => {
      const read = `fetch(${JSON.stringify(`${d.baseUrl}/metrics`)}).then((r) => r.text()).then((t) => process.stdout.write(t))`;
      const out = spawnSync("nsenter", ["-t", String(d.pid), "-n", process.execPath, "-e", read], { encoding: "utf8", timeout: 20_000 });
      if (out.status !== 0) throw new Error(`reading ${d.baseUrl}/metrics inside the namespace failed: ${out.stderr}`);
      return out.stdout;
    };
    const cycles = (): number => readMetric(metrics(), "ptyreaper_poll_duration_seconds_count") ?? 0;
    // d.cycles() cannot reach this daemon's loopback: the same wait, through nsenter.
    const until = cycles() + 4;
    await waitFor(() => cycles() >= until, 60_000, "4 cycles of the daemon under unshare -n", 250);
    const text = metrics();
    expect(readMetric(text, "ptyreaper_runtime_up", { runtime: "docker" })).toBe(1);
    expect(readMetric(text, "ptyreaper_runtime_up", { runtime: "containerd" })).toBe(1);
    expect(readMetric(text, "ptyreaper_client_evidence_available", { runtime: "docker" })).toBe(0);
    expect(readMetric(text, "ptyreaper_client_evidence_available", { runtime: "containerd" })).toBe(1);
    const warnings = d.logs().filter((l) => WARNING.test(String(l.msg)));
    expect(warnings.map((l) => [l.runtime, l.reason])).toEqual([
      [
        "docker",
        "sock_diag does not show the server's end of /var/run/docker.sock: ptyreaper runs in another network namespace than the runtime (run it in the host's: --network host, hostNetwork: true)",
      ],
    ]);
  });
});
