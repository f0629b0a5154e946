// TLS and basic auth on the real daemon: a self-signed certificate made here with openssl, scrapes over
// TLS with the right and a wrong password, plain HTTP on the TLS port, and promtool's view of the web config.
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { request as plainRequest } from "node:http";
import { tmpdir } from "node:os";
import { connect } from "node:tls";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import bcrypt from "bcryptjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "./support/index.js";
import { MAIN, startDaemon, type RunningDaemon } from "./support/daemon.js";

const EXAMPLE = new URL("../../config/web-config.example.yml", import.meta.url).pathname;

function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { encoding: "utf8", timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function httpsGet(url: string, ca: Buffer, headers: Record<string, string> = {}, client?: { cert: Buffer; key: Buffer }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, headers, timeout: 10_000, ...client }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
    req.end();
  });
}

/** A plain-HTTP GET; resolves with the status, or with the error code when no HTTP answer came. */
function plainGet(port: number): Promise<string> {
  return new Promise((resolve) => {
    const req = plainRequest({ host: "127.0.0.1", port, path: "/metrics", timeout: 10_000 }, (res) => {
      res.resume();
      resolve(`HTTP ${res.statusCode}`);
    });
    req.on("timeout", () => req.destroy(Object.assign(new Error("timed out"), { code: "TIMEOUT" })));
    req.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    req.end();
  });
}

/** SHA-256 fingerprint of the certificate the server at `url` presents now. */
function servedFingerprint(url: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port), rejectUnauthorized: false }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.destroy();
    });
    socket.on("error", reject);
  });
}

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

describe("the daemon with a web config (TLS and basic auth)", () => {
  let dir = "";
  let cert: Buffer = Buffer.alloc(0);
  let daemon: RunningDaemon | null = null;
  let url = "";

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "ptyreaper-tls-"));
    const made = await run("openssl", [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "-keyout",
      join(dir, "tls.key"),
      "-out",
      join(dir, "tls.crt"),
    ]);
    if (made.code !== 0) throw new Error(`openssl req failed: ${made.stderr}`);
    cert = readFileSync(join(dir, "tls.crt"));
    const hash = bcrypt.hashSync("scrape-me", 10);
    writeFileSync(
      join(dir, "web.yml"),
      `tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  prometheus: "${hash}"\n`,
    );
    daemon = await startDaemon(`pollInterval: 1s\ndocker:\n  enabled: false\nwebConfigFile: ${join(dir, "web.yml")}\n`);
    const started = daemon.logs().find((l) => l.msg === "ptyreaper started");
    url = String(started?.address);
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("listens on https and serves /metrics to the right password, gzipped when asked", async () => {
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const res = await httpsGet(`${url}/metrics`, cert, { authorization: basic("prometheus", "scrape-me"), "accept-encoding": "gzip" });
    expect(res.status).toBe(200);
    expect(res.headers["content-encoding"]).toBe("gzip");
    expect(gunzipSync(res.body).toString()).toMatch(/^ptyreaper_pty_allocated \d+$/m);
    const probe = await httpsGet(`${url}/healthz`, cert, { authorization: basic("prometheus", "scrape-me") });
    expect(probe.status).toBe(200);
  });

  it("answers 401 to a wrong password and to none", async () => {
    const wrong = await httpsGet(`${url}/metrics`, cert, { authorization: basic("prometheus", "scrape-me!") });
    expect(wrong.status).toBe(401);
    expect(wrong.headers["www-authenticate"]).toMatch(/^Basic /);
    expect(JSON.parse(wrong.body.toString())).toMatchObject({ code: "PTYR_HTTP_UNAUTHORIZED" });
    expect((await httpsGet(`${url}/sessions`, cert)).status).toBe(401);
  });

  it("refuses plain HTTP on the TLS port (no HTTP answer, no metrics)", async () => {
    const port = Number(new URL(url).port);
    const outcome = await plainGet(port);
    expect(outcome).not.toMatch(/^HTTP/);
    expect(["ECONNRESET", "EPIPE", "ECONNREFUSED"]).toContain(outcome);
    // The daemon is still serving TLS afterwards.
    expect((await httpsGet(`${url}/metrics`, cert, { authorization: basic("prometheus", "scrape-me") })).status).toBe(200);
  });

  it("the example web config passes promtool check web-config and ptyreaper check-config, given its files", async () => {
    const help = await run("promtool", ["--help"]);
    expect(help.stdout + help.stderr).toContain("check web-config");
    const exampleDir = mkdtempSync(join(tmpdir(), "ptyreaper-webcfg-"));
    try {
      copyFileSync(EXAMPLE, join(exampleDir, "web.yml"));
      copyFileSync(join(dir, "tls.crt"), join(exampleDir, "tls.crt"));
      copyFileSync(join(dir, "tls.key"), join(exampleDir, "tls.key"));
      const promtool = await run("promtool", ["check", "web-config", join(exampleDir, "web.yml")]);
      expect(promtool, promtool.stderr).toMatchObject({ code: 0 });
      writeFileSync(join(exampleDir, "config.yaml"), `webConfigFile: ${join(exampleDir, "web.yml")}\n`);
      const ours = await run(process.execPath, [MAIN, "check-config", join(exampleDir, "config.yaml")]);
      expect(ours, ours.stderr).toMatchObject({ code: 0 });
      // Both refuse the same typo.
      writeFileSync(join(exampleDir, "bad.yml"), "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  certfile: x\n");
      expect((await run("promtool", ["check", "web-config", join(exampleDir, "bad.yml")])).code).not.toBe(0);
      writeFileSync(join(exampleDir, "config.yaml"), `webConfigFile: ${join(exampleDir, "bad.yml")}\n`);
      const refused = await run(process.execPath, [MAIN, "check-config", join(exampleDir, "config.yaml")]);
      expect(refused.code).toBe(78);
      expect(refused.stderr).toBe(`${join(exampleDir, "bad.yml")}: tls_server_config.certfile: unknown key\n`);
    } finally {
      rmSync(exampleDir, { recursive: true, force: true });
    }
  });

  it("with RequireAndVerifyClientCert, only a client with a certificate from client_ca_file gets an answer", async () => {
    const openssl = async (args: string[]): Promise<void> => {
      const res = await run("openssl", args);
      if (res.code !== 0) throw new Error(`openssl ${args[0]} failed: ${res.stderr}`);
    };
    await openssl([
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=test client CA",
      "-keyout",
      join(dir, "ca.key"),
      "-out",
      join(dir, "ca.crt"),
    ]);
    await openssl([
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-subj",
      "/CN=prometheus",
      "-keyout",
      join(dir, "client.key"),
      "-out",
      join(dir, "client.csr"),
    ]);
    await openssl([
      "x509",
      "-req",
      "-in",
      join(dir, "client.csr"),
      "-CA",
      join(dir, "ca.crt"),
      "-CAkey",
      join(dir, "ca.key"),
      "-CAcreateserial",
      "-days",
      "1",
      "-out",
      join(dir, "client.crt"),
    ]);
    writeFileSync(
      join(dir, "mtls.yml"),
      "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    );
    const mtls = await startDaemon(`docker:\n  enabled: false\nwebConfigFile: ${join(dir, "mtls.yml")}\n`);
    try {
      const mtlsUrl = String(mtls.logs().find((l) => l.msg === "ptyreaper started")?.address);
      const client = { cert: readFileSync(join(dir, "client.crt")), key: readFileSync(join(dir, "client.key")) };
      expect((await httpsGet(`${mtlsUrl}/healthz`, cert, {}, client)).status).toBe(200);
      await expect(httpsGet(`${mtlsUrl}/healthz`, cert)).rejects.toThrow();
      // A certificate the CA did not sign: the server's own, self-signed.
      await expect(httpsGet(`${mtlsUrl}/healthz`, cert, {}, { cert, key: readFileSync(join(dir, "tls.key")) })).rejects.toThrow();
    } finally {
      await mtls.stop();
    }
  });

  it("serves a renewed certificate without a restart, as exporter-toolkit does", async () => {
    const before = new X509Certificate(cert).fingerprint256;
    expect(await servedFingerprint(url)).toBe(before);
    const made = await run("openssl", [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "2",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "-keyout",
      join(dir, "new.key"),
      "-out",
      join(dir, "new.crt"),
    ]);
    expect(made.code, made.stderr).toBe(0);
    const after = new X509Certificate(readFileSync(join(dir, "new.crt"))).fingerprint256;
    renameSync(join(dir, "new.key"), join(dir, "tls.key"));
    renameSync(join(dir, "new.crt"), join(dir, "tls.crt"));
    await waitFor(async () => (await servedFingerprint(url)) === after, 30_000, "the renewed certificate to be served");
    const res = await httpsGet(`${url}/healthz`, readFileSync(join(dir, "tls.crt")), { authorization: basic("prometheus", "scrape-me") });
    expect(res.status).toBe(200);
    cert = readFileSync(join(dir, "tls.crt"));
  }, 60_000);

  it("a broken web config stops the daemon at start with exit 78 and one line", async () => {
    writeFileSync(join(dir, "broken.yml"), "basic_auth_users:\n  prometheus: plaintext\n");
    writeFileSync(join(dir, "config.yaml"), `docker:\n  enabled: false\nwebConfigFile: ${join(dir, "broken.yml")}\n`);
    const res = await run(process.execPath, [MAIN, "run", "--config", join(dir, "config.yaml"), "--listen", "127.0.0.1:0"]);
    expect(res.code).toBe(78);
    expect(res.stderr).toBe(
      `ptyreaper: ${join(dir, "broken.yml")}: basic_auth_users.prometheus: expected a bcrypt hash like "$2y$10$…" (htpasswd -nBC 10 USER)\n`,
    );
  });
});
