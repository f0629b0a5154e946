// What `ptyreaper install --root DIR` writes, run as the unit runs it: its ExecStart and Environment=, its launcher,
// the installed default config pointed at a real (private) containerd. The installed copy must do what the checkout does.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupAll } from "./support/index.js";
import { startPrivateContainerd, type PrivateContainerd } from "./support/containerd.js";
import { launchDaemon, MAIN, type RunningDaemon } from "./support/daemon.js";

const SHIPPED_SOCKET_LINE = "socket: /run/containerd/containerd.sock";

/** The unit's ExecStart split into words, and its Environment= assignments. */
function unitCommand(unit: string): { argv: string[]; env: Record<string, string> } {
  const lines = unit.split("\n");
  const execStart = lines.find((line) => line.startsWith("ExecStart="));
  if (!execStart) throw new Error("the installed unit has no ExecStart=");
  const env: Record<string, string> = {};
  for (const line of lines.filter((l) => l.startsWith("Environment="))) {
    for (const pair of line.slice("Environment=".length).split(/\s+/).filter(Boolean)) {
      const at = pair.indexOf("=");
      env[pair.slice(0, at)] = pair.slice(at + 1);
    }
  }
  return { argv: execStart.slice("ExecStart=".length).split(/\s+/), env };
}

describe("an installed copy, started by the unit's ExecStart under its root", { timeout: 180_000 }, () => {
  let root = "";
  let containerd: PrivateContainerd | null = null;
  let daemon: RunningDaemon | null = null;
  let launcher = "";
  let config = "";

  beforeAll(async () => {
    containerd = await startPrivateContainerd("install");
    root = mkdtempSync(join(tmpdir(), "ptyreaper-installed-"));
    const installed = spawnSync(process.execPath, [MAIN, "install", "--root", root], { encoding: "utf8", cwd: "/" });
    if (installed.status !== 0) throw new Error(`install --root failed: ${installed.stderr}`);
    // The operator's one edit: the installed default config, told where this host's containerd listens.
    config = join(root, "etc/ptyreaper/config.yaml");
    const shipped = readFileSync(config, "utf8");
    if (!shipped.includes(SHIPPED_SOCKET_LINE)) throw new Error(`the shipped config has no "${SHIPPED_SOCKET_LINE}"`);
    writeFileSync(config, shipped.replace(SHIPPED_SOCKET_LINE, `socket: ${containerd.socket}`));

    const { argv, env } = unitCommand(readFileSync(join(root, "etc/systemd/system/ptyreaper.service"), "utf8"));
    // Host paths in ExecStart are read under the root; the listener and mode as a drop-in would set them.
    const [binary, ...args] = argv.map((word) => (word.startsWith("/") ? join(root, word) : word));
    launcher = binary as string;
    daemon = await launchDaemon(launcher, args, { ...env, PTYREAPER_LISTEN: "127.0.0.1:0", PTYREAPER_MODE: "dry-run" });
    await daemon.cycles(1);
  }, 180_000);

  afterAll(async () => {
    await daemon?.stop();
    await containerd?.destroy();
    await cleanupAll();
    if (root) rmSync(root, { recursive: true, force: true });
  }, 120_000);

  it("serves metrics with containerd up and signals through pidfds", async () => {
    const d = daemon as RunningDaemon;
    expect(await d.metric("ptyreaper_runtime_up", { runtime: "containerd" })).toBe(1);
    expect(await d.metric("ptyreaper_signal_info", { method: "pidfd" })).toBe(1);
    expect(await d.metric("ptyreaper_scan_info", { reader: "native" })).toBe(1);
    expect(d.logs().filter((l) => typeof l.msg === "string" && /not built|is missing/.test(l.msg))).toEqual([]);
  });

  it("answers `sessions` and `sessions --json` through the installed launcher, with containerd available", () => {
    const json = spawnSync(launcher, ["sessions", "--json", "--config", config], { encoding: "utf8", cwd: "/" });
    expect(json.stderr).toBe("");
    expect(json.status).toBe(0);
    expect(JSON.parse(json.stdout)).toHaveProperty("ptys");
    const table = spawnSync(launcher, ["sessions", "--config", config], { encoding: "utf8", cwd: "/" });
    expect(table.stderr).toBe("");
    expect(table.stdout.split("\n")[0]).toMatch(/containerd: available/);
  });

  it("has the BPF finder installed and `sessions` loads it (libbpf and clang are on the test host)", () => {
    const trace = join(root, "sessions.strace");
    const result = spawnSync("strace", ["-f", "-e", "trace=bpf", "-o", trace, launcher, "sessions", "--json", "--config", config], {
      encoding: "utf8",
      cwd: "/",
    });
    expect(result.status).toBe(0);
    expect(readFileSync(join(root, "usr/local/lib/ptyreaper/install-record.json"), "utf8")).toContain('"bpfFinder": "installed"');
    expect(readFileSync(trace, "utf8")).toMatch(/bpf\(BPF_PROG_LOAD/);
  });

  it("runs `--version` from the root it was written under", () => {
    const result = spawnSync(launcher, ["--version"], { encoding: "utf8", cwd: "/" });
    expect(result.stdout).toMatch(/^ptyreaper \S+ \(revision \S+\)\n$/);
    expect(result.status).toBe(0);
  });

  it("names a file lost from the installed copy and says to reinstall", () => {
    const lib = join(root, "usr/local/lib/ptyreaper");
    const proto = join(lib, "proto/containerd/tasks.proto");
    const saved = readFileSync(proto);
    rmSync(proto);
    try {
      const result = spawnSync(launcher, ["sessions", "--json", "--config", config], { encoding: "utf8", cwd: "/" });
      expect(result.stderr).toContain(`${proto} is missing from this installed copy: reinstall it`);
      expect(result.status).not.toBe(0);
    } finally {
      writeFileSync(proto, saved);
    }
  });
});
