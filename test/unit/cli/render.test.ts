// The sessions table never lets a hostile string break or disguise a row; it shows each session's client.
import { describe, expect, it } from "vitest";
import { printable, renderSessionsTable } from "../../../src/cli/render.js";
import { sessionsReport } from "../../../src/domain/report.js";
import { makePty, makeSessionFor, makeSnapshot } from "../metrics/snapshot-factory.js";

describe("printable", () => {
  it.each([
    ["plain", "sh -l", "sh -l"],
    ["newline and tab", "a\nb\tc", "a\\x0ab\\x09c"],
    ["escape sequence", "\u001b[31mred", "\\x1b[31mred"],
    ["C1 control and DEL", "a\u0085b\u007f", "a\\x85b\\x7f"],
    ["right-to-left override", "ls \u202Egnp.exe", "ls \\u202egnp.exe"],
    ["isolates and marks", "\u2066x\u2069\u200f", "\\u2066x\\u2069\\u200f"],
    ["line separator", "a\u2028b", "a\\u2028b"],
    ["zero-width space (two names that look alike)", "web\u200b-1", "web\\u200b-1"],
    ["byte order mark", "\ufeffsh", "\\ufeffsh"],
    ["word joiner and soft hyphen", "a\u2060b\u00adc", "a\\u2060b\\xadc"],
    ["unicode text stays", "café 日本 🙂", "café 日本 🙂"],
  ])("%s", (_name, input, expected) => {
    expect(printable(input, 200)).toBe(expected);
  });

  it("cuts long values with an ellipsis", () => {
    expect(printable("x".repeat(50), 10)).toBe(`${"x".repeat(9)}…`);
  });
});

describe("the client of each session (CLIENT column, client field)", () => {
  const NOW = 1_700_000_000_000;
  const sessions = [makeSessionFor("attached"), makeSessionFor("gone"), makeSessionFor("unknown"), { ...makeSessionFor("attached"), client: undefined }];
  const ptys = [
    ...sessions.map((s) => ({ ...makePty("exec", { id: s.containerId, name: "web" }, s.index), execId: s.execId })),
    makePty("host"),
  ];
  const snapshot = makeSnapshot({ ptys, takenAtMs: NOW });
  snapshot.inventory.sessions.push(...sessions);

  it("is in the JSON as state, detail and, once gone, since when", () => {
    const report = sessionsReport(snapshot.inventory, snapshot.docker, NOW, { commandLine: "full" });
    expect(report.sessions.map((s) => s.client)).toEqual([
      { state: "attached", detail: "docker CLI pid 9" },
      { state: "gone", since: new Date(1_699_999_940_000).toISOString(), detail: "docker CLI pid 9 exited" },
      { state: "unknown", detail: "docker CLI pid 9" },
      { state: "unknown", detail: "client not observed" },
    ]);
  });

  it("is a column of the table: attached, gone for how long, unknown; - for a pty that is no session", () => {
    const lines = renderSessionsTable(snapshot.inventory, snapshot.docker, NOW).split("\n");
    expect(lines[1]).toMatch(/^CONTAINER\s+EXEC\s+PID\s+TTY\s+IDLE\s+OUT-IDLE\s+AGE\s+OWNER\s+CLIENT\s+COMMAND$/);
    const cell = (execId: string): string | undefined => lines.find((l) => l.includes(execId.slice(0, 12)))?.split(/\s{2,}/)[8];
    expect(sessions.map((s) => cell(s.execId))).toEqual(["attached", "gone 1m", "unknown", "unknown"]);
    expect(lines.find((l) => / host /.test(l))?.split(/\s{2,}/)[8]).toBe("-");
  });
});
