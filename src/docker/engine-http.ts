// A one-shot DockerPort over node:http on the engine's unix socket, for `ptyreaper sessions`: loading
// dockerode costs a command that runs once about a tenth of a second; the daemon keeps dockerode.
import type Docker from "dockerode";
import { DockerUnavailableError, PtyreaperError } from "../errors.js";
import type { ContainerInfo, ExecInfo } from "../domain/types.js";
import { containerInfoFrom, describe, execInfoFrom } from "./dockerode.js";
import type { DockerPort, EventStream } from "./port.js";
import { UnixHttpTimeoutError, unixHttp } from "../unix-http.js";

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
  private async get(what: string, path: string, json = true): Promise<unknown> {
    const unavailable = (err: unknown): DockerUnavailableError => new DockerUnavailableError(`docker ${what} via ${this.endpoint}: ${describe(err)}`, { cause: err });
    let answer;
    try {
      answer = await unixHttp({ socket: this.endpoint, method: "GET", path, headers: { Accept: "application/json" }, timeoutMs: this.timeoutMs, maxBytes: MAX_BODY_BYTES });
    } catch (err) {
      // A deadline for the whole call, as DockerodePort has: a hung engine must not hold the command.
      if (err instanceof UnixHttpTimeoutError) throw new PtyreaperError("PTYR_DOCKER_TIMEOUT", `docker ${what}: no answer from ${this.endpoint} within ${this.timeoutMs} ms`);
      throw unavailable(err);
    }
    if (answer.status < 200 || answer.status >= 300) {
      let message = answer.text.trim();
      try {
        message = (JSON.parse(answer.text) as { message?: string }).message ?? message;
      } catch {
        // not JSON: the text itself is the message
      }
      throw unavailable(new HttpStatusError(answer.status, message));
    }
    try {
      return json ? (JSON.parse(answer.text) as unknown) : answer.text;
    } catch (err) {
      throw unavailable(err);
    }
  }
}
