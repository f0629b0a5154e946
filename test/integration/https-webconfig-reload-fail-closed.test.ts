// Web config reloads fail closed on the real daemon: a truncated, then comment-only web config leaves basic auth in force,
// a restored one applies again, and a rewrite without tls_server_config leaves TLS in force (certificate made with openssl).
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import bcrypt from "bcryptjs";
import { afterAll, describe, expect, it } from "vitest";
import { waitFor } from "./support/index.js";
import { readMetric, startDaemon, type RunningDaemon } from "./support/daemon.js";

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const RIGHT = basic("prometheus", "scrape-me");
const HASH = bcrypt.hashSync("scrape-me", 10);
/** Nothing to reap: no runtime, dry-run. */
const DAEMON = "docker:\n  enabled: false\nruntimes:\n  containerd:\n    enabled: false\n  podman:\n    enabled: false\nreaper:\n  mode: dry-run\n";
/** The reloader checks every 10 s; a check may land just after a write. */
const RELOAD_CHECK_WAIT_MS = 30_000;

/** One GET, over TLS when `ca` is given; resolves with the status and body. */
function get(url: string, authorization?: string, ca?: Buffer): Promise<{ status: number; body: string }> {
  const headers: Record<string, string> = authorization ? { authorization } : {};
  if (!ca) return fetch(url, { headers }).then(async (res) => ({ status: res.status, body: await res.text() }));
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, headers, timeout: 10_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
    req.end();
  });
}

/** Web config refusals the daemon has logged so far. */
function refusals(daemon: RunningDaemon): Record<string, unknown>[] {
  return daemon.logs().filter((l) => String(l.msg).startsWith("web config changed but cannot be used"));
}

/** Writes the web config, then waits for the reloader's next verdict on it: one more refusal logged. */
async function writeAndAwaitRefusal(daemon: RunningDaemon, path: string, text: string): Promise<Record<string, unknown>> {
  const before = refusals(daemon).length;
  writeFileSync(path, text);
  return waitFor(() => refusals(daemon)[before], RELOAD_CHECK_WAIT_MS, "the reload check to refuse the web config");
}

describe("web config reloads fail closed (real daemon)", () => {
  const dir = mkdtempSync(join(tmpdir(), "ptyreaper-failclosed-"));
  const daemons: RunningDaemon[] = [];
  afterAll(async () => {
    for (const d of daemons) await d.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("a truncated, then comment-only web config keeps basic auth in force (401 without credentials); restored, it keeps working", async () => {
    const path = join(dir, "web.yml");
    const good = `basic_auth_users:\n  prometheus: "${HASH}"\n`;
    writeFileSync(path, good);
    const daemon = await startDaemon(`${DAEMON}webConfigFile: ${path}\n`);
    daemons.push(daemon);
    const url = daemon.baseUrl;
    expect((await get(`${url}/healthz`)).status).toBe(401);
    expect((await get(`${url}/healthz`, RIGHT)).status).toBe(200);

    const truncated = await writeAndAwaitRefusal(daemon, path, "");
    expect(truncated).toMatchObject({ level: 50, file: path, reason: "empty" });
    expect(String(truncated.msg)).toContain(path);
    expect((await get(`${url}/metrics`)).status).toBe(401);
    expect((await get(`${url}/sessions`)).status).toBe(401);
    expect((await get(`${url}/healthz`, RIGHT)).status).toBe(200);

    expect(await writeAndAwaitRefusal(daemon, path, "# being rewritten by the config manager\n")).toMatchObject({ reason: "empty" });
    expect((await get(`${url}/metrics`)).status).toBe(401);
    // A file that does not parse, and one that parses but would turn auth off: refused alike.
    expect(await writeAndAwaitRefusal(daemon, path, 'basic_auth_users:\n  prometheus: "$2b$10$')).toMatchObject({ reason: "invalid" });
    expect((await get(`${url}/metrics`)).status).toBe(401);
    expect(await writeAndAwaitRefusal(daemon, path, "basic_auth_users: {}\n")).toMatchObject({ reason: "drops_auth" });
    expect((await get(`${url}/metrics`)).status).toBe(401);

    const metrics = (await get(`${url}/metrics`, RIGHT)).body;
    expect(readMetric(metrics, "ptyreaper_web_config_reload_failures_total", { reason: "empty" })).toBeGreaterThanOrEqual(2);
    expect(readMetric(metrics, "ptyreaper_web_config_reload_failures_total", { reason: "invalid" })).toBeGreaterThanOrEqual(1);
    expect(readMetric(metrics, "ptyreaper_web_config_reload_failures_total", { reason: "drops_auth" })).toBe(1);

    // Restored (with a second user, to see that it is applied): it is read again and works.
    const reloadedBefore = daemon.logs().filter((l) => l.msg === "web config reloaded").length;
    writeFileSync(path, `${good}  grafana: "${HASH}"\n`);
    await waitFor(
      () => daemon.logs().filter((l) => l.msg === "web config reloaded").length > reloadedBefore,
      RELOAD_CHECK_WAIT_MS,
      "the restored web config to be reloaded",
    );
    expect((await get(`${url}/metrics`)).status).toBe(401);
    expect((await get(`${url}/metrics`, RIGHT)).status).toBe(200);
    expect((await get(`${url}/metrics`, basic("grafana", "scrape-me"))).status).toBe(200);
    expect(daemon.child.exitCode).toBeNull();
  }, 180_000);

  it("a reload that would drop TLS is refused: https with auth goes on", async () => {
    await new Promise<void>((resolve, reject) =>
      execFile(
        "openssl",
        [
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
          "subjectAltName=IP:127.0.0.1",
          "-keyout",
          join(dir, "tls.key"),
          "-out",
          join(dir, "tls.crt"),
        ],
        { timeout: 60_000 },
        (err, _stdout, stderr) => (err ? reject(new Error(`openssl req failed: ${stderr}`)) : resolve()),
      ),
    );
    const ca = readFileSync(join(dir, "tls.crt"));
    const path = join(dir, "tls-web.yml");
    const users = `basic_auth_users:\n  prometheus: "${HASH}"\n`;
    writeFileSync(path, `tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n${users}`);
    const daemon = await startDaemon(`${DAEMON}webConfigFile: ${path}\n`);
    daemons.push(daemon);
    const url = String(daemon.logs().find((l) => l.msg === "ptyreaper started")?.address);
    expect(url).toMatch(/^https:\/\//);
    expect((await get(`${url}/healthz`, RIGHT, ca)).status).toBe(200);

    const refused = await writeAndAwaitRefusal(daemon, path, users);
    expect(refused).toMatchObject({ file: path, reason: "drops_tls" });
    expect((await get(`${url}/healthz`, undefined, ca)).status).toBe(401);
    const metrics = await get(`${url}/metrics`, RIGHT, ca);
    expect(metrics.status).toBe(200);
    expect(readMetric(metrics.body, "ptyreaper_web_config_reload_failures_total", { reason: "drops_tls" })).toBe(1);
    expect(daemon.child.exitCode).toBeNull();
  }, 120_000);
});
