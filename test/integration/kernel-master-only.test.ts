// On the real kernel: a host process that opened a pty and closed its slave is master-only after the grace (holder `host`); opening the slave again clears it.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { SessionsReport } from "../../src/domain/report.js";
import { cleanupAll, isAlive, python3, startHelper, waitFor } from "./support/index.js";
import { MAIN, startDaemon, type RunningDaemon } from "./support/daemon.js";

// Opens a pty, closes the slave and reports; then "open" reopens the slave (and holds it), "close" drops it.
// Exits when its stdin closes, so it never outlives the test run.
const MASTER_ONLY_PY = `
import json, os, sys
master, slave = os.openpty()
path = os.ttyname(slave)
st = os.fstat(slave)
os.close(slave)
print(json.dumps({"index": int(path.rsplit("/", 1)[1]), "path": path, "devptsDev": "%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev))}), flush=True)
held = None
for line in sys.stdin:
    if line.strip() == "open":
        held = os.open(path, os.O_RDWR | os.O_NOCTTY)
        print("opened", flush=True)
    elif line.strip() == "close":
        os.close(held)
        held = None
        print("closed", flush=True)
`;

const GRACE_S = 3;
const dir = mkdtempSync(join(tmpdir(), "ptyreaper-master-only-"));
let daemon: RunningDaemon | null = null;
afterAll(async () => {
  try {
    await daemon?.stop();
  } finally {
    await cleanupAll();
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

// Docker and the other runtimes off: nothing here can become a session; dry-run all the same.
const CONFIG = `pollInterval: 1s
masterOnlyGrace: ${GRACE_S}s
docker: { enabled: false }
runtimes: { containerd: { enabled: false }, podman: { enabled: false } }
reaper: { mode: dry-run }
commandLine: full
`;

interface Holder {
  pid: number;
  key: { index: number; devptsDev: string };
  say(command: "open" | "close"): Promise<void>;
}

async function masterOnlyHolder(): Promise<Holder> {
  const { child, pid, first, lines } = await startHelper(python3(), ["-c", MASTER_ONLY_PY], "master-only pty holder");
  const key = JSON.parse(first) as { index: number; devptsDev: string };
  return {
    pid,
    key,
    async say(command) {
      child.stdin?.write(`${command}\n`);
      const reply = await lines.next();
      expect(reply.value).toBe(command === "open" ? "opened" : "closed");
    },
  };
}

type ReportPty = SessionsReport["ptys"][number];

async function ptyIn(d: RunningDaemon, holder: Holder): Promise<{ report: SessionsReport; pty: ReportPty | undefined }> {
  const { status, body } = await d.get("/sessions");
  expect(status).toBe(200);
  const report = JSON.parse(body) as SessionsReport;
  return { report, pty: report.ptys.find((p) => p.index === holder.key.index && p.devptsDev === holder.key.devptsDev) };
}

/** Waits until a cycle taken after `afterMs` (wall time) shows the holder's pty as `check` wants. */
async function cycleShowing(
  d: RunningDaemon,
  holder: Holder,
  afterMs: number,
  check: (pty: ReportPty | undefined) => boolean,
  what: string,
): Promise<ReportPty | undefined> {
  return waitFor(
    async () => {
      const { report, pty } = await ptyIn(d, holder);
      return Date.parse(report.takenAt) > afterMs && check(pty) ? { pty } : null;
    },
    30_000,
    what,
  ).then((found) => found.pty);
}

describe("master-only on the real kernel, through the real daemon", () => {
  it("a host process holding only the master is master-only after the grace, holder host; reopening the slave clears it", async () => {
    const holder = await masterOnlyHolder();
    daemon = await startDaemon(CONFIG);

    // Seen, held only by the master, but not named before the grace has passed.
    const early = await cycleShowing(daemon, holder, 0, (p) => p !== undefined, "the daemon to see the pty");
    expect(early?.masterPids).toEqual([holder.pid]);
    expect(early?.slavePids).toEqual([]);
    expect(early?.masterOnly, "the daemon's first look: inside the grace").toBeNull();
    const firstSeenBy = Date.now();

    const named = await cycleShowing(
      daemon,
      holder,
      firstSeenBy + GRACE_S * 1000,
      (p) => p?.masterOnly !== null && p?.masterOnly !== undefined,
      "the pty to be named master-only",
    );
    expect(named).toMatchObject({ owner: "host", containerId: null, masterPids: [holder.pid], slavePids: [] });
    expect(named?.masterOnly).toMatchObject({ holder: "host", runtime: "none", containerId: null, holderPid: holder.pid });
    expect(named?.masterOnly?.holderCommand).toContain("python3");
    expect(named?.masterOnly?.sinceSeconds).toBeGreaterThanOrEqual(GRACE_S);
    expect(await daemon.metric("ptyreaper_master_only_ptys", { runtime: "none", holder: "host" })).toBeGreaterThanOrEqual(1);

    // The slave held again: no longer master-only, at the next cycle.
    await holder.say("open");
    const reopenedAt = Date.now();
    const cleared = await cycleShowing(
      daemon,
      holder,
      reopenedAt,
      (p) => p !== undefined && p.masterOnly === null,
      "reopening the slave to clear master-only",
    );
    expect(cleared?.slavePids).toEqual([holder.pid]);

    // Closed again: its time starts anew, so not named before a full grace.
    await holder.say("close");
    const closedAt = Date.now();
    const again = await cycleShowing(
      daemon,
      holder,
      closedAt,
      (p) => p !== undefined && p.slavePids.length === 0,
      "a cycle with the slave closed again",
    );
    expect(again?.masterOnly).toBeNull();
    await cycleShowing(
      daemon,
      holder,
      closedAt + GRACE_S * 1000,
      (p) => p?.masterOnly?.holder === "host",
      "the pty named master-only again after a new grace",
    );

    // Never targeted: nothing would be reaped, and the holder lives.
    expect(await daemon.metric("ptyreaper_would_reap_sessions_total")).toBe(0);
    expect(isAlive(holder.pid)).toBe(true);
  }, 90_000);

  it("`ptyreaper sessions` (one look) names it at once, untimed, with its holder", async () => {
    const holder = await masterOnlyHolder();
    const configPath = join(dir, "cli.yaml");
    writeFileSync(configPath, "docker: { enabled: false }\nruntimes: { containerd: { enabled: false }, podman: { enabled: false } }\n");
    const json = spawnSync(process.execPath, [MAIN, "sessions", "--json", "--config", configPath], { encoding: "utf8", timeout: 30_000 });
    expect(json.status, json.stderr).toBe(0);
    const pty = (JSON.parse(json.stdout) as SessionsReport).ptys.find((p) => p.index === holder.key.index && p.devptsDev === holder.key.devptsDev);
    expect(pty?.masterOnly).toMatchObject({ holder: "host", runtime: "none", holderPid: holder.pid, sinceSeconds: null });

    const table = spawnSync(process.execPath, [MAIN, "sessions", "--config", configPath], { encoding: "utf8", timeout: 30_000 });
    expect(table.status, table.stderr).toBe(0);
    const row = table.stdout.split("\n").find((line) => line.includes(`pts/${holder.key.index}@${holder.key.devptsDev} `));
    expect(row).toMatch(new RegExp(`^-\\s+-\\s+${holder.pid}\\s+pts/${holder.key.index}@\\S+\\s+.*\\bmaster-only\\s+-\\s+host: .*python3`));
    expect(table.stdout).toMatch(/^note: \d+ pty\(s\) held only by a master/m);
  });
});
