// listen() and the socket-level limits that app.inject() cannot reach, on a loopback port chosen by the kernel.
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import pino from "pino";
import type { FastifyInstance } from "fastify";
import { buildServer, HTTP_LIMITS, listen } from "../../../src/http/server.js";

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

async function started(): Promise<{ app: FastifyInstance; address: string; port: number }> {
  app = buildServer({
    exposition: () => Promise.resolve({ contentType: "text/plain; version=0.0.4; charset=utf-8", body: "up 1\n" }),
    sessions: () => null,
    liveness: () => ({ ok: true, reason: "" }),
    readiness: () => ({ ok: true, reason: "" }),
    logger: pino({ level: "silent" }),
  });
  const address = await listen(app, "127.0.0.1", 0);
  return { app, address, port: Number(new URL(address).port) };
}

/** Sends raw bytes and collects everything until the server closes the connection. */
function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(port, "127.0.0.1", () => socket.end(request));
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", reject);
    socket.on("close", () => resolve(Buffer.concat(chunks).toString("utf8")));
  });
}

function statusAndBody(response: string): { status: number; body: string } {
  const [head = "", body = ""] = response.split("\r\n\r\n", 2);
  return { status: Number(head.split(" ")[1]), body };
}

describe("listen", () => {
  it("returns the bound address and serves on it", async () => {
    const { address, port } = await started();
    expect(address).toBe(`http://127.0.0.1:${port}`);
    expect(port).toBeGreaterThan(0);
    const res = await fetch(`${address}/metrics`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("up 1\n");
  });

  it("answers headers over the size limit with 431 and a JSON code", async () => {
    const { port } = await started();
    const big = "a".repeat(HTTP_LIMITS.maxHeaderSize + 1);
    const { status, body } = statusAndBody(await raw(port, `GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ${big}\r\n\r\n`));
    expect(status).toBe(431);
    expect(JSON.parse(body)).toEqual({ error: "Request Header Fields Too Large", code: "PTYR_HTTP_HEADERS_TOO_LARGE" });
  });

  it("accepts headers just under the limit", async () => {
    const { port } = await started();
    const fits = "a".repeat(HTTP_LIMITS.maxHeaderSize / 2);
    const { status } = statusAndBody(await raw(port, `GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Fits: ${fits}\r\n\r\n`));
    expect(status).toBe(200);
  });

  it("answers a malformed request with 400 and a JSON code", async () => {
    const { port } = await started();
    const { status, body } = statusAndBody(await raw(port, "NOT AN HTTP REQUEST\r\n\r\n"));
    expect(status).toBe(400);
    expect(JSON.parse(body)).toEqual({ error: "Bad Request", code: "PTYR_HTTP_BAD_REQUEST" });
  });

  it("closes idle keep-alive connections when the server closes", async () => {
    const { app, port } = await started();
    const socket: Socket = connect(port, "127.0.0.1");
    const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    await new Promise<void>((resolve) => {
      socket.once("data", () => resolve());
      socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    });
    await app.close();
    await closed;
    expect(socket.destroyed).toBe(true);
  });
});
