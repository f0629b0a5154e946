// The notifier against a real AF_UNIX datagram listener (python3), as systemd's notify socket would receive it.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import { createNotifier } from "../../src/systemd/notify.js";

// Receives like systemd: SO_PASSCRED to learn the sender's PID, and closes passed fds so
// systemd-notify's BARRIER=1 completes. Prints one JSON line per datagram.
const CHECKOUT = new URL("../../", import.meta.url).pathname;

const LISTENER = String.raw`
import json, os, socket, struct, sys
address = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind("\0" + address[1:] if address.startswith("@") else address)
print(json.dumps({"listening": True}), flush=True)
while True:
    data, anc, flags, addr = s.recvmsg(4096, socket.CMSG_SPACE(64 * 4) + socket.CMSG_SPACE(12))
    pid = None
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", payload[:12])[0]
        elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            for i in range(0, len(payload) - len(payload) % 4, 4):
                os.close(struct.unpack("i", payload[i:i + 4])[0])
    print(json.dumps({"data": data.decode(), "pid": pid}), flush=True)
`;

interface Datagram {
  data: string;
  pid: number | null;
}

class Listener {
  readonly received: Datagram[] = [];
  private waiters: (() => void)[] = [];
  private constructor(private readonly child: ChildProcessWithoutNullStreams) {}

  static async start(address: string): Promise<Listener> {
    const child = spawn("python3", ["-c", LISTENER, address]);
    const listener = new Listener(child);
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const lines = createInterface({ input: child.stdout });
    await new Promise<void>((resolve, reject) => {
      child.on("error", reject);
      child.on("exit", (code) => reject(new Error(`python3 listener exited (${code}): ${stderr}`)));
      lines.on("line", (line) => {
        const parsed = JSON.parse(line) as { listening?: boolean } & Datagram;
        if (parsed.listening) return resolve();
        listener.received.push({ data: parsed.data, pid: parsed.pid });
        for (const wake of listener.waiters.splice(0)) wake();
      });
    });
    return listener;
  }

  /** Waits until `count` datagrams have arrived (the test's own timeout bounds it). */
  async waitFor(count: number): Promise<Datagram[]> {
    while (this.received.length < count) await new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.received;
  }

  stop(): void {
    this.child.kill("SIGTERM");
  }
}

function requireTool(tool: string): void {
  const found = spawnSync("sh", ["-c", `command -v ${tool}`]).status === 0;
  if (!found) throw new Error(`${tool} is missing: install it (sudo bash scripts/provision-test-host.sh)`);
}

describe("notifier on a real notify socket", () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => {
    for (const cleanup of cleanups.splice(0)) cleanup();
  });

  it("sends READY=1, WATCHDOG=1 and STOPPING=1 from this process's own PID over a socket path (unix-dgram)", async () => {
    requireTool("python3");
    const dir = mkdtempSync(join(tmpdir(), "ptyreaper-notify-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const address = join(dir, "notify");
    const listener = await Listener.start(address);
    cleanups.push(() => listener.stop());

    const warnings: string[] = [];
    const notifier = createNotifier(
      { NOTIFY_SOCKET: address, WATCHDOG_USEC: "30000000", WATCHDOG_PID: String(process.pid) },
      { warn: (t) => warnings.push(t) },
    );
    notifier.ready("first cycle complete");
    notifier.watchdog();
    notifier.stopping();
    await notifier.flush();

    const received = await listener.waitFor(3);
    expect(warnings).toEqual([]);
    expect(received.map((d) => d.data)).toEqual(["READY=1\nSTATUS=first cycle complete", "WATCHDOG=1", "STOPPING=1"]);
    // NotifyAccess=main in the unit accepts only datagrams whose credentials name the main PID.
    expect(received.map((d) => d.pid)).toEqual([process.pid, process.pid, process.pid]);
  });

  it("reaches an abstract socket (@name) through systemd-notify", async () => {
    requireTool("python3");
    requireTool("systemd-notify");
    const address = `@ptyreaper-test-notify-${process.pid}`;
    const listener = await Listener.start(address);
    cleanups.push(() => listener.stop());

    const warnings: string[] = [];
    const notifier = createNotifier({ NOTIFY_SOCKET: address, WATCHDOG_USEC: "30000000" }, { warn: (t) => warnings.push(t) });
    notifier.ready();
    notifier.watchdog();
    notifier.stopping();
    await notifier.flush();

    const received = await listener.waitFor(6);
    // systemd-notify follows each message with BARRIER=1 and waits until it is read.
    expect(received.map((d) => d.data)).toEqual(["READY=1", "BARRIER=1", "WATCHDOG=1", "BARRIER=1", "STOPPING=1", "BARRIER=1"]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("NotifyAccess=all");
  });

  it("the daemon (dist/main.js run) sends READY=1 after its first cycle, WATCHDOG=1 from its cycles and STOPPING=1 on SIGTERM, from its own PID", async () => {
    requireTool("python3");
    const main = join(CHECKOUT, "dist", "main.js");
    if (!existsSync(main)) throw new Error("dist/main.js is missing: run `npm run build` (npm test does)");
    const dir = mkdtempSync(join(tmpdir(), "ptyreaper-notify-daemon-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const address = join(dir, "notify");
    const listener = await Listener.start(address);
    cleanups.push(() => listener.stop());
    // Docker disabled, so readiness depends only on the first cycle.
    const config = join(dir, "config.yaml");
    writeFileSync(config, "pollInterval: 1s\nlisten: 127.0.0.1:0\ndocker:\n  enabled: false\nlog:\n  level: warn\n");

    const daemon = spawn(process.execPath, [main, "run", "--config", config], {
      env: { PATH: process.env.PATH, NOTIFY_SOCKET: address, WATCHDOG_USEC: "10000000" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    daemon.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    daemon.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => daemon.on("exit", (code) => resolve(code)));
    cleanups.push(() => {
      if (daemon.exitCode === null) daemon.kill("SIGKILL");
    });

    // READY=1 and then at least two watchdog pings from two more cycles.
    await listener.waitFor(3);
    daemon.kill("SIGTERM");
    expect(await exited, output).toBe(0);
    const received = listener.received;
    const last = received[received.length - 1];
    expect(last?.data).toBe("STOPPING=1");
    const ready = received.findIndex((d) => d.data.startsWith("READY=1"));
    expect(ready, JSON.stringify(received)).toBeGreaterThanOrEqual(0);
    expect(received[ready]?.data).toBe("READY=1\nSTATUS=first cycle complete");
    expect(received.filter((d) => d.data === "WATCHDOG=1").length).toBeGreaterThanOrEqual(1);
    expect(received.every((d) => ["READY=1\nSTATUS=first cycle complete", "WATCHDOG=1", "STOPPING=1"].includes(d.data))).toBe(true);
    // NotifyAccess=main: every datagram comes from the daemon's own PID.
    expect(new Set(received.map((d) => d.pid))).toEqual(new Set([daemon.pid]));
    expect(output).not.toContain("systemd notify");
  });
});
