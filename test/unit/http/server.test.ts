// The HTTP routes through app.inject(): no port is opened.
import { afterEach, describe, expect, it } from "vitest";
import pino from "pino";
import type { FastifyInstance } from "fastify";
import { buildHealthServer, buildServer, HEALTH_ROUTES, HTTP_LIMITS, ROUTES, type HttpDeps } from "../../../src/http/server.js";
import type { Health } from "../../../src/poller/poller.js";
import { PtyreaperMetrics } from "../../../src/metrics/metrics.js";
import { makePty, makeSnapshot } from "../metrics/snapshot-factory.js";

interface LogLine {
  level: number;
  msg: string;
  err?: { message: string };
}

function capturingLogger(): { logger: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: "trace" }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { logger, lines };
}

const OK: Health = { ok: true, reason: "" };
const HOSTILE = 'evil"name\\with\nnewline\u2028</script><b>ü🐳' + "x".repeat(10_000);

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

function build(over: Partial<HttpDeps> = {}): { app: FastifyInstance; lines: LogLine[] } {
  const { logger, lines } = capturingLogger();
  app = buildServer({
    exposition: () => Promise.resolve({ contentType: "text/plain; version=0.0.4; charset=utf-8", body: "ptyreaper_pty_allocated 7\n" }),
    sessions: () => ({ sessions: [] }),
    liveness: () => OK,
    readiness: () => OK,
    logger,
    ...over,
  });
  return { app, lines };
}

describe("GET /metrics", () => {
  it("returns the exposition with its content type", async () => {
    const res = await build().app.inject({ method: "GET", url: "/metrics" });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(res.body).toBe("ptyreaper_pty_allocated 7\n");
  });

  it("serves a real PtyreaperMetrics exposition with hostile names escaped", async () => {
    const m = new PtyreaperMetrics({ version: "0.1.0", defaultMetrics: false });
    m.observeSnapshot(makeSnapshot({ ptys: [makePty("exec", { id: "a".repeat(64), name: 'q"b\\n\nl' })] }));
    const res = await build({ exposition: () => m.exposition() }).app.inject({ method: "GET", url: "/metrics" });
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain(`ptyreaper_container_ptys{container_id="${"a".repeat(64)}",container_name="q\\"b\\\\n\\nl",runtime="docker"} 1\n`);
  });

  it("reads the exposition once per scrape and ignores the query string", async () => {
    let calls = 0;
    const { app } = build({
      exposition: () => {
        calls += 1;
        return Promise.resolve({ contentType: "text/plain", body: `scrape ${calls}\n` });
      },
    });
    const res = await app.inject({ method: "GET", url: "/metrics?name[]=x" });
    expect(res.statusCode).toBe(200);
    expect(res.body).toBe("scrape 1\n");
    expect(calls).toBe(1);
  });

  it("answers HEAD with the headers of GET and no body", async () => {
    const res = await build().app.inject({ method: "HEAD", url: "/metrics" });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(res.headers["content-length"]).toBe(String(Buffer.byteLength("ptyreaper_pty_allocated 7\n")));
    expect(res.body).toBe("");
  });

  it("turns a failing exposition into a 500 JSON error without message or stack, and logs it", async () => {
    const { app, lines } = build({
      exposition: () => Promise.reject(new Error("secret internal detail at /var/lib/x")),
    });
    const res = await app.inject({ method: "GET", url: "/metrics" });
    expect(res.statusCode).toBe(500);
    expect(res.headers["content-type"]).toBe("application/json; charset=utf-8");
    expect(res.json()).toEqual({ error: "internal error", code: "PTYR_HTTP_INTERNAL" });
    expect(res.body).not.toContain("secret");
    expect(res.body).not.toContain("at ");
    const logged = lines.find((l) => l.level === 50);
    expect(logged?.msg).toBe("HTTP handler failed");
    expect(logged?.err?.message).toBe("secret internal detail at /var/lib/x");
  });
});

describe("GET /healthz and /readyz", () => {
  it.each([
    ["/healthz", "unhealthy"],
    ["/readyz", "not_ready"],
  ])("%s is 200 {status: ok} when fine and 503 with the reason otherwise", async (url, failStatus) => {
    let health: Health = OK;
    const { app } = build({ liveness: () => health, readiness: () => health });
    const ok = await app.inject({ method: "GET", url });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers["content-type"]).toBe("application/json; charset=utf-8");
    expect(ok.json()).toEqual({ status: "ok" });

    health = { ok: false, reason: "no poll cycle completed for 35s (3 intervals)" };
    const bad = await app.inject({ method: "GET", url });
    expect(bad.statusCode).toBe(503);
    expect(bad.json()).toEqual({ status: failStatus, reason: "no poll cycle completed for 35s (3 intervals)" });
  });

  it("asks liveness for /healthz and readiness for /readyz", async () => {
    const { app } = build({ liveness: () => OK, readiness: () => ({ ok: false, reason: "docker unreachable" }) });
    expect((await app.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(200);
    expect((await app.inject({ method: "GET", url: "/readyz" })).statusCode).toBe(503);
  });

  it.each(["/healthz", "/readyz"])("HEAD %s carries the status but no body", async (url) => {
    const { app } = build({ liveness: () => ({ ok: false, reason: "x" }), readiness: () => ({ ok: false, reason: "x" }) });
    const res = await app.inject({ method: "HEAD", url });
    expect(res.statusCode).toBe(503);
    expect(res.body).toBe("");
  });
});

describe("GET /sessions", () => {
  it("is 503 with a code before the first cycle", async () => {
    const res = await build({ sessions: () => null }).app.inject({ method: "GET", url: "/sessions" });
    expect(res.statusCode).toBe(503);
    expect(res.headers["content-type"]).toBe("application/json; charset=utf-8");
    expect(res.json()).toEqual({ error: "no poll cycle has completed yet", code: "PTYR_HTTP_NO_SNAPSHOT" });
  });

  it("returns the last sessions object as JSON", async () => {
    const body = { takenAt: "2026-01-01T00:00:00.000Z", sessions: [{ execId: "e1", state: "stale", reason: "idle" }] };
    const res = await build({ sessions: () => body }).app.inject({ method: "GET", url: "/sessions" });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe("application/json; charset=utf-8");
    expect(res.json()).toEqual(body);
  });

  it("escapes hostile container names so the JSON parses back to the same string", async () => {
    const body = { sessions: [{ containerName: HOSTILE, lone: "\uD800" }] };
    const res = await build({ sessions: () => body }).app.inject({ method: "GET", url: "/sessions" });
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('evil\\"name\\\\with\\nnewline');
    expect(res.body).not.toContain("\n");
    const parsed = res.json<{ sessions: { containerName: string; lone: string }[] }>();
    expect(parsed.sessions[0]?.containerName).toBe(HOSTILE);
    // Well-formed JSON.stringify writes a lone surrogate as an escape, so the bytes stay valid UTF-8.
    expect(res.body).toContain('"lone":"\\ud800"');
  });
});

describe("/sessions switched off (http.sessions: false)", () => {
  it("answers 404 as for a path that does not exist, to every method, and the index leaves it out", async () => {
    const { app } = build({ sessions: () => ({ sessions: [{ containerName: "tenant-a" }] }), sessionsEnabled: () => false });
    for (const method of ["GET", "HEAD", "POST"] as const) {
      const res = await app.inject({ method, url: "/sessions" });
      expect(res.statusCode, method).toBe(404);
      expect(res.body).not.toContain("tenant-a");
      if (method !== "HEAD") expect(res.json()).toEqual({ error: "not found", code: "PTYR_HTTP_NOT_FOUND" });
    }
    const index = await app.inject({ method: "GET", url: "/" });
    expect(index.body).not.toContain("/sessions");
    expect(index.body).toContain("GET /metrics");
    expect((await app.inject({ method: "GET", url: "/metrics" })).statusCode).toBe(200);
  });

  it("follows the switch at each request (a SIGHUP reload turns it on or off)", async () => {
    let enabled = true;
    const { app } = build({ sessionsEnabled: () => enabled });
    expect((await app.inject({ method: "GET", url: "/sessions" })).statusCode).toBe(200);
    enabled = false;
    expect((await app.inject({ method: "GET", url: "/sessions" })).statusCode).toBe(404);
    enabled = true;
    expect((await app.inject({ method: "GET", url: "/sessions" })).json()).toEqual({ sessions: [] });
  });
});

describe("the probes' listener (http.healthListen)", () => {
  it("answers /healthz and /readyz, each with its own health, and nothing else: 404 for the other routes, 405 for other methods", async () => {
    const { logger } = capturingLogger();
    let live: Health = OK;
    const health = buildHealthServer({ liveness: () => live, readiness: () => ({ ok: false, reason: "no complete poll cycle yet" }), logger });
    app = health;
    expect(HEALTH_ROUTES).toEqual(["/healthz", "/readyz"]);
    expect((await health.inject({ method: "GET", url: "/healthz" })).json()).toEqual({ status: "ok" });
    const ready = await health.inject({ method: "GET", url: "/readyz" });
    expect(ready.statusCode).toBe(503);
    expect(ready.json()).toEqual({ status: "not_ready", reason: "no complete poll cycle yet" });
    live = { ok: false, reason: "stuck" };
    expect((await health.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(503);
    for (const url of ["/metrics", "/sessions", "/", "/healthz/x"]) {
      const res = await health.inject({ method: "GET", url });
      expect(res.statusCode, url).toBe(404);
      expect(res.json()).toEqual({ error: "not found", code: "PTYR_HTTP_NOT_FOUND" });
    }
    expect((await health.inject({ method: "POST", url: "/healthz" })).statusCode).toBe(405);
    expect((await health.inject({ method: "HEAD", url: "/readyz" })).statusCode).toBe(503);
    // The same headers as the main surface.
    expect((await health.inject({ method: "GET", url: "/healthz" })).headers["cache-control"]).toBe("no-store");
  });
});

describe("GET /", () => {
  it("is a plain text index naming every endpoint", async () => {
    const res = await build().app.inject({ method: "GET", url: "/" });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe("text/plain; charset=utf-8");
    for (const route of ROUTES.filter((r) => r !== "/")) expect(res.body).toContain(`GET ${route}`);
  });
});

describe("everything else", () => {
  it.each(["/nope", "/metrics/", "/metricsx", "/sessions/1", "/%2e%2e/etc/passwd", "/" + "a".repeat(2000)])("GET %s is 404 JSON", async (url) => {
    const res = await build().app.inject({ method: "GET", url });
    expect(res.statusCode).toBe(404);
    expect(res.headers["content-type"]).toBe("application/json; charset=utf-8");
    expect(res.json()).toEqual({ error: "not found", code: "PTYR_HTTP_NOT_FOUND" });
  });

  it("answers an unknown path for any method with 404", async () => {
    const res = await build().app.inject({ method: "DELETE", url: "/nope" });
    expect(res.statusCode).toBe(404);
    expect(res.headers.allow).toBeUndefined();
  });

  it.each(ROUTES.flatMap((url) => (["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] as const).map((method) => ({ method, url }))))(
    "$method $url is 405 with Allow: GET, HEAD",
    async ({ method, url }) => {
      let touched = false;
      const { app } = build({
        sessions: () => {
          touched = true;
          return {};
        },
        exposition: () => {
          touched = true;
          return Promise.resolve({ contentType: "text/plain", body: "" });
        },
      });
      const res = await app.inject({ method, url });
      expect(res.statusCode).toBe(405);
      expect(res.headers.allow).toBe("GET, HEAD");
      expect(res.json()).toEqual({ error: `method ${method} not allowed; use GET or HEAD`, code: "PTYR_HTTP_METHOD_NOT_ALLOWED" });
      expect(touched).toBe(false);
    },
  );

  it("rejects a body over the limit with 413 and fastify's stable code", async () => {
    const res = await build().app.inject({
      method: "POST",
      url: "/metrics",
      headers: { "content-type": "application/json" },
      payload: JSON.stringify({ x: "y".repeat(HTTP_LIMITS.bodyLimit) }),
    });
    expect(res.statusCode).toBe(413);
    expect(res.json()).toEqual({ error: "Payload Too Large", code: "FST_ERR_CTP_BODY_TOO_LARGE" });
  });

  it("sets no-store and nosniff on every response", async () => {
    const { app } = build({ sessions: () => null });
    for (const url of [...ROUTES, "/nope"]) {
      const res = await app.inject({ method: "GET", url });
      expect(res.headers["cache-control"]).toBe("no-store");
      expect(res.headers["x-content-type-options"]).toBe("nosniff");
    }
  });
});

describe("logging", () => {
  it("logs successful scrapes and client errors below info level", async () => {
    const { app, lines } = build();
    await app.inject({ method: "GET", url: "/metrics" });
    await app.inject({ method: "GET", url: "/nope" });
    await app.inject({ method: "POST", url: "/metrics" });
    expect(lines.filter((l) => l.level >= 30)).toEqual([]);
    expect(lines.filter((l) => l.msg === "http request")).toHaveLength(3);
  });
});

describe("limits", () => {
  it("sets bounded timeouts and sizes on the Node server", () => {
    const { app } = build();
    expect(app.initialConfig.bodyLimit).toBe(HTTP_LIMITS.bodyLimit);
    expect(app.server.requestTimeout).toBe(HTTP_LIMITS.requestTimeoutMs);
    expect(app.server.timeout).toBe(HTTP_LIMITS.connectionTimeoutMs);
    expect(app.server.keepAliveTimeout).toBe(HTTP_LIMITS.keepAliveTimeoutMs);
    // Node keeps the option on the server but does not type it.
    expect((app.server as unknown as { maxHeaderSize?: number }).maxHeaderSize).toBe(HTTP_LIMITS.maxHeaderSize);
    for (const v of Object.values(HTTP_LIMITS)) expect(v).toBeGreaterThan(0);
  });
});
