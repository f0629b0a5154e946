// The HTTP surface as an attacker on the host sees it (private dockerd, real daemon on loopback): no secret from
// a process environment ever shows, it listens on loopback only, nothing but GET/HEAD is served, and slow,
// idle or oversized requests are cut off so they cannot pile up.
import { request } from "node:http";
import { connect, type Socket } from "node:net";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { ROUTES } from "../../src/http/server.js";
import { environOf, sleep, waitFor } from "./support/index.js";
import { MAIN } from "./support/daemon.js";
import { execDetached } from "./support/dockerd.js";
import { usePrivateEngine } from "./support/private-engine.js";

const SECRET = "hunter2-f00dfeed";
const CONFIG = `
pollInterval: 1s
policy:
  idleTimeout: 10s
  minAge: 0s
reaper:
  mode: dry-run
log:
  level: trace
`;

/** One raw HTTP request; resolves with status, headers and body (never follows anything). */
function raw(
  baseUrl: string,
  method: string,
  path: string,
  opts: { body?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const url = new URL(path, baseUrl);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method,
        headers: { ...opts.headers, ...(opts.body ? { "content-length": Buffer.byteLength(opts.body) } : {}) },
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.setTimeout(15_000, () => req.destroy(new Error(`${method} ${path}: no answer in 15 s`)));
    req.on("error", reject);
    req.end(opts.body);
  });
}

/** The TCP sockets `pid` holds, from /proc/net/tcp and tcp6: table, local address (hex) and state (0A = LISTEN). */
function tcpSocketsOf(pid: number): { table: string; local: string; state: string }[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  const found: { table: string; local: string; state: string }[] = [];
  for (const table of ["tcp", "tcp6"]) {
    for (const line of readFileSync(`/proc/net/${table}`, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address, st, inode
      if (f[9] !== undefined && inodes.has(f[9])) found.push({ table, local: f[1] ?? "", state: f[3] ?? "" });
    }
  }
  return found;
}

/** Local addresses of the TCP sockets `pid` listens on. */
function listeningAddresses(pid: number): string[] {
  return tcpSocketsOf(pid)
    .filter((s) => s.state === "0A")
    .map((s) => `${s.table}:${s.local}`);
}

/** Connections on `port` that `pid` has accepted (its fds, not the kernel's backlog). */
function acceptedOn(pid: number, port: number): number {
  const suffix = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  return tcpSocketsOf(pid).filter((s) => s.state !== "0A" && s.local.endsWith(suffix)).length;
}

/** Opens a TCP connection and reads everything (a paused socket would never see the close); `closed` resolves with when the server closed it. */
function openConnection(port: number, send: string | null): Promise<{ socket: Socket; closed: Promise<number>; received: () => string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let received = "";
    socket.on("data", (c: Buffer) => (received += c.toString()));
    socket.once("error", reject);
    socket.once("connect", () => {
      const openedAt = Date.now();
      const closed = new Promise<number>((done) => socket.once("close", () => done(Date.now() - openedAt)));
      socket.on("error", () => undefined);
      if (send !== null) socket.write(send);
      resolve({ socket, closed, received: () => received });
    });
  });
}

describe("the HTTP surface (private dockerd, real daemon)", () => {
  const testbed = usePrivateEngine("http", { teardown: "each" });

  it("never shows a process environment: a secret in exec and container environments appears nowhere", async () => {
    const name = "ptyr-test-http-secret";
    await testbed.engine.cli([
      "run",
      "-d",
      "--network",
      "none",
      "--name",
      name,
      "-e",
      `SECRET_TOKEN=${SECRET}`,
      "ptyreaper-test/busybox:latest",
      "sleep",
      "1000000",
    ]);
    const leaked = await execDetached(testbed.engine.socket, name, ["sh"], { env: { SECRET_TOKEN: SECRET } });
    // Its environment is read (for PTYREAPER_EXEMPT), and holds the secret too.
    const exempt = await execDetached(testbed.engine.socket, name, ["sh"], { env: { SECRET_TOKEN: SECRET, PTYREAPER_EXEMPT: "1" } });
    expect(environOf(leaked.pid)).toContain(`SECRET_TOKEN=${SECRET}`);
    expect(environOf(exempt.pid)).toContain(`SECRET_TOKEN=${SECRET}`);

    const d = await testbed.startDaemon(CONFIG);
    await waitFor(
      async () => (await d.metric("ptyreaper_would_reap_sessions_total", { reason: "idle" })) === 1,
      60_000,
      "the leaked session to be judged stale",
    );
    const outputs: [string, string][] = [];
    for (const path of ROUTES) outputs.push([path, (await d.get(path)).body]);
    const cli = (args: string[]): string => {
      const r = spawnSync(process.execPath, [MAIN, ...args], {
        encoding: "utf8",
        env: { ...process.env, DOCKER_HOST: testbed.engine.host },
        maxBuffer: 64 * 1024 * 1024,
      });
      return `${r.stdout}${r.stderr}`;
    };
    outputs.push(["sessions", cli(["sessions"])], ["sessions --json", cli(["sessions", "--json"])]);
    outputs.push([
      "logs",
      d
        .logs()
        .map((l) => JSON.stringify(l))
        .join("\n"),
    ]);
    const sessions = JSON.parse(outputs.find(([p]) => p === "/sessions")?.[1] ?? "{}") as { sessions: { execId: string; state: string }[] };
    expect(sessions.sessions.find((s) => s.execId === exempt.execId)?.state).toBe("exempt");
    expect(d.logs().length).toBeGreaterThan(20); // trace level: everything the daemon says
    for (const [where, text] of outputs) expect(text.includes(SECRET), `the secret in ${where}`).toBe(false);
    expect(
      outputs
        .map(([, text]) => text)
        .join("")
        .includes("SECRET_TOKEN"),
    ).toBe(false);
  }, 120_000);

  it("listens on loopback only, by default and in the shipped config, and serves nothing but GET and HEAD", async () => {
    expect(loadConfig(null, {}).listen.host).toBe("127.0.0.1");
    expect(loadConfig(new URL("../../config/ptyreaper.yaml", import.meta.url).pathname, {}).listen.host).toBe("127.0.0.1");
    const d = await testbed.startDaemon(CONFIG);
    const port = new URL(d.baseUrl).port;
    // One listening socket, 127.0.0.1 (0100007F in /proc/net/tcp) on its port; no inspector, no other port.
    expect(listeningAddresses(d.pid)).toEqual([`tcp:0100007F:${Number(port).toString(16).toUpperCase().padStart(4, "0")}`]);

    await waitFor(async () => (await d.get("/sessions")).status === 200, 20_000, "a first snapshot");
    for (const path of [...ROUTES, "/nope"]) {
      for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
        const res = await raw(d.baseUrl, method, path, {
          body: method === "OPTIONS" ? undefined : `{"mode":"enforce","x":"${"y".repeat(2_000)}"}`,
          headers: { "content-type": "application/json" },
        });
        // Refused with a client error (405 with Allow, 404, 413 for the body, 400 for an empty JSON body), never served.
        expect(res.status >= 400 && res.status < 500, `${method} ${path} → ${res.status}`).toBe(true);
        if (res.status === 405) expect(res.headers.allow).toBe("GET, HEAD");
      }
      const head = await raw(d.baseUrl, "HEAD", path);
      expect(head.body).toBe("");
    }
    // Oversized requests are refused with a status, not served or hung.
    expect((await raw(d.baseUrl, "GET", "/metrics", { headers: { "x-big": "b".repeat(16 * 1024) } })).status).toBe(431);
    const longUrl = (await raw(d.baseUrl, "GET", `/${"a".repeat(10_000)}`)).status;
    expect(longUrl >= 400 && longUrl < 500, `a 10,000-character URL → ${longUrl}`).toBe(true);
    expect((await d.get("/sessions")).status).toBe(200);
    expect(d.child.exitCode).toBeNull();
  }, 60_000);

  it("cuts off idle, slow and lingering connections so they cannot pile up", async () => {
    const d = await testbed.startDaemon(CONFIG);
    const port = Number(new URL(d.baseUrl).port);
    await d.cycles(1);
    const fdsBefore = readdirSync(`/proc/${d.pid}/fd`).length;
    const idle = await Promise.all(Array.from({ length: 20 }, () => openConnection(port, null)));
    const slow = await Promise.all(Array.from({ length: 20 }, () => openConnection(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")));
    const kept = await Promise.all(
      Array.from({ length: 20 }, () => openConnection(port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")),
    );
    // Counted as accepted sockets, not as fds: the scan thread's /proc reads come and go meanwhile.
    await waitFor(() => acceptedOn(d.pid, port) >= 60, 10_000, "the daemon to accept all 60");
    const deadline = 60_000;
    const timed = async (what: string, conns: { closed: Promise<number> }[]): Promise<number> => {
      const times = await Promise.all(conns.map((c) => Promise.race([c.closed, sleep(deadline).then(() => Infinity)])));
      const worst = Math.max(...times);
      expect(worst, `${what} connections closed by the server`).toBeLessThan(deadline);
      return worst;
    };
    const [idleMs, slowMs, keptMs] = await Promise.all([timed("never-speaking", idle), timed("half-sent", slow), timed("kept-alive", kept)]);
    console.log(
      `HTTP cut-offs: never-speaking connections after ${idleMs} ms, half-sent requests after ${slowMs} ms, idle keep-alive after ${keptMs} ms`,
    );
    for (const c of kept) expect(c.received()).toMatch(/^HTTP\/1\.1 200/);
    // The first two get a 408 from Node's request-timeout check (every 30 s), then the close.
    for (const c of [...idle, ...slow]) expect(c.received()).toMatch(/^HTTP\/1\.1 408/);
    await waitFor(() => readdirSync(`/proc/${d.pid}/fd`).length <= fdsBefore + 2, 10_000, "the daemon's fds back to where they were");
    expect((await d.get("/healthz")).status).toBe(200);
  }, 120_000);
});
