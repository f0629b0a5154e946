// Hostile names and strings from containers, end to end on a private Docker engine: a 300-character container
// name, labels with quotes, newlines, control characters, unicode and 20,000 characters, exec arguments and a
// host process's argv with the same. They must come out escaped and intact in /metrics (promtool passes),
// in the logs (valid JSON lines), in /sessions (round-trip) and in the `sessions` table (one row per pty).
import { spawn, spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { python3, startContainer, waitFor } from "./support/index.js";
import { trackProcess } from "./support/track.js";
import { MAIN } from "./support/daemon.js";
import { execDetached } from "./support/dockerd.js";
import { usePrivateEngine } from "./support/private-engine.js";

const LONG_NAME = `ptyr-test-hostile.${"x_y-z.".repeat(48)}end`;
const HOSTILE = [
  "\u202eevil-rtl",
  `q"uote's`,
  "new\nline\r\n",
  "\u001b[31mred\u001b[0m\u0007\u001b]0;title\u0007",
  "c1:\u0085\u009b",
  "名前-🐳-مرحبا-\u2028",
  "} ptyreaper_pty_allocated 999\n# TYPE x counter",
  "tab\there\\back\\slash",
  "z".repeat(4_000),
];
const LABELS: Record<string, string> = {
  "ptyr.quote": `a"b'c\\d`,
  "ptyr.newline": "line1\nline2\r\n",
  "ptyr.control": "\u0007\u001b[2J\u007f\u0085",
  "ptyr.unicode": "名前🐳\u202e\u2028",
  "ptyr.long": "L".repeat(20_000),
  'we"ird\nkey': "value",
  // Not "true": must not exempt the container.
  "ptyreaper.exempt": "true\n",
};
const CONFIG = `
pollInterval: 1s
policy:
  idleTimeout: 10s
  minAge: 0s
reaper:
  grace: 200ms
log:
  level: debug
# The arguments' round trip through /sessions is checked byte for byte: show them whole.
commandLine: full
`;

/** C0 except newline, DEL and C1: what must never reach a terminal raw. */
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

/** Holds a host pty with a hostile argv, so its row in the table comes from /proc/PID/cmdline. */
async function hostileHostPtyHolder(): Promise<number> {
  // The program comes on stdin ("-"), so the hostile arguments lead the command line the table cuts at 60.
  const child = spawn(python3(), ["-", ...HOSTILE], { stdio: ["pipe", "pipe", "ignore"] });
  if (child.pid === undefined) throw new Error("could not start python3");
  child.stdin.end("import os, time\nm, s = os.openpty()\nprint(os.ttyname(s), flush=True)\ntime.sleep(1e6)\n");
  trackProcess(child.pid, "hostile host pty holder", child);
  let out = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  await waitFor(() => out.includes("/dev/pts/"), 10_000, "the hostile host pty");
  return child.pid;
}

describe("hostile names and strings from containers (private dockerd)", () => {
  const testbed = usePrivateEngine("hostile");

  it("escapes them in /metrics, logs, /sessions and the sessions table", async () => {
    await startContainer({ name: LONG_NAME, labels: LABELS });
    const reaped = await execDetached(testbed.engine.socket, LONG_NAME, ["sh", "-c", "exec sh", ...HOSTILE]);
    const listed = await execDetached(testbed.engine.socket, LONG_NAME, ["sh", "-c", "while :; do sleep 1000; done", ...HOSTILE], {
      env: { PTYREAPER_EXEMPT: "1" },
    });
    const hostPid = await hostileHostPtyHolder();
    const d = await testbed.startDaemon(CONFIG);
    // The hostile exempt label ("true\n") exempts nothing: the first session is reaped as idle.
    const reapLine = await waitFor(
      () => d.logs().find((l) => l.msg === "reaped exec session" && l.execId === reaped.execId),
      60_000,
      "the hostile session to be reaped",
    );

    // Logs: every stdout line was one JSON object, and strings come back exactly.
    expect(d.logs().filter((l) => l.unparsed)).toEqual([]);
    expect(reapLine.container).toBe(LONG_NAME);

    // /metrics: the exposition passes promtool; the long name is cut to 256 code points, marked with "…".
    const metrics = await d.get("/metrics");
    const promtool = spawnSync("promtool", ["check", "metrics"], { input: metrics.body, encoding: "utf8" });
    if (promtool.error) throw new Error(`promtool could not be run (${promtool.error.message}): install Debian's "prometheus"`);
    expect(`${promtool.stdout}${promtool.stderr}`).toBe("");
    expect(promtool.status).toBe(0);
    expect(metrics.body).toContain(`container_name="${LONG_NAME.slice(0, 255)}…"`);

    // /sessions: valid JSON, and the exec's arguments survive the round trip byte for byte.
    const report = JSON.parse((await d.get("/sessions")).body) as {
      sessions: { execId: string; containerName: string; command: string; state: string }[];
      ptys: { slavePids: number[]; owner: string }[];
    };
    const session = report.sessions.find((s) => s.execId === listed.execId);
    expect(session).toMatchObject({
      containerName: LONG_NAME,
      state: "exempt",
      command: ["sh", "-c", "while :; do sleep 1000; done", ...HOSTILE].join(" "),
    });
    expect(report.ptys.find((p) => p.slavePids.includes(hostPid))?.owner).toBe("host");

    // The table: no raw control character, and every line below the header is a whole row.
    const table = spawnSync(process.execPath, [MAIN, "sessions"], {
      encoding: "utf8",
      env: { ...process.env, DOCKER_HOST: testbed.engine.host },
      maxBuffer: 64 * 1024 * 1024,
    });
    expect(table.status, table.stderr).toBe(0);
    const lines = table.stdout.split("\n").filter((l) => l !== "");
    const badLines = lines.filter((l) => RAW_CONTROL.test(l));
    expect(badLines).toEqual([]);
    const header = lines.findIndex((l) => l.startsWith("CONTAINER"));
    expect(header).toBeGreaterThan(0);
    const rows = lines.slice(header + 1).filter((l) => !l.startsWith("("));
    for (const row of rows) expect(row, "a whole row").toMatch(/ pts\/\d+@\d+:\d+ /);
    expect(rows.filter((r) => r.includes(listed.execId.slice(0, 12)))).toHaveLength(1);
    const hostRows = rows.filter((r) => new RegExp(`^\\S+\\s+-\\s+${hostPid}\\s`).test(r));
    expect(hostRows).toHaveLength(1);
    expect(hostRows[0]).toContain(`q"uote's new\\x0aline`);
    const bidi = rows.filter((r) => r.includes("\u202e")).length;
    console.log(
      `hostile input: ${HOSTILE.length} hostile arguments, ${Object.keys(LABELS).length} hostile labels, a ${LONG_NAME.length}-character name; ` +
        `table rows ${rows.length}, rows still carrying a raw U+202E (bidi override, not a control character): ${bidi}`,
    );
  }, 120_000);
});
