// The connection cap on a loopback port: idle connections cannot fill it for good, /healthz still answers at the cap, and a cap of busy connections is real.
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import pino from "pino";
import type { FastifyInstance } from "fastify";
import { buildServer, HTTP_LIMITS, listen } from "../../../src/http/server.js";

const MAX = HTTP_LIMITS.maxConnections;

let app: FastifyInstance | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await app?.close();
  app = undefined;
});

/** A server whose /metrics waits until `release()`, to hold connections busy. */
async function started() {
  let waiting: (() => void)[] = [];
  app = buildServer({
    exposition: () =>
      new Promise((resolve) => waiting.push(() => resolve({ contentType: "text/plain; version=0.0.4; charset=utf-8", body: "up 1\n" }))),
    sessions: () => null,
    liveness: () => ({ ok: true, reason: "" }),
    readiness: () => ({ ok: true, reason: "" }),
    logger: pino({ level: "silent" }),
  });
  const address = await listen(app, "127.0.0.1", 0);
  const server = app.server;
  return {
    port: Number(new URL(address).port),
    connections: () => new Promise<number>((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n)))),
    pendingMetrics: () => waiting.length,
    release: () => {
      for (const done of waiting) done();
      waiting = [];
    },
  };
}

interface Client {
  socket: Socket;
  closed: Promise<void>;
  isClosed: () => boolean;
  received: () => string;
}

/** Opens a raw connection and sends `request` (nothing at all for an idle connection). */
function client(port: number, request = ""): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    sockets.push(socket);
    let closed = false;
    let data = "";
    socket.on("data", (chunk: Buffer) => (data += chunk.toString("utf8")));
    socket.on("error", () => undefined); // a reset is what the test looks at through "close"
    const closedPromise = new Promise<void>((done) => socket.once("close", () => ((closed = true), done())));
    socket.once("connect", () => {
      if (request) socket.write(request);
      resolve({ socket, closed: closedPromise, isClosed: () => closed, received: () => data });
    });
    socket.once("error", reject);
  });
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const healthz = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

describe(`connection cap (${MAX})`, () => {
  it("/healthz answers 200 with the cap filled by idle connections; the oldest idle one made room", async () => {
    const s = await started();
    const idle: Client[] = [];
    for (let i = 0; i < MAX; i++) idle.push(await client(s.port));
    await until(`${MAX - 1} idle connections on the server`, async () => (await s.connections()) === MAX - 1);
    // The last one took the last slot: the first, idle the longest, was closed for it.
    await until("the first connection to be closed", () => idle[0]?.isClosed() === true);
    expect(idle.slice(1).every((c) => !c.isClosed())).toBe(true);

    const probe = await client(s.port, healthz);
    await probe.closed;
    expect(probe.received()).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(probe.received()).toContain('{"status":"ok"}');
    await until("the next oldest to be closed for the probe", () => idle[1]?.isClosed() === true);
    expect(idle.slice(2).every((c) => !c.isClosed())).toBe(true);
  });

  it("never holds more than the cap, however many idle connections arrive", async () => {
    const s = await started();
    const clients: Client[] = [];
    let most = 0;
    for (let i = 0; i < 3 * MAX; i++) {
      clients.push(await client(s.port));
      most = Math.max(most, await s.connections());
    }
    expect(most).toBeLessThanOrEqual(MAX);
    await until("the evicted connections to close on the client side", () => clients.filter((c) => c.isClosed()).length === 2 * MAX + 1);
    // Oldest first: the survivors are the newest ones.
    expect(clients.slice(-(MAX - 1)).every((c) => !c.isClosed())).toBe(true);
  });

  it("with every connection busy the cap is real: a new connection is refused until one is free", async () => {
    const s = await started();
    const busy: Client[] = [];
    for (let i = 0; i < MAX; i++) {
      busy.push(await client(s.port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
      // A connection counts as busy once its request is being answered, not before.
      await until(`request ${i + 1} in flight`, () => s.pendingMetrics() === i + 1);
    }
    expect(await s.connections()).toBe(MAX);

    const refused = await client(s.port, healthz);
    await refused.closed;
    expect(refused.received()).toBe("");
    expect(busy.every((c) => !c.isClosed())).toBe(true);

    s.release(); // the requests are answered; their keep-alive connections turn idle
    await until("every busy request answered", () => busy.every((c) => c.received().includes("up 1")));
    const probe = await client(s.port, healthz);
    await probe.closed;
    expect(probe.received()).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
  });
});
