// A Docker socket that misbehaves on demand: it accepts connections and never answers ("hang"), or passes
// them through to a real engine ("proxy"); switching to hang freezes the connections already open too.
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { rmSync } from "node:fs";

export type FakeDockerMode = "hang" | "proxy";

export interface FakeDockerSocket {
  readonly path: string;
  readonly mode: FakeDockerMode;
  /** hang: every open and new connection goes silent; proxy: new ones reach the engine, frozen ones resume. */
  setMode(mode: FakeDockerMode): void;
  /** Client connections open right now (a client that never closes what it gave up on makes this grow). */
  openConnections(): number;
  /** Client connections accepted so far. */
  acceptedConnections(): number;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket | null;
  frozen: boolean;
}

/** Listens on `path`; in proxy mode connects each client to the unix socket `upstream`. */
export async function startFakeDockerSocket(path: string, opts: { mode: FakeDockerMode; upstream?: string }): Promise<FakeDockerSocket> {
  if (opts.mode === "proxy" && !opts.upstream) throw new Error("proxy mode needs an upstream socket");
  let mode = opts.mode;
  let accepted = 0;
  const pairs = new Set<Pair>();

  const freeze = (pair: Pair): void => {
    if (pair.frozen) return;
    pair.frozen = true;
    if (pair.upstream) {
      pair.client.unpipe(pair.upstream);
      pair.upstream.unpipe(pair.client);
      pair.upstream.pause();
    }
    // Keep reading what the client sends (and drop it) so its writes never block: silence, not back-pressure.
    pair.client.on("data", discard);
    pair.client.resume();
  };
  const thaw = (pair: Pair): void => {
    if (!pair.frozen) return;
    pair.frozen = false;
    pair.client.off("data", discard);
    if (!pair.upstream) {
      pair.client.destroy(); // it never reached the engine: let the client retry
      return;
    }
    pair.client.pipe(pair.upstream);
    pair.upstream.pipe(pair.client);
  };

  const server: Server = createServer((client) => {
    accepted++;
    const pair: Pair = { client, upstream: null, frozen: false };
    pairs.add(pair);
    client.on("close", () => {
      pairs.delete(pair);
      pair.upstream?.destroy();
    });
    client.on("error", () => client.destroy());
    if (mode === "hang") {
      freeze(pair);
      return;
    }
    const upstream = createConnection(opts.upstream as string);
    pair.upstream = upstream;
    upstream.on("error", () => client.destroy());
    upstream.on("close", () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });

  rmSync(path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });

  return {
    path,
    get mode() {
      return mode;
    },
    setMode(next) {
      if (next === "proxy" && !opts.upstream) throw new Error("proxy mode needs an upstream socket");
      mode = next;
      for (const pair of pairs) (next === "hang" ? freeze : thaw)(pair);
    },
    openConnections: () => pairs.size,
    acceptedConnections: () => accepted,
    async close() {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream?.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(path, { force: true });
    },
  };
}

function discard(): void {
  // what a hung engine does with a request
}
