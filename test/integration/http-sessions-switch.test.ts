// http.sessions on the real daemon over loopback: off, /sessions answers 404 and the rest is served; a SIGHUP turns it back on.
import { writeFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { waitFor } from "./support/index.js";
import { startDaemon, type RunningDaemon } from "./support/daemon.js";

/** Nothing to reap: no runtime, dry-run. */
const DAEMON =
  "pollInterval: 1s\ndocker:\n  enabled: false\nruntimes:\n  containerd:\n    enabled: false\n  podman:\n    enabled: false\nreaper:\n  mode: dry-run\n";

describe("http.sessions (real daemon)", () => {
  let daemon: RunningDaemon | null = null;
  afterAll(async () => {
    await daemon?.stop();
  });

  it("off: /sessions is 404 like an unknown path while /metrics and /healthz answer; on again after SIGHUP: the snapshot as today", async () => {
    const d = await startDaemon(`${DAEMON}http:\n  sessions: false\n`);
    daemon = d;
    await waitFor(async () => (await d.get("/readyz")).status === 200, 30_000, "the first cycle");
    const off = await d.get("/sessions");
    expect(off.status).toBe(404);
    expect(JSON.parse(off.body)).toEqual({ error: "not found", code: "PTYR_HTTP_NOT_FOUND" });
    expect((await d.get("/")).body).not.toContain("/sessions");
    expect((await d.get("/metrics")).status).toBe(200);
    expect((await d.get("/healthz")).status).toBe(200);

    const configPath = String(d.logs().find((l) => l.msg === "ptyreaper started")?.config);
    writeFileSync(configPath, DAEMON);
    const reloads = d.logs().filter((l) => l.msg === "config reloaded").length;
    d.child.kill("SIGHUP");
    await waitFor(() => d.logs().filter((l) => l.msg === "config reloaded").length > reloads, 10_000, "the SIGHUP reload");
    const on = await d.get("/sessions");
    expect(on.status).toBe(200);
    expect(JSON.parse(on.body)).toHaveProperty("sessions");
  }, 60_000);
});
