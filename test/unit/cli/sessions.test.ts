// `ptyreaper sessions` picks its config as run does: --config, else the installed file, else defaults.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { CliIo } from "../../../src/cli/io.js";
import { sessionsCommand } from "../../../src/cli/sessions.js";

const PROC = new URL("../../fixtures/proc/mixed-host", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "ptyreaper-sessions-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function sessions(args: string[], defaultConfigPath: string | null): Promise<{ docker: { available: boolean; error: string | null } }> {
  let out = "";
  const io: CliIo = { stdout: (t) => (out += t), stderr: () => undefined, env: {}, cwd: dir, defaultConfigPath };
  expect(await sessionsCommand(["--json", ...args], io)).toBe(0);
  return JSON.parse(out) as { docker: { available: boolean; error: string | null } };
}

describe("sessions", () => {
  it("reads the installed config when no --config is given", async () => {
    const installed = join(dir, "installed.yaml");
    writeFileSync(installed, `procRoot: ${PROC}\ndocker: {enabled: false}\n`);
    expect((await sessions([], installed)).docker.error).toMatch(/disabled in config/);
  });

  it("--config wins over the installed config", async () => {
    const installed = join(dir, "installed2.yaml");
    writeFileSync(installed, `procRoot: ${PROC}\ndocker: {enabled: false}\n`);
    const mine = join(dir, "mine.yaml");
    writeFileSync(mine, `procRoot: ${PROC}\ndocker: {socket: ${join(dir, "no.sock")}, timeout: 500ms}\n`);
    const report = await sessions(["--config", mine], installed);
    expect(report.docker.available).toBe(false);
    expect(report.docker.error).toMatch(/no\.sock: socket not found/);
  });
});
