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
  const sessions = [
    makeSessionFor("attached"),
    makeSessionFor("gone"),
    makeSessionFor("unknown"),
    { ...makeSessionFor("attached"), client: undefined },
  ];
  const ptys = [...sessions.map((s) => ({ ...makePty("exec", { id: s.containerId, name: "web" }, s.index), execId: s.execId })), makePty("host")];
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

describe("a master-only pty (OWNER master-only, masterOnly field)", () => {
  const NOW = 1_700_000_000_000;
  const CID = "b".repeat(64);
  const shimHeld = {
    ...makePty("unattributed", { id: CID, name: "team-a/web-0/app" }),
    runtime: "containerd" as const,
    slavePids: [],
    leaderPid: null,
    leaderCommand: null,
    leaderStartedAtMs: null,
    masterOnly: {
      role: "containerd-shim" as const,
      runtime: "containerd" as const,
      containerId: CID,
      holderPid: 4242,
      holderCommand: "/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id x",
      sinceMs: NOW - 600_000,
    },
  };
  const snapshot = makeSnapshot({ ptys: [shimHeld, makePty("host")], takenAtMs: NOW });

  it("is a row naming the holder's pid, role and command, with the time since it was first seen so", () => {
    const lines = renderSessionsTable(snapshot.inventory, snapshot.docker, NOW).split("\n");
    const cells = lines.find((l) => l.includes("pts/") && l.includes("master-only"))?.split(/\s{2,}/);
    expect(cells?.[0]).toBe("containerd:team-a/web-0/app");
    expect(cells?.[2]).toBe("4242");
    expect(cells?.[6]).toBe("10m");
    expect(cells?.[7]).toBe("master-only");
    // Cut like any COMMAND cell.
    expect(cells?.[9]).toMatch(/^containerd-shim: \/usr\/bin\/containerd-shim-runc-v2 -namespac.*…$/);
    expect(lines.filter((l) => l.startsWith("note: 1 pty(s) held only by a master"))).toHaveLength(1);
  });

  it("is in the JSON with the holder's command shown as commandLine allows", () => {
    const report = sessionsReport(snapshot.inventory, snapshot.docker, NOW, { commandLine: "argv0" });
    expect(report.ptys[0]?.masterOnly).toEqual({
      holder: "containerd-shim",
      runtime: "containerd",
      containerId: CID,
      holderPid: 4242,
      holderCommand: "/usr/bin/containerd-shim-runc-v2",
      sinceSeconds: 600,
    });
    expect(report.ptys[1]?.masterOnly).toBeNull();
  });
});
