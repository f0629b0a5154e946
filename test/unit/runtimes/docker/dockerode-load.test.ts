// The Engine client over dockerode: loaded only when a client is made, and a missing socket is an answer, not a load error.
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { DockerodeEngine } from "../../../../src/runtimes/docker/dockerode.js";

const require = createRequire(import.meta.url);

describe("DockerodeEngine loading", () => {
  it("loads dockerode with the first client and reports a missing socket", async () => {
    const loaded = (): boolean => Object.keys(require.cache).some((path) => path.includes("/dockerode/lib/docker.js"));
    expect(loaded()).toBe(false);
    const engine = new DockerodeEngine("/nonexistent/docker.sock", 1_000);
    expect(loaded()).toBe(true);
    await expect(engine.ping()).rejects.toThrow(/socket not found/);
  });
});
