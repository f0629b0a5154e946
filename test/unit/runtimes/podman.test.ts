// PodmanRuntime's kill decisions against a fake libpod service on a unix socket: which versions remove, and what each answer means.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RuntimeUnavailableError } from "../../../src/errors.js";
import { PodmanRuntime, parseMajorMinor } from "../../../src/runtimes/podman/podman.js";

const CID = "8785db21c9cb16e8afa07314f427fbbe6107bb031a7678ca193808ef61ed8af3";
const EXEC = "7acca8a602b970e87304a31cab0fefc9c8b3c5283806970d287c86e82935311e";

interface FakeLibpod {
  version: string;
  /** Answer of POST /exec/{id}/remove: a status and body, or "missing route" (Podman before 4.8). */
  remove: { status: number; body: string } | "missing route";
}

let server: Server | null = null;
let dir = "";

async function serve(fake: FakeLibpod): Promise<{ runtime: PodmanRuntime; calls: string[] }> {
  dir = mkdtempSync(join(tmpdir(), "ptyr-libpod-"));
  const socket = join(dir, "podman.sock");
  const calls: string[] = [];
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString()));
    req.on("end", () => {
      calls.push(`${req.method} ${req.url} ${body}`.trim());
      const json = (status: number, value: unknown): void => {
        res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(value));
      };
      if (req.url === "/v4.0.0/libpod/version") return json(200, { Version: fake.version });
      if (req.url === `/v4.0.0/libpod/exec/${EXEC}/json`)
        return json(200, { ID: EXEC, ContainerID: CID, Running: true, Pid: 4242, ProcessConfig: { tty: true } });
      if (req.url?.endsWith("/json")) return json(404, { cause: "no such exec session", message: "no such exec session", response: 404 });
      if (req.url === `/v4.0.0/libpod/exec/${EXEC}/remove` && fake.remove !== "missing route") {
        res.writeHead(fake.remove.status, { "content-type": "application/json" }).end(fake.remove.body);
        return;
      }
      res.writeHead(404, { "content-type": "text/plain" }).end("Not Found\n");
    });
  });
  await new Promise<void>((resolve) => server?.listen(socket, resolve));
  return { runtime: new PodmanRuntime({ socket, callTimeoutMs: 2_000 }), calls };
}

afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = null;
  rmSync(dir, { recursive: true, force: true });
});

const target = { id: EXEC, container: { namespace: null, id: CID } };

describe("PodmanRuntime.killExec", () => {
  it("4.3 has no exec removal: unsupported, and nothing is removed", async () => {
    const { runtime, calls } = await serve({ version: "4.3.1", remove: "missing route" });
    expect(await runtime.killExec(target, "SIGTERM")).toBe("unsupported");
    expect(calls.some((call) => call.includes("/remove"))).toBe(false);
  });

  it("4.8 and later remove the session with force", async () => {
    const { runtime, calls } = await serve({ version: "4.9.3", remove: { status: 200, body: "" } });
    expect(await runtime.killExec(target, "SIGHUP")).toBe("signalled");
    expect(calls).toContain(`POST /v4.0.0/libpod/exec/${EXEC}/remove {"Force":true}`);
  });

  it("a 4.8+ service without the route after all: unsupported", async () => {
    const { runtime } = await serve({ version: "5.0.0", remove: "missing route" });
    expect(await runtime.killExec(target, "SIGTERM")).toBe("unsupported");
  });

  it("an exec removed meanwhile: gone", async () => {
    const { runtime } = await serve({
      version: "4.9.3",
      remove: { status: 404, body: JSON.stringify({ cause: "no such exec session", response: 404 }) },
    });
    expect(await runtime.killExec(target, "SIGTERM")).toBe("gone");
  });

  it("an unknown exec, or one of another container: gone, without a remove", async () => {
    const { runtime, calls } = await serve({ version: "4.9.3", remove: { status: 200, body: "" } });
    expect(await runtime.killExec({ ...target, id: "0".repeat(64) }, "SIGTERM")).toBe("gone");
    expect(await runtime.killExec({ ...target, container: { namespace: null, id: "f".repeat(64) } }, "SIGTERM")).toBe("gone");
    expect(calls.some((call) => call.includes("/remove"))).toBe(false);
  });

  it("refuses an ID that is not an exec session ID, before any call", async () => {
    const { runtime, calls } = await serve({ version: "4.9.3", remove: { status: 200, body: "" } });
    await expect(runtime.killExec({ ...target, id: "" }, "SIGTERM")).rejects.toThrow(/refusing to remove through podman/);
    await expect(runtime.killExec({ ...target, id: "../containers/x" }, "SIGTERM")).rejects.toThrow(RangeError);
    expect(calls).toEqual([]);
  });

  it("a refusal is a runtime error naming the call", async () => {
    const { runtime } = await serve({ version: "4.9.3", remove: { status: 500, body: JSON.stringify({ cause: "boom" }) } });
    await expect(runtime.killExec(target, "SIGTERM")).rejects.toThrow(RuntimeUnavailableError);
    await expect(runtime.killExec(target, "SIGTERM")).rejects.toThrow(/POST \/exec\/7acca8a602b9.*\/remove: HTTP 500/);
  });
});

describe("parseMajorMinor", () => {
  it.each([
    ["4.3.1", [4, 3]],
    ["v4.9.3", [4, 9]],
    ["5.0.0-dev", [5, 0]],
    ["", null],
    ["dev", null],
  ])("%j", (text, expected) => {
    expect(parseMajorMinor(text)).toEqual(expected);
  });
});
