// The exporter-toolkit web config: validation to one line per problem, file reads, and the cached basic-auth check.
import { describe, expect, it } from "vitest";
import bcrypt from "bcryptjs";
import pino from "pino";
import { gunzipSync } from "node:zlib";
import { ConfigError } from "../../../src/errors.js";
import { acceptsGzip, buildServer } from "../../../src/http/server.js";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  BasicAuth,
  parseBasicAuthorization,
  parseWebConfig,
  reloadRefusal,
  WebConfigRefusedError,
  WebConfigReloader,
  type ReadFile,
  type WebConfig,
  type WebTls,
} from "../../../src/http/webconfig.js";

// A cost-4 hash keeps the tests fast; the format is the same as cost 10.
const HASH = bcrypt.hashSync("s3cret", 4);
const SOURCE = "/etc/ptyreaper/web.yml";

/** A reader that serves fixed contents and records what was asked. */
function files(contents: Record<string, string>): { read: ReadFile; asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    read: (path) => {
      asked.push(path);
      const text = contents[path];
      if (text === undefined) throw Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), { code: "ENOENT" });
      return Buffer.from(text);
    },
  };
}

function problemsOf(text: string, read: ReadFile = files({}).read): string[] {
  try {
    parseWebConfig(text, SOURCE, read);
  } catch (err) {
    if (err instanceof ConfigError) {
      expect(err.source).toBe(SOURCE);
      return err.problems;
    }
    throw err;
  }
  throw new Error("accepted");
}

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

describe("parseWebConfig", () => {
  it("an empty file means plain HTTP without auth", () => {
    expect(parseWebConfig("", SOURCE)).toEqual({ tls: null, basicAuthUsers: new Map(), files: [] });
  });

  it("reads the users with their hashes", () => {
    const web = parseWebConfig(`basic_auth_users:\n  prometheus: "${HASH}"\n`, SOURCE);
    expect([...web.basicAuthUsers]).toEqual([["prometheus", HASH]]);
    expect(web.tls).toBeNull();
  });

  it("reads cert and key relative to the web config's directory, and names a bad pair in one line", () => {
    const { read, asked } = files({ "/etc/ptyreaper/tls.crt": "not a certificate", "/srv/key.pem": "not a key" });
    const problems = problemsOf("tls_server_config:\n  cert_file: tls.crt\n  key_file: /srv/key.pem\n", read);
    expect(asked).toEqual(["/etc/ptyreaper/tls.crt", "/srv/key.pem"]);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^tls_server_config: the certificate and key cannot be used: \S/);
  });

  it.each([
    ["an unknown top-level key", "basic_auth_user:\n  a: b\n", ["basic_auth_user: unknown key"]],
    ["an unknown TLS key", "tls_server_config:\n  cert_file: a\n  key_file: b\n  certfile: c\n", ["tls_server_config.certfile: unknown key"]],
    [
      "a plain-text password",
      "basic_auth_users:\n  alice: hunter2\n",
      ['basic_auth_users.alice: expected a bcrypt hash like "$2y$10$…" (htpasswd -nBC 10 USER)'],
    ],
    ["a user name with a colon", `basic_auth_users:\n  "a:b": "${HASH}"\n`, ['basic_auth_users["a:b"]: a user name cannot contain ":" or be empty']],
    ["a list of users", "basic_auth_users: [alice]\n", ["basic_auth_users: expected a mapping of user: bcrypt hash, got a list"]],
    ["a cert without key", "tls_server_config:\n  cert_file: a\n", ["tls_server_config.key_file: missing (needed with cert_file)"]],
    [
      "a client auth type Node cannot do",
      "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
      ["tls_server_config.client_auth_type: RequireAnyClientCert is not supported by ptyreaper; use NoClientCert or RequireAndVerifyClientCert"],
    ],
    [
      "verification without a CA",
      "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
      ["tls_server_config.client_ca_file: missing (needed with client_auth_type RequireAndVerifyClientCert)"],
    ],
    [
      "a CA without verification",
      "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
      ["tls_server_config.client_ca_file: set without a client_auth_type that checks client certificates"],
    ],
    [
      "a bad TLS version",
      "tls_server_config:\n  min_version: TLS1.2\n",
      ['tls_server_config.min_version: expected TLS10, TLS11, TLS12 or TLS13, got "TLS1.2"'],
    ],
    [
      "cipher suites",
      "tls_server_config:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
      ["tls_server_config.cipher_suites: not supported by ptyreaper: Node's defaults are used"],
    ],
    [
      "http_server_config",
      "http_server_config:\n  http2: false\n",
      ["http_server_config: not supported by ptyreaper: ptyreaper serves HTTP/1.1 and sets its own headers"],
    ],
    ["a scalar file", "yes\n", ['(top level): expected a mapping of keys, got "yes"']],
    ["duplicate keys", "basic_auth_users: {}\nbasic_auth_users: {}\n", [expect.stringMatching(/^invalid YAML: Map keys must be unique/)]],
  ])("refuses %s with one line naming the key", (_what, text, want) => {
    expect(problemsOf(text)).toEqual(want);
  });

  it("names an unreadable file with its full path", () => {
    expect(problemsOf("tls_server_config:\n  cert_file: gone.crt\n  key_file: gone.key\n")).toEqual([
      "tls_server_config.cert_file: cannot read /etc/ptyreaper/gone.crt: ENOENT: no such file or directory, open '/etc/ptyreaper/gone.crt'",
      "tls_server_config.key_file: cannot read /etc/ptyreaper/gone.key: ENOENT: no such file or directory, open '/etc/ptyreaper/gone.key'",
    ]);
  });
});

describe("BasicAuth", () => {
  const users = new Map([["prometheus", HASH]]);

  it("accepts the right password and refuses a wrong one, an unknown user and a malformed header", async () => {
    const auth = new BasicAuth(users, (password, hash) => bcrypt.compare(password, hash));
    expect(await auth.check(basic("prometheus", "s3cret"))).toBe(true);
    expect(await auth.check(basic("prometheus", "s3cret "))).toBe(false);
    expect(await auth.check(basic("grafana", "s3cret"))).toBe(false);
    expect(await auth.check(undefined)).toBe(false);
    expect(await auth.check("Bearer x")).toBe(false);
  });

  it("runs bcrypt once per credentials however often and however concurrently they come", async () => {
    let runs = 0;
    const auth = new BasicAuth(users, async (password, hash) => {
      runs += 1;
      return bcrypt.compare(password, hash);
    });
    const storm = await Promise.all(Array.from({ length: 500 }, () => auth.check(basic("prometheus", "s3cret"))));
    expect(storm.every(Boolean)).toBe(true);
    for (let i = 0; i < 500; i++) expect(await auth.check(basic("prometheus", "wrong"))).toBe(false);
    expect(runs).toBe(2);
  });

  it("an unknown user still costs one bcrypt run, at the configured cost (no timing difference to a wrong password)", async () => {
    const hashes: string[] = [];
    const auth = new BasicAuth(users, (_password, hash) => {
      hashes.push(hash);
      return Promise.resolve(true);
    });
    expect(await auth.check(basic("nobody", "x"))).toBe(false);
    expect(hashes).toHaveLength(1);
    expect(hashes[0]).toMatch(/^\$2b\$04\$/); // HASH's cost
  });

  it("remembers a bounded number of outcomes", async () => {
    let runs = 0;
    const auth = new BasicAuth(users, () => {
      runs += 1;
      return Promise.resolve(false);
    });
    for (let i = 0; i < 150; i++) await auth.check(basic("prometheus", `guess-${i}`));
    expect(runs).toBe(150);
    await auth.check(basic("prometheus", "guess-149")); // recent: remembered
    expect(runs).toBe(150);
    await auth.check(basic("prometheus", "guess-0")); // evicted
    expect(runs).toBe(151);
  });

  it.each([
    ["Basic YWxpY2U6cHc6d2l0aDpjb2xvbnM=", { user: "alice", password: "pw:with:colons" }],
    ["basic  YWxpY2U6", { user: "alice", password: "" }],
    ["Basic OnB3", null],
    ["Basic !!!", null],
    ["Digest x", null],
  ])("parseBasicAuthorization(%j)", (header, want) => {
    expect(parseBasicAuthorization(header)).toEqual(want);
  });
});

describe("the server with basic auth", () => {
  const build = () =>
    buildServer({
      exposition: () => Promise.resolve({ contentType: "text/plain; version=0.0.4; charset=utf-8", body: "ptyreaper_pty_allocated 7\n" }),
      sessions: () => ({ sessions: [] }),
      liveness: () => ({ ok: true, reason: "" }),
      readiness: () => ({ ok: true, reason: "" }),
      logger: pino({ level: "silent" }),
      web: { tls: null, basicAuthUsers: new Map([["prometheus", HASH]]), files: [] },
    });

  it.each(["/", "/metrics", "/healthz", "/readyz", "/sessions", "/nope"])("asks for credentials on %s, as exporter-toolkit does", async (url) => {
    const app = build();
    const res = await app.inject({ method: "GET", url });
    expect(res.statusCode).toBe(401);
    expect(res.headers["www-authenticate"]).toBe('Basic realm="ptyreaper", charset="UTF-8"');
    expect(JSON.parse(res.body)).toEqual({ error: "unauthorized", code: "PTYR_HTTP_UNAUTHORIZED" });
    const wrong = await app.inject({ method: "GET", url, headers: { authorization: basic("prometheus", "nope") } });
    expect(wrong.statusCode).toBe(401);
    const right = await app.inject({ method: "GET", url, headers: { authorization: basic("prometheus", "s3cret") } });
    expect(right.statusCode).toBe(url === "/nope" ? 404 : 200);
    await app.close();
  });
});

describe("/metrics compression", () => {
  const body = "ptyreaper_pty_allocated 7\n".repeat(200);
  const build = (exposition = () => Promise.resolve({ contentType: "text/plain; version=0.0.4; charset=utf-8", body })) =>
    buildServer({
      exposition,
      sessions: () => null,
      liveness: () => ({ ok: true, reason: "" }),
      readiness: () => ({ ok: true, reason: "" }),
      logger: pino({ level: "silent" }),
    });

  it("gzips when the scraper asks, as Prometheus does, and the text is the same", async () => {
    const app = build();
    const res = await app.inject({ method: "GET", url: "/metrics", headers: { "accept-encoding": "gzip" } });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-encoding"]).toBe("gzip");
    expect(res.headers["vary"]).toBe("accept-encoding");
    expect(res.headers["content-type"]).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(res.rawPayload.length).toBeLessThan(body.length / 10);
    expect(gunzipSync(res.rawPayload).toString()).toBe(body);
    await app.close();
  });

  it("sends plain text when not asked or refused", async () => {
    const app = build();
    for (const headers of [{}, { "accept-encoding": "gzip;q=0, identity" }, { "accept-encoding": "br" }]) {
      const res = await app.inject({ method: "GET", url: "/metrics", headers });
      expect(res.headers["content-encoding"]).toBeUndefined();
      expect(res.body).toBe(body);
    }
    await app.close();
  });

  it.each([
    ["gzip", true],
    ["GZIP", true],
    ["deflate, gzip;q=1.0, *;q=0.5", true],
    ["*", true],
    ["gzip;q=0", false],
    ["gzip; q=0.0", false],
    ["identity", false],
    ["", false],
    [undefined, false],
  ])("acceptsGzip(%j) is %s", (header, want) => {
    expect(acceptsGzip(header)).toBe(want);
  });
});

describe("WebConfigReloader", () => {
  const web = (users: Record<string, string>, files: string[]): WebConfig => ({ tls: null, basicAuthUsers: new Map(Object.entries(users)), files });

  it("reads the file again only when one of its files changed, and reports a bad change once", () => {
    const versions = new Map([
      ["/w.yml", "1"],
      ["/tls.crt", "1"],
      ["/ca.crt", "1"],
    ]);
    let next: () => WebConfig = () => web({ b: HASH }, ["/w.yml", "/tls.crt", "/ca.crt"]);
    let loads = 0;
    const reloader = new WebConfigReloader("/w.yml", web({ a: HASH }, ["/w.yml", "/tls.crt"]), {
      signature: (path) => versions.get(path) ?? "",
      load: () => {
        loads += 1;
        return next();
      },
    });
    expect(reloader.poll()).toBeNull();
    versions.set("/tls.crt", "2"); // a renewed certificate
    expect(reloader.poll()?.basicAuthUsers.has("b")).toBe(true);
    expect(reloader.poll()).toBeNull();
    versions.set("/ca.crt", "2"); // named only by the new config: watched from now on
    next = () => {
      throw new ConfigError("/w.yml", ["basic_auth_users.b: expected a bcrypt hash"]);
    };
    expect(() => reloader.poll()).toThrow(ConfigError);
    expect(reloader.poll()).toBeNull();
    expect(loads).toBe(2);
  });

  it("the server applies new users while listening, and keeps the old ones when the new file is bad", async () => {
    const lines: { msg: string; problems?: string[] }[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line) as { msg: string }) });
    const queue: (() => WebConfig | null)[] = [];
    const app = buildServer({
      exposition: () => Promise.resolve({ contentType: "text/plain", body: "x 1\n" }),
      sessions: () => null,
      liveness: () => ({ ok: true, reason: "" }),
      readiness: () => ({ ok: true, reason: "" }),
      logger,
      web: web({ old: HASH }, []),
      webReload: { intervalMs: 20, poll: () => (queue.shift() ?? (() => null))() },
    });
    const address = await app.listen({ host: "127.0.0.1", port: 0 });
    try {
      const status = async (user: string): Promise<number> =>
        (await fetch(`${address}/healthz`, { headers: { authorization: basic(user, "s3cret") } })).status;
      expect(await status("old")).toBe(200);
      queue.push(() => web({ new: HASH }, []));
      await waitUntil(() => lines.some((l) => l.msg === "web config reloaded"));
      expect(await status("old")).toBe(401);
      expect(await status("new")).toBe(200);
      queue.push(() => {
        throw new ConfigError("/w.yml", ["basic_auth_users.new: expected a bcrypt hash"]);
      });
      await waitUntil(() => lines.some((l) => l.msg.startsWith("web config changed but cannot be used")));
      expect(lines.find((l) => l.problems)?.problems).toEqual(["basic_auth_users.new: expected a bcrypt hash"]);
      expect(await status("new")).toBe(200);
    } finally {
      await app.close();
    }
  });
});

describe("reloads fail closed", () => {
  const TLS: WebTls = { cert: Buffer.from("c"), key: Buffer.from("k"), ca: null, requestCert: false, minVersion: "TLSv1.2", maxVersion: null };
  const MTLS: WebTls = { ...TLS, ca: Buffer.from("ca"), requestCert: true };
  const cfg = (tls: WebTls | null, users: string[]): WebConfig => ({ tls, basicAuthUsers: new Map(users.map((u) => [u, HASH])), files: [] });

  it.each([
    ["TLS dropped", cfg(TLS, []), cfg(null, []), "drops_tls"],
    ["TLS and users dropped", cfg(TLS, ["a"]), cfg(null, []), "drops_tls"],
    ["client certificates dropped", cfg(MTLS, []), cfg(TLS, []), "drops_tls"],
    ["users dropped", cfg(null, ["a"]), cfg(null, []), "drops_auth"],
    ["users dropped under TLS", cfg(TLS, ["a"]), cfg(TLS, []), "drops_auth"],
    ["TLS turned on", cfg(null, ["a"]), cfg(TLS, ["a"]), "needs_restart"],
    ["client certificates turned on", cfg(TLS, []), cfg(MTLS, []), "needs_restart"],
    ["users changed", cfg(TLS, ["a"]), cfg(TLS, ["b"]), null],
    ["users added", cfg(null, []), cfg(null, ["a"]), null],
    ["a renewed certificate", cfg(MTLS, ["a"]), cfg({ ...MTLS, cert: Buffer.from("new") }, ["a"]), null],
    ["nothing in force, nothing new", cfg(null, []), cfg(null, []), null],
  ])("%s: %s", (_what, inForce, next, want) => {
    expect(reloadRefusal(inForce, next)?.reason ?? null).toBe(want);
  });

  it("a web config file truncated, then holding only a comment, then garbage, is refused each time; restored, it applies again", () => {
    const dir = mkdtempSync(join(tmpdir(), "ptyreaper-webcfg-"));
    try {
      const path = join(dir, "web.yml");
      const good = `basic_auth_users:\n  prometheus: "${HASH}"\n`;
      writeFileSync(path, good);
      // Every write changes the signature: a counter stands in for stat's inode/size/mtime.
      let version = 0;
      const reloader = new WebConfigReloader(
        path,
        { tls: null, basicAuthUsers: new Map([["prometheus", HASH]]), files: [path] },
        { signature: () => String(version) },
      );
      const refusedBy = (text: string): WebConfigRefusedError => {
        writeFileSync(path, text);
        version++;
        try {
          reloader.poll();
        } catch (err) {
          expect(err).toBeInstanceOf(WebConfigRefusedError);
          expect(err).toBeInstanceOf(ConfigError);
          return err as WebConfigRefusedError;
        }
        throw new Error(`accepted: ${JSON.stringify(text)}`);
      };
      expect(refusedBy("")).toMatchObject({ reason: "empty", source: path, problems: ["the file is empty or holds only comments"] });
      expect(refusedBy("# being rewritten\n")).toMatchObject({ reason: "empty" });
      expect(refusedBy("---\n")).toMatchObject({ reason: "empty" });
      expect(refusedBy("basic_auth_users: {}\n")).toMatchObject({ reason: "drops_auth" });
      expect(refusedBy('basic_auth_users:\n  prometheus: "$2b$1')).toMatchObject({ reason: "invalid" });
      expect(reloader.poll()).toBeNull(); // reported once per change
      writeFileSync(path, good.replace("prometheus", "grafana"));
      version++;
      expect([...(reloader.poll()?.basicAuthUsers.keys() ?? [])]).toEqual(["grafana"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function waitUntil(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
