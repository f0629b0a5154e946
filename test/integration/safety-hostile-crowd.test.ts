// The crowd, on the real kernel: 3,000 processes share one pty, each with 4 KB of argv (any pod can do this). The
// daemon, run with the deployed flags and environment, must see them all and stay under 80 % of the memory limit
// the shipped DaemonSet gives it.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from "../../src/systemd/install.js";
import { cleanupAll, python3, startHelper } from "./support/index.js";
import { launchDaemon, MAIN, type RunningDaemon } from "./support/daemon.js";

const HOLDERS = 3_000;
const ARGV_BYTES = 4_096;

// Each child is `sh -c 'read x' PAD` on the shared slave, killed with the driver (PR_SET_PDEATHSIG).
const CROWD_PY = `
import ctypes, os, subprocess, sys
n, pad = int(sys.argv[1]), "x" * int(sys.argv[2])
libc = ctypes.CDLL(None)
master, slave = os.openpty()
print(os.ttyname(slave), flush=True)
children = [subprocess.Popen(["/bin/sh", "-c", "read x", pad], stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                             preexec_fn=lambda: libc.prctl(1, 9)) for _ in range(n)]
print(len(children), flush=True)
sys.stdin.read()
`;

/** "192Mi" → bytes (the DaemonSet's quantities are binary units). */
function bytesOf(quantity: string): number {
  const match = /^(\d+)(Ki|Mi|Gi)?$/.exec(quantity);
  if (!match) throw new Error(`unexpected quantity ${quantity}`);
  return Number(match[1]) * { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 }[(match[2] ?? "Ki") as "Ki" | "Mi" | "Gi"];
}

function memoryLimit(): number {
  const ds = parseYaml(readFileSync(new URL("../../deploy/kubernetes/daemonset.yaml", import.meta.url), "utf8")) as {
    spec: { template: { spec: { containers: { name: string; resources: { limits: { memory: string } } }[] } } };
  };
  const container = ds.spec.template.spec.containers.find((c) => c.name === "ptyreaper");
  if (!container) throw new Error("daemonset.yaml has no ptyreaper container");
  return bytesOf(container.resources.limits.memory);
}

function peakRssBytes(pid: number): number {
  const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!hwm) throw new Error(`no VmHWM for ${pid}`);
  return Number(hwm[1]) * 1024;
}

describe("a crowd of pty holders with big argvs", { timeout: 240_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "ptyreaper-crowd-"));
  let daemon: RunningDaemon | null = null;
  afterAll(async () => {
    await daemon?.stop();
    await cleanupAll();
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it("is inventoried whole while the daemon's peak RSS stays under 80 % of the DaemonSet's memory limit", async () => {
    const crowd = await startHelper(python3(), ["-c", CROWD_PY, String(HOLDERS), String(ARGV_BYTES)], "pty crowd");
    const index = Number(/\/dev\/pts\/(\d+)$/.exec(crowd.first)?.[1]);
    // Spawning the crowd takes a while on a loaded host: wait for its count line, not a fixed time.
    const spawned = await Promise.race([
      crowd.lines.next(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the crowd did not start in 180 s")), 180_000).unref()),
    ]);
    expect(Number(spawned.value)).toBe(HOLDERS);

    const config = join(dir, "config.yaml");
    writeFileSync(
      config,
      "pollInterval: 1s\nreaper: {mode: dry-run}\nruntimes: {containerd: {enabled: false}, podman: {enabled: false}}\ndocker: {enabled: false}\n",
    );
    // As deployed: the image's and the unit's node flags and environment (one list, systemd/install.ts).
    daemon = await launchDaemon(process.execPath, [...DAEMON_NODE_FLAGS, MAIN, "run", "--config", config, "--listen", "127.0.0.1:0"], {
      ...DAEMON_ENV,
    });
    await daemon.cycles(15, 120_000);

    const report = JSON.parse((await daemon.get("/sessions")).body) as { ptys: { index: number; slavePids: number[] }[] };
    const crowded = report.ptys.filter((p) => p.index === index).sort((a, b) => b.slavePids.length - a.slavePids.length)[0];
    expect(crowded?.slavePids.length).toBeGreaterThanOrEqual(HOLDERS);

    const limit = memoryLimit();
    const peak = peakRssBytes(daemon.pid);
    process.stdout.write(`crowd: daemon peak RSS ${(peak / 2 ** 20).toFixed(1)} MiB of a ${(limit / 2 ** 20).toFixed(0)} MiB limit\n`);
    expect(peak).toBeLessThan(0.8 * limit);
  });
});
