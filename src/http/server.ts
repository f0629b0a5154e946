// The read-only HTTP surface (fastify): /metrics, /healthz, /readyz, /sessions over what the last cycle stored.
import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { Server as TlsServer } from "node:tls";
import { promisify } from "node:util";
import { gzip } from "node:zlib";
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply } from "fastify";
import type { Logger } from "pino";
import type { Health } from "../poller/poller.js";
import { BasicAuth, WebConfigRefusedError, secureContextOptions, type AuthRefusal, type WebConfig, type WebReloadRefusal } from "./webconfig.js";
import { FailureLimiter, DEFAULT_FAILURE_LIMITS, type FailureLimits } from "./auth-limits.js";
import { BcryptPool, type BcryptPoolOptions } from "./bcrypt-pool.js";
import { oneLine } from "../config/schema.js";
import { ConfigError, errorMessage } from "../errors.js";

export interface HttpDeps {
  /** The Prometheus text exposition; must only read stored values (no scan, no Docker call). */
  exposition(): Promise<{ contentType: string; body: string }>;
  /**
   * The last /sessions JSON: an object, or the same already serialized (a string, sent as is: the
   * daemon serializes once per snapshot, not once per request); null before the first cycle (503).
   */
  sessions(): unknown;
  /** Whether /sessions is served at all (config http.sessions); false: 404, as for a path that does not exist. Default true. */
  sessionsEnabled?: () => boolean;
  /** /healthz: is the poll loop making progress? */
  liveness(): Health;
  /** /readyz: has a complete cycle run with Docker reachable or disabled? */
  readiness(): Health;
  logger: Logger;
  /** TLS and basic auth from the web config file; absent: plain HTTP, no auth. */
  web?: WebConfig;
  /** Polled every `intervalMs` while listening: a changed web config (new certificate, new users). */
  webReload?: { poll(): WebConfig | null; intervalMs: number };
  /** What the surface refused, for the daemon's metrics. */
  events?: HttpEvents;
  /** Where bcrypt runs and how many compares may be in flight; default one thread, 4 (see BcryptPool). */
  bcrypt?: BcryptPoolOptions;
  /** Per-address limit on failing password checks; default DEFAULT_FAILURE_LIMITS. */
  authLimits?: FailureLimits;
}

export interface HttpEvents {
  /** A request refused by basic auth, and why. */
  authRefused(reason: AuthRefusal): void;
  /** A changed web config was refused; the one in force stays. */
  webConfigReloadFailed(reason: WebReloadRefusal): void;
}

/** Stable codes of the JSON error bodies `{ error, code }`; fastify's own FST_ERR_* codes pass through. */
export type HttpErrorCode =
  | "PTYR_HTTP_NOT_FOUND"
  | "PTYR_HTTP_METHOD_NOT_ALLOWED"
  | "PTYR_HTTP_NO_SNAPSHOT"
  | "PTYR_HTTP_UNAUTHORIZED"
  | "PTYR_HTTP_TOO_MANY_REQUESTS"
  | "PTYR_HTTP_BAD_REQUEST"
  | "PTYR_HTTP_HEADERS_TOO_LARGE"
  | "PTYR_HTTP_TIMEOUT"
  | "PTYR_HTTP_INTERNAL";

/** Limits: every request here is a bodiless GET, so anything large or slow is a mistake or an attack. */
export const HTTP_LIMITS = {
  bodyLimit: 1024,
  maxHeaderSize: 8 * 1024,
  maxParamLength: 64,
  /** Whole request must arrive within this (slowloris). */
  requestTimeoutMs: 10_000,
  /** Idle socket timeout. */
  connectionTimeoutMs: 30_000,
  /** Just above the common 15 s scrape interval, so a scraper reuses its connection. */
  keepAliveTimeoutMs: 20_000,
  /**
   * Open connections at once (Node's server.maxConnections refuses more). A scraper, a probe and a
   * curl need a few, the scrape-storm test 200 (wrk); 3,000 idle ones were all accepted before this cap.
   */
  maxConnections: 256,
} as const;

export const ROUTES: readonly string[] = ["/", "/metrics", "/healthz", "/readyz", "/sessions"];
const ALLOW = "GET, HEAD";

const INDEX_LINES = [
  "ptyreaper: finds leaked docker exec sessions holding pseudo-terminals and reaps them.",
  "",
  "GET /metrics   Prometheus metrics",
  "GET /healthz   liveness: 200 while poll cycles complete on time",
  "GET /readyz    readiness: 200 after a complete cycle with Docker reachable or disabled",
  "GET /sessions  the last snapshot's exec sessions as JSON, with state and reason",
  "",
];
const INDEX = INDEX_LINES.join("\n");
const INDEX_WITHOUT_SESSIONS = INDEX_LINES.filter((line) => !line.startsWith("GET /sessions")).join("\n");

function sendError(reply: FastifyReply, status: number, code: string, error: string): FastifyReply {
  return reply.code(status).type("application/json; charset=utf-8").send({ error, code });
}

function sendHealth(reply: FastifyReply, health: Health, failStatus: string): FastifyReply {
  reply.type("application/json; charset=utf-8");
  return health.ok ? reply.code(200).send({ status: "ok" }) : reply.code(503).send({ status: failStatus, reason: health.reason });
}

/** Errors on the raw socket (malformed request, header overflow, timeout): answered before fastify routes. */
function clientErrorHandler(this: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === "ECONNRESET" || socket.destroyed) return;
  let status = 400;
  let code: HttpErrorCode = "PTYR_HTTP_BAD_REQUEST";
  if (err.code === "HPE_HEADER_OVERFLOW") {
    status = 431;
    code = "PTYR_HTTP_HEADERS_TOO_LARGE";
  } else if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") {
    status = 408;
    code = "PTYR_HTTP_TIMEOUT";
  }
  this.log.debug({ err }, "bad HTTP request from client");
  const body = JSON.stringify({ error: STATUS_CODES[status], code });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

/**
 * Caps open connections at `max` without letting idle ones lock everybody out. An idle socket costs
 * an attacker nothing, so a plain cap could be filled for good and /healthz would go unanswered.
 * Instead, when a new connection takes the last free slot, the connection idle the longest (no
 * request being answered: never sent one, or between keep-alive requests) is closed. A new request,
 * a health probe among them, gets in unless every connection is busy with a request, which
 * requestTimeout bounds; only then does Node refuse connections.
 */
export function limitConnections(server: Server, max: number, logger: FastifyBaseLogger, nowMs: () => number = () => performance.now()): void {
  server.maxConnections = max;
  const open = new Map<Socket, { busy: number; idleSinceMs: number }>();
  // Keeps one slot free while any connection is idle: Node refuses a connection at the cap before we see it.
  const makeRoom = (except: Socket | null): void => {
    if (open.size < max) return;
    let oldest: Socket | null = null;
    let oldestSince = Infinity;
    for (const [socket, state] of open) {
      if (socket !== except && state.busy === 0 && state.idleSinceMs < oldestSince) {
        oldest = socket;
        oldestSince = state.idleSinceMs;
      }
    }
    if (oldest === null) return;
    logger.debug({ open: open.size, idleMs: Math.round(nowMs() - oldestSince) }, "connection cap reached: closing the longest idle connection");
    open.delete(oldest);
    oldest.destroy();
  };
  const track = (socket: Socket): void => {
    open.set(socket, { busy: 0, idleSinceMs: nowMs() });
    socket.once("close", () => open.delete(socket));
    makeRoom(socket);
  };
  // Behind TLS a request's socket is the TLS one, which exists once the handshake is done.
  server.on(server instanceof TlsServer ? "secureConnection" : "connection", track);
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const state = open.get(req.socket);
    if (!state) return;
    state.busy++;
    res.once("close", () => {
      state.busy--;
      state.idleSinceMs = nowMs();
      makeRoom(null);
    });
  });
  server.on("drop", (data?: { remoteAddress?: string }) => {
    logger.debug({ remoteAddress: data?.remoteAddress, max }, "connection refused: every connection is busy");
  });
}

const gzipAsync = promisify(gzip);

/** Gzip when the scraper asks for it (Prometheus does); `gzip;q=0` is a refusal. */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  const text = Array.isArray(header) ? header.join(",") : (header ?? "");
  return text.split(",").some((part) => {
    const [coding, ...params] = part.trim().toLowerCase().split(";");
    if (coding !== "gzip" && coding !== "*") return false;
    const q = params.map((p) => /^\s*q=([\d.]+)\s*$/.exec(p)?.[1]).find((v) => v !== undefined);
    return q === undefined || Number(q) > 0;
  });
}

/** A fastify instance with the surface's limits and error handling, on plain HTTP or on TLS. */
function makeFastify(logger: FastifyBaseLogger, tls: WebConfig["tls"]): FastifyInstance {
  // Node's https server takes the http options (maxHeaderSize) in the same object as the TLS ones.
  const transport = tls
    ? { https: { ...secureContextOptions(tls), maxHeaderSize: HTTP_LIMITS.maxHeaderSize } }
    : { http: { maxHeaderSize: HTTP_LIMITS.maxHeaderSize } };
  const app = Fastify({
    loggerInstance: logger,
    // Scrapes every few seconds would flood an info log; requests are logged at debug below.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: HTTP_LIMITS.bodyLimit,
    requestTimeout: HTTP_LIMITS.requestTimeoutMs,
    connectionTimeout: HTTP_LIMITS.connectionTimeoutMs,
    keepAliveTimeout: HTTP_LIMITS.keepAliveTimeoutMs,
    ...transport,
    routerOptions: { maxParamLength: HTTP_LIMITS.maxParamLength },
    // Shutdown must not wait for idle keep-alive scrapers.
    forceCloseConnections: true,
    return503OnClosing: true,
    clientErrorHandler,
  }) as unknown as FastifyInstance; // the https instance has the same API: callers need not care which
  limitConnections(app.server, HTTP_LIMITS.maxConnections, logger);
  app.addHook("onSend", async (_req, reply, payload) => {
    reply.header("cache-control", "no-store");
    reply.header("x-content-type-options", "nosniff");
    return payload;
  });
  app.addHook("onResponse", async (req, reply) => {
    req.log.debug({ method: req.method, url: req.url, statusCode: reply.statusCode, ms: Math.round(reply.elapsedTime) }, "http request");
  });
  return app;
}

/** 404 for unknown paths, 405 for other methods on served ones, and internal errors kept out of the answer. */
function addFallbacks(app: FastifyInstance, served: (path: string) => boolean): void {
  app.setNotFoundHandler(async (req, reply) => {
    const path = req.url.split("?", 1)[0] ?? "";
    if (served(path)) {
      reply.header("allow", ALLOW);
      return sendError(reply, 405, "PTYR_HTTP_METHOD_NOT_ALLOWED", `method ${req.method} not allowed; use GET or HEAD`);
    }
    return sendError(reply, 404, "PTYR_HTTP_NOT_FOUND", "not found");
  });

  app.setErrorHandler(async (err: FastifyError, req, reply) => {
    const status = err.statusCode ?? 500;
    if (status >= 500) {
      // The message may describe internals; it goes to the log, the client gets a code.
      req.log.error({ err, url: req.url }, "HTTP handler failed");
      return sendError(reply, 500, "PTYR_HTTP_INTERNAL", "internal error");
    }
    req.log.debug({ err, url: req.url }, "HTTP request rejected");
    return sendError(reply, status, err.code ?? "PTYR_HTTP_BAD_REQUEST", STATUS_CODES[status] ?? "bad request");
  });
}

export const HEALTH_ROUTES: readonly string[] = ["/healthz", "/readyz"];

/**
 * The probes' listener (config http.healthListen): /healthz and /readyz only, plain HTTP, no credentials,
 * for a kubelet that cannot hold a password. It says no more than ok or why not; the config keeps it on loopback.
 */
export function buildHealthServer(deps: Pick<HttpDeps, "liveness" | "readiness" | "logger">): FastifyInstance {
  const app = makeFastify(deps.logger, null);
  app.get("/healthz", async (_req, reply) => sendHealth(reply, deps.liveness(), "unhealthy"));
  app.get("/readyz", async (_req, reply) => sendHealth(reply, deps.readiness(), "not_ready"));
  addFallbacks(app, (path) => HEALTH_ROUTES.includes(path));
  return app;
}

/** Builds the server with its routes; never listens (tests use `app.inject()`). */
export function buildServer(deps: HttpDeps): FastifyInstance {
  // Typed as the base logger so the instance is the plain FastifyInstance, not one generic over pino's type.
  const logger: FastifyBaseLogger = deps.logger;
  const tls = deps.web?.tls ?? null;
  const app = makeFastify(logger, tls);

  // exporter-toolkit asks for credentials on every path; so do we (probes send them too, see README).
  // One pool and one limiter for the server's life: a reload neither restarts threads nor forgives guessers.
  const pool = new BcryptPool(deps.bcrypt);
  const limiter = new FailureLimiter(deps.authLimits ?? DEFAULT_FAILURE_LIMITS);
  const makeAuth = (users: ReadonlyMap<string, string>): BasicAuth =>
    new BasicAuth(users, (password, hash) => pool.compare(password, hash), { limiter });
  let auth = makeAuth(deps.web?.basicAuthUsers ?? new Map());
  app.addHook("onClose", async () => pool.close());
  if (deps.web) {
    app.addHook("onRequest", async (req, reply) => {
      if (!auth.enabled) return;
      const verdict = await auth.verify(req.headers.authorization, req.ip);
      if (verdict.ok) return;
      deps.events?.authRefused(verdict.reason);
      switch (verdict.reason) {
        case "limited":
        case "busy":
          // Not checked, so neither right nor wrong: the client may try again after Retry-After.
          reply.header("retry-after", String(verdict.retryAfterSec));
          return sendError(reply, 429, "PTYR_HTTP_TOO_MANY_REQUESTS", "too many password checks; retry later");
        case "error":
          req.log.error({ err: verdict.error }, "password check failed");
          return sendError(reply, 500, "PTYR_HTTP_INTERNAL", "internal error");
        default:
          reply.header("www-authenticate", 'Basic realm="ptyreaper", charset="UTF-8"');
          return sendError(reply, 401, "PTYR_HTTP_UNAUTHORIZED", "unauthorized");
      }
    });
  }

  const reload = deps.webReload;
  if (reload) {
    const applyChanges = (): void => {
      let next: WebConfig | null;
      try {
        next = reload.poll();
      } catch (err) {
        const reason: WebReloadRefusal = err instanceof WebConfigRefusedError ? err.reason : "invalid";
        const problems = err instanceof ConfigError ? err.problems : [errorMessage(err)];
        const file = err instanceof ConfigError ? err.source : "";
        deps.events?.webConfigReloadFailed(reason);
        logger.error(
          { file, reason, problems },
          `web config changed but cannot be used; the running one stays in force: ${oneLine(`${file}: ${problems.join("; ")}`)}`,
        );
        return;
      }
      if (next === null) return;
      // Node takes a new certificate, key and CA for new connections; turning TLS on or off was refused above.
      if (next.tls && tls) (app.server as unknown as TlsServer).setSecureContext(secureContextOptions(next.tls));
      auth = makeAuth(next.basicAuthUsers);
      logger.info({ tls: next.tls !== null, users: next.basicAuthUsers.size }, "web config reloaded");
    };
    let timer: NodeJS.Timeout | null = null;
    app.addHook("onListen", (done) => {
      timer = setInterval(applyChanges, reload.intervalMs);
      timer.unref();
      done();
    });
    app.addHook("onClose", (_instance, done) => {
      if (timer) clearInterval(timer);
      done();
    });
  }

  // GET routes also answer HEAD (fastify's exposeHeadRoutes): same headers, no body.
  const sessionsEnabled = deps.sessionsEnabled ?? (() => true);
  app.get("/", async (_req, reply) => reply.type("text/plain; charset=utf-8").send(sessionsEnabled() ? INDEX : INDEX_WITHOUT_SESSIONS));

  // Gzipped texts by exposition: deps.exposition() hands concurrent scrapes the same object, so they share one gzip.
  const gzipped = new WeakMap<object, Promise<Buffer>>();
  app.get("/metrics", async (req, reply) => {
    const exposition = await deps.exposition();
    reply.type(exposition.contentType).header("vary", "accept-encoding");
    if (!acceptsGzip(req.headers["accept-encoding"])) return reply.send(exposition.body);
    let compressed = gzipped.get(exposition);
    if (compressed === undefined) {
      compressed = gzipAsync(exposition.body);
      gzipped.set(exposition, compressed);
    }
    return reply.header("content-encoding", "gzip").send(await compressed);
  });

  app.get("/healthz", async (_req, reply) => sendHealth(reply, deps.liveness(), "unhealthy"));
  app.get("/readyz", async (_req, reply) => sendHealth(reply, deps.readiness(), "not_ready"));

  app.get("/sessions", async (_req, reply) => {
    // Off: it names other tenants' containers and exec activity, which a shared node's pods must not read.
    if (!sessionsEnabled()) return sendError(reply, 404, "PTYR_HTTP_NOT_FOUND", "not found");
    const sessions = deps.sessions();
    if (sessions === null || sessions === undefined) {
      return sendError(reply, 503, "PTYR_HTTP_NO_SNAPSHOT", "no poll cycle has completed yet");
    }
    return reply.type("application/json; charset=utf-8").send(sessions);
  });

  addFallbacks(app, (path) => ROUTES.includes(path) && (path !== "/sessions" || sessionsEnabled()));

  return app;
}

/** Starts listening; returns the address, e.g. "http://127.0.0.1:9464". */
export async function listen(app: FastifyInstance, host: string, port: number): Promise<string> {
  return app.listen({ host, port });
}
