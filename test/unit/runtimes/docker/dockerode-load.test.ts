// Loading dockerode without its BuildKit session client and ssh transport: the port works, gRPC and ssh2 never load.
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { DockerodeEngine } from "../../../../src/runtimes/docker/dockerode.js";

const require = createRequire(import.meta.url);

describe("DockerodeEngine loading", () => {
  it("stubs dockerode's session module, so gRPC and protobuf are never loaded", async () => {
    const port = new DockerodeEngine("/nonexistent/docker.sock", 1_000);
    const loaded = Object.keys(require.cache);
    expect(loaded.some((path) => path.includes("/dockerode/lib/docker.js"))).toBe(true);
    expect(loaded.some((path) => path.includes("@grpc/grpc-js") || path.includes("/protobufjs/"))).toBe(false);
    const session = require.cache[require.resolve("dockerode/lib/session.js")]?.exports as () => void;
    expect(session).toThrow("docker build sessions are not available in ptyreaper");
    // ssh2 (for ssh:// engines) reserves 16 MB of WebAssembly memory as it loads: never loaded either.
    expect(loaded.some((path) => path.includes("/node_modules/ssh2/"))).toBe(false);
    const fromDockerode = createRequire(require.resolve("dockerode"));
    const ssh = require.cache[fromDockerode.resolve("docker-modem/lib/ssh.js")]?.exports as () => void;
    expect(ssh).toThrow(/ssh:\/\/ Docker hosts are not supported/);
    // The rest of dockerode still works: a missing socket is reported, not a load error.
    await expect(port.ping()).rejects.toThrow(/socket not found/);
  });
});
