// `ptyreaper sessions` against a Docker socket that never answers, and one that is not there: the
// one-shot gives up after docker.timeout, says why in its report, and still lists the ptys.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startFakeDockerSocket } from "./support/fake-docker-socket.js";

const MAIN = new URL("../../dist/main.js", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "ptyreaper-cli-socket-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Report {
  docker: { available: boolean; error: string | null };
  pty: { allocated: number };
}

const run = promisify(execFile);

/** Runs the command as a child while this process keeps serving the fake socket; throws on a non-zero exit. */
async function sessions(socket: string): Promise<{ report: Report }> {
  const config = join(dir, "config.yaml");
  writeFileSync(config, `docker: {socket: ${socket}, timeout: 1s}\n`);
  const { stdout } = await run(process.execPath, [MAIN, "sessions", "--json", "--config", config], {
    encoding: "utf8",
    timeout: 60_000,
    maxBuffer: 64 << 20,
  });
  return { report: JSON.parse(stdout) as Report };
}

describe("ptyreaper sessions and a bad Docker socket", () => {
  it("a socket that accepts and never answers: gives up after docker.timeout, reports why, lists the ptys", async () => {
    const fake = await startFakeDockerSocket(join(dir, "hung.sock"), { mode: "hang" });
    try {
      const { report } = await sessions(join(dir, "hung.sock"));
      expect(report.docker).toEqual({ available: false, error: expect.stringMatching(/no answer from .*hung\.sock within 1000 ms/) as unknown });
      expect(report.pty.allocated).toBeGreaterThanOrEqual(0);
      expect(fake.acceptedConnections()).toBeGreaterThanOrEqual(1);
    } finally {
      await fake.close();
    }
  }, 60_000);

  it("no socket at all: one clear reason", async () => {
    const { report } = await sessions(join(dir, "missing.sock"));
    expect(report.docker.error).toMatch(/missing\.sock: socket not found \(is dockerd running\?\)/);
  });
});
