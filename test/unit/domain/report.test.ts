// The /sessions report shows as much of a command line as commandLine allows: exec arguments may hold secrets.
import { describe, expect, it } from "vitest";
import type { CommandLineDisplay } from "../../../src/config/types.js";
import { sessionsReport, shownCommand } from "../../../src/domain/report.js";
import type { ExecSession, Inventory } from "../../../src/domain/types.js";

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);

function inventoryWith(command: string): Inventory {
  const session: ExecSession = {
    execId: "e1",
    runtime: "docker",
    containerId: "c".repeat(64),
    containerName: "db-1",
    containerLabels: {},
    pid: 4242,
    startTicks: 1,
    pidNs: "4026532000",
    nsPid: 9,
    exemptByEnv: false,
    ptyKey: "0:50:3",
    devptsDev: "0:50",
    index: 3,
    holderPids: [4242],
    startedAtMs: NOW - 60_000,
    atimeMs: NOW - 30_000,
    mtimeMs: NOW - 20_000,
    command,
  };
  return {
    limits: { allocated: 1, max: 4096, reserve: 1024 },
    ptys: [],
    sessions: [session],
    discrepancy: { found: 1, allocated: 1, explanation: null },
    unreadablePids: [],
  };
}

describe("shownCommand", () => {
  it.each<[string, CommandLineDisplay, string | null]>([
    ["mysql -pS3cret -h db", "full", "mysql -pS3cret -h db"],
    ["mysql -pS3cret -h db", "argv0", "mysql"],
    ["mysql -pS3cret -h db", "off", null],
    ["/usr/bin/psql postgres://u:pw@db/x", "argv0", "/usr/bin/psql"],
    ["sh", "argv0", "sh"],
    ["  sh -c 'export TOKEN=x'", "argv0", "sh"],
    ["bash\t--rcfile /secret", "argv0", "bash"],
    ["", "argv0", ""],
  ])("%j shown as %s → %j", (command, display, expected) => {
    expect(shownCommand(command, display)).toBe(expected);
  });
});

describe("sessionsReport commandLine", () => {
  it.each<[CommandLineDisplay, string | null]>([
    ["full", "mysql -pS3cret db"],
    ["argv0", "mysql"],
    ["off", null],
  ])("%s: the session's command is %j, and the report says which setting made it", (commandLine, expected) => {
    const report = sessionsReport(inventoryWith("mysql -pS3cret db"), { available: true, error: null }, NOW, { commandLine });
    expect(report.commandLine).toBe(commandLine);
    expect(report.sessions[0]?.command).toBe(expected);
    if (commandLine !== "full") expect(JSON.stringify(report)).not.toContain("S3cret");
  });
});
