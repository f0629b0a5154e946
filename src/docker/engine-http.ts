// A one-shot DockerPort over node:http on the engine's unix socket, for `ptyreaper sessions`: loading
// dockerode costs a command that runs once about a tenth of a second; the daemon keeps dockerode.
import { request } from "node:http";
import type Docker from "dockerode";
import { DockerUnavailableError, PtyreaperError } from "../errors.js";
import type { ContainerInfo, ExecInfo } from "../domain/types.js";
import { containerInfoFrom, describe, execInfoFrom } from "./dockerode.js";
import type { DockerPort, EventStream } from "./port.js";

/** Answers bigger than this are not an engine's container list: refuse rather than buffer them. */
const MAX_BODY_BYTES = 64 * 1024 * 1024;

class HttpStatusError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

export class EngineHttpPort implements DockerPort {
  constructor(
    readonly endpoint: string,
    private readonly timeoutMs: number,
  ) {}

  async ping(): Promise<void> {
    await this.get("ping", "/_ping", false);
  }

  async listRunningContainerIds(): Promise<string[]> {
    const list = (await this.get("list containers", "/containers/json")) as { Id: string }[];
    return list.map((c) => c.Id);
  }

  async inspectContainer(id: string): Promise<ContainerInfo | null> {
    const data = await this.getOrNull(`inspect container ${id.slice(0, 12)}`, `/containers/${encodeURIComponent(id)}/json`);
    return data ? containerInfoFrom(data as Docker.ContainerInspectInfo) : null;
  }

  async inspectExec(id: string): Promise<ExecInfo | null> {
    const data = await this.getOrNull(`inspect exec ${id.slice(0, 12)}`, `/exec/${encodeURIComponent(id)}/json`);
    return data ? execInfoFrom(data as Docker.ExecInspectInfo) : null;
  }

  /** A one-shot command resyncs fully and never follows events. */
  subscribeEvents(): Promise<EventStream> {
    return Promise.reject(new DockerUnavailableError("the one-shot Docker client does not follow events"));
  }

  private async getOrNull(what: string, path: string): Promise<unknown> {
    try {
      return await this.get(what, path);
    } catch (err) {
      if ((err as { cause?: unknown }).cause instanceof HttpStatusError && ((err as { cause: HttpStatusError }).cause.statusCode === 404)) return null;
      throw err;
    }
  }

  /** One GET with a deadline; any failure becomes a DockerUnavailableError naming the call, as in DockerodePort. */
  private get(what: string, path: string, json = true): Promise<unknown> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined = undefined;
      const fail = (err: unknown): void => {
        clearTimeout(timer);
        if (err instanceof PtyreaperError) reject(err);
        else reject(new DockerUnavailableError(`docker ${what} via ${this.endpoint}: ${describe(err)}`, { cause: err }));
      };
      const req = request({ socketPath: this.endpoint, path, method: "GET", headers: { Accept: "application/json" } }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_BODY_BYTES) req.destroy(new Error(`answer larger than ${MAX_BODY_BYTES} bytes`));
          else chunks.push(chunk);
        });
        res.on("error", fail);
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const status = res.statusCode ?? 0;
          if (status < 200 || status >= 300) {
            let message = text.trim();
            try {
              message = (JSON.parse(text) as { message?: string }).message ?? message;
            } catch {
              // not JSON: the text itself is the message
            }
            fail(new HttpStatusError(status, message));
            return;
          }
          try {
            resolve(json ? (JSON.parse(text) as unknown) : text);
            clearTimeout(timer);
          } catch (err) {
            fail(err);
          }
        });
      });
      // A deadline for the whole call, as DockerodePort has: a hung engine must not hold the command.
      timer = setTimeout(() => {
        fail(new PtyreaperError("PTYR_DOCKER_TIMEOUT", `docker ${what}: no answer from ${this.endpoint} within ${this.timeoutMs} ms`));
        req.destroy();
      }, this.timeoutMs);
      req.on("error", fail);
      req.end();
    });
  }
}
