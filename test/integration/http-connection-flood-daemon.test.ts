// The real daemon under 3,000 idle TCP connections on loopback: it holds at most the cap, and /healthz still answers.
import { readdirSync, readlinkSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { HTTP_LIMITS } from "../../src/http/server.js";
import { waitFor } from "./support/index.js";
import { startDaemon, type RunningDaemon } from "./support/daemon.js";

const FLOOD = 3_000;

/** Sockets the process holds (fds linking to socket:[inode]); /proc files the scan opens are not counted. */
function socketFds(pid: number): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith("socket:")) n++;
    } catch {
      // closed between readdir and readlink
    }
  }
  return n;
}

interface Idle {
  socket: Socket;
  isClosed: () => boolean;
}

/** A connection that never sends a byte. Resolves once connected (the kernel accepts before the daemon decides). */
function idleConnection(port: number): Promise<Idle> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let closed = false;
    socket.on("close", () => (closed = true));
    socket.once("error", reject);
    socket.once("connect", () => {
      socket.on("error", () => undefined); // a reset from the server shows as "close"
      resolve({ socket, isClosed: () => closed });
    });
  });
}

describe("connection flood against the real daemon (loopback, Docker disabled)", () => {
  let d: RunningDaemon | null = null;
  const conns: Idle[] = [];
  afterAll(async () => {
    for (const c of conns) c.socket.destroy();
    await d?.stop();
  });

  it(`holds at most ${HTTP_LIMITS.maxConnections} of ${FLOOD} idle connections and still answers /healthz`, async () => {
    d = await startDaemon("pollInterval: 1s\ndocker:\n  enabled: false\n");
    const daemon = d;
    const port = Number(new URL(daemon.baseUrl).port);
    await waitFor(async () => (await daemon.get("/healthz")).status === 200, 30_000, "the first cycle");
    const baseline = socketFds(daemon.pid);
    let most = 0;
    for (let i = 0; i < FLOOD; i += 100) {
      conns.push(...(await Promise.all(Array.from({ length: 100 }, () => idleConnection(port)))));
      most = Math.max(most, socketFds(daemon.pid) - baseline);
    }
    await waitFor(() => conns.filter((c) => !c.isClosed()).length <= HTTP_LIMITS.maxConnections, 10_000, "the evicted connections to be closed");
    most = Math.max(most, socketFds(daemon.pid) - baseline);
    const open = conns.filter((c) => !c.isClosed()).length;
    console.log(
      `connection flood: ${FLOOD} idle connections opened; at most ${most} held by the daemon, ${open} still open; cap ${HTTP_LIMITS.maxConnections}`,
    );
    expect(most).toBeLessThanOrEqual(HTTP_LIMITS.maxConnections);
    // The cap is filled, not avoided: the newest idle connections are still held.
    expect(open).toBeGreaterThanOrEqual(HTTP_LIMITS.maxConnections - 2);

    const health = await daemon.get("/healthz");
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toEqual({ status: "ok" });
    expect(daemon.child.exitCode).toBeNull();
  }, 120_000);
});
