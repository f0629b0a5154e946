// commandLine end to end on a private Docker engine: a real exec session with a password in its arguments;
// GET /sessions shows only the program by default, the CLI run as root shows it whole.
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { startContainer, waitFor } from "./support/index.js";
import { MAIN } from "./support/daemon.js";
import { execDetached } from "./support/dockerd.js";
import { usePrivateEngine } from "./support/private-engine.js";
import type { SessionsReport } from "../../src/domain/report.js";

const SECRET = "S3cret-pw-4711";
const CMD = ["sh", "-c", "while :; do sleep 1000; done", `--password=${SECRET}`];
// Nothing is reaped here: the session is young and the test looks only at what is shown.
const CONFIG = "pollInterval: 1s\nreaper:\n  mode: dry-run\n";

describe("commandLine for /sessions (private dockerd)", () => {
  const testbed = usePrivateEngine("cmdline");

  it("GET /sessions shows argv0 by default and the secret nowhere; `sessions --json` shows it whole", async () => {
    await startContainer({ name: "cmdline" });
    const exec = await execDetached(testbed.engine.socket, "ptyr-test-cmdline", CMD);
    const d = await testbed.startDaemon(CONFIG);
    const report = await waitFor(
      async () => {
        const res = await d.get("/sessions");
        if (res.status !== 200) return null;
        const parsed = JSON.parse(res.body) as SessionsReport;
        return parsed.sessions.some((s) => s.execId === exec.execId) ? { parsed, body: res.body } : null;
      },
      30_000,
      "the exec session in /sessions",
    );
    expect(report.parsed.commandLine).toBe("argv0");
    expect(report.parsed.sessions.find((s) => s.execId === exec.execId)?.command).toBe("sh");
    expect(report.body).not.toContain(SECRET);
    expect(d.logs().some((l) => JSON.stringify(l).includes(SECRET))).toBe(false);

    const cli = spawnSync(process.execPath, [MAIN, "sessions", "--json"], {
      encoding: "utf8",
      env: { ...process.env, DOCKER_HOST: testbed.engine.host },
    });
    expect(cli.status, cli.stderr).toBe(0);
    const full = JSON.parse(cli.stdout) as SessionsReport;
    expect(full.commandLine).toBe("full");
    expect(full.sessions.find((s) => s.execId === exec.execId)?.command).toBe(CMD.join(" "));
  }, 120_000);

  it("commandLine: off shows null", async () => {
    await startContainer({ name: "cmdline-off" });
    const exec = await execDetached(testbed.engine.socket, "ptyr-test-cmdline-off", CMD);
    const d = await testbed.startDaemon(`${CONFIG}commandLine: off\n`);
    const session = await waitFor(
      async () => {
        const res = await d.get("/sessions");
        if (res.status !== 200) return null;
        return (JSON.parse(res.body) as SessionsReport).sessions.find((s) => s.execId === exec.execId) ?? null;
      },
      30_000,
      "the exec session in /sessions",
    );
    expect(session.command).toBeNull();
  }, 120_000);
});
