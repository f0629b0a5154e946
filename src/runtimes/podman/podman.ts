// RuntimePort over Podman's libpod REST API (`podman system service`, unix socket): containers, ExecIDs, exec inspect, exec removal.
import { RuntimeUnavailableError } from "../../errors.js";
import { unixHttp } from "../../unix-http.js";
import type { RuntimeName } from "../../domain/attribution.js";
import { type ExecSignal, type KillOutcome, type RuntimePort } from "../port.js";
import { kubernetesRefOf, type ContainerRef, type RuntimeContainer, type RuntimeExec } from "../../domain/runtime.js";

/** Podman's standard socket when its service runs as root. */
export const PODMAN_SOCKET = "/run/podman/podman.sock";
/** The libpod API prefix; 4.0.0 is the oldest version Podman 4 answers. */
const API = "/v4.0.0/libpod";
/** The first version with exec removal (`POST /exec/{id}/remove`, TERM then KILL); not installable here (Debian 12 has 4.3). */
const EXEC_REMOVE_SINCE: readonly [number, number] = [4, 8];

export interface PodmanOptions {
  socket: string;
  callTimeoutMs?: number;
}

/** Answers bigger than this are not an engine's container list: refuse rather than buffer them. */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

interface Answer {
  status: number;
  /** Parsed JSON, or the text when the body is not JSON (an unknown route answers plain "Not Found"). */
  body: unknown;
}

/** [major, minor] of a version string, or null. */
export function parseMajorMinor(version: string): [number, number] | null {
  const match = /^v?(\d+)\.(\d+)/.exec(version);
  return match ? [Number(match[1]), Number(match[2])] : null;
}

function atLeast(version: [number, number] | null, since: readonly [number, number]): boolean {
  return version !== null && (version[0] > since[0] || (version[0] === since[0] && version[1] >= since[1]));
}

/** A 404 from a known route carries libpod's JSON error; an unknown route (older Podman) answers plain text. */
function isNoSuchObject(answer: Answer): boolean {
  return answer.status === 404 && typeof answer.body === "object" && answer.body !== null;
}

interface ContainerInspect {
  Id: string;
  Name?: string;
  State: { Running: boolean; Pid: number };
  Config: { Labels: Record<string, string> | null };
  ExecIDs: string[] | null;
}

interface ExecInspect {
  ID: string;
  ContainerID: string;
  Running: boolean;
  Pid: number;
  ProcessConfig: { tty: boolean } | null;
}

export class PodmanRuntime implements RuntimePort {
  readonly runtime: RuntimeName = "podman";
  readonly endpoint: string;
  private readonly callTimeoutMs: number;
  private versionSeen: [number, number] | null = null;

  constructor(options: PodmanOptions) {
    this.endpoint = options.socket;
    this.callTimeoutMs = options.callTimeoutMs ?? 5_000;
  }

  private async call(method: string, path: string, body?: unknown): Promise<Answer> {
    let answer;
    try {
      answer = await unixHttp({
        socket: this.endpoint,
        method,
        path: `${API}${path}`,
        body: body === undefined ? undefined : JSON.stringify(body),
        timeoutMs: this.callTimeoutMs,
        maxBytes: MAX_ANSWER_BYTES,
      });
    } catch (err) {
      throw new RuntimeUnavailableError("podman", `podman at ${this.endpoint}: ${method} ${path}: ${(err as Error).message}`, { cause: err });
    }
    let parsed: unknown = answer.text;
    try {
      parsed = answer.text ? JSON.parse(answer.text) : null;
    } catch {
      // plain text: kept as is
    }
    return { status: answer.status, body: parsed };
  }

  private unexpected(what: string, answer: Answer): RuntimeUnavailableError {
    const detail = typeof answer.body === "string" ? answer.body.trim() : JSON.stringify(answer.body);
    return new RuntimeUnavailableError("podman", `podman at ${this.endpoint}: ${what}: HTTP ${answer.status}: ${detail.slice(0, 200)}`);
  }

  async version(): Promise<string> {
    const answer = await this.call("GET", "/version");
    if (answer.status !== 200) throw this.unexpected("GET /version", answer);
    const version = (answer.body as { Version?: string }).Version ?? "";
    this.versionSeen = parseMajorMinor(version);
    return version;
  }

  async listContainers(): Promise<RuntimeContainer[]> {
    const answer = await this.call("GET", "/containers/json");
    if (answer.status !== 200) throw this.unexpected("GET /containers/json", answer);
    const found: RuntimeContainer[] = [];
    for (const { Id } of answer.body as { Id: string }[]) {
      const container = await this.getContainer({ namespace: null, id: Id });
      if (container) found.push(container);
    }
    return found;
  }

  private async inspect(id: string): Promise<ContainerInspect | null> {
    const answer = await this.call("GET", `/containers/${encodeURIComponent(id)}/json`);
    if (isNoSuchObject(answer)) return null;
    if (answer.status !== 200) throw this.unexpected(`GET /containers/${id}/json`, answer);
    return answer.body as ContainerInspect;
  }

  async getContainer(ref: ContainerRef): Promise<RuntimeContainer | null> {
    const inspect = await this.inspect(ref.id);
    if (!inspect?.State.Running) return null;
    const labels = inspect.Config.Labels ?? {};
    return {
      namespace: null,
      id: inspect.Id,
      runtime: "podman",
      initPid: inspect.State.Pid > 0 ? inspect.State.Pid : null,
      labels,
      ...(inspect.Name ? { name: inspect.Name.replace(/^\//, "") } : {}),
      kubernetes: kubernetesRefOf(labels),
    };
  }

  async listExecs(ref: ContainerRef): Promise<RuntimeExec[]> {
    const inspect = await this.inspect(ref.id);
    if (!inspect) return [];
    const execs: RuntimeExec[] = [];
    for (const id of inspect.ExecIDs ?? []) {
      const answer = await this.call("GET", `/exec/${encodeURIComponent(id)}/json`);
      if (isNoSuchObject(answer)) continue; // removed between the two calls
      if (answer.status !== 200) throw this.unexpected(`GET /exec/${id}/json`, answer);
      const exec = answer.body as ExecInspect;
      execs.push({
        id: exec.ID,
        container: { namespace: null, id: inspect.Id },
        pid: exec.Pid,
        running: exec.Running,
        tty: exec.ProcessConfig?.tty ?? null,
      });
    }
    return execs;
  }

  /**
   * Podman has no call to signal an exec: from 4.8 an exec session can be removed with force (Podman
   * sends TERM, then KILL), whatever signal was asked; before 4.8 this is "unsupported" and the caller
   * signals the exec's pid itself.
   */
  async killExec(exec: Pick<RuntimeExec, "id" | "container">, _signal: ExecSignal): Promise<KillOutcome> {
    if (!/^[0-9a-f]{64}$/.test(exec.id))
      throw new RangeError(`refusing to remove through podman: ${JSON.stringify(exec.id)} is not an exec session ID`);
    const seen = await this.call("GET", `/exec/${encodeURIComponent(exec.id)}/json`);
    if (isNoSuchObject(seen)) return "gone";
    if (seen.status !== 200) throw this.unexpected(`GET /exec/${exec.id}/json`, seen);
    if ((seen.body as ExecInspect).ContainerID !== exec.container.id) return "gone"; // not that container's exec
    if (this.versionSeen === null) await this.version();
    if (!atLeast(this.versionSeen, EXEC_REMOVE_SINCE)) return "unsupported";
    const removed = await this.call("POST", `/exec/${encodeURIComponent(exec.id)}/remove`, { Force: true });
    if (removed.status === 200 || removed.status === 204) return "signalled";
    if (isNoSuchObject(removed)) return "gone";
    if (removed.status === 404) return "unsupported"; // the route itself is missing
    throw this.unexpected(`POST /exec/${exec.id}/remove`, removed);
  }

  close(): void {
    // one request per call: nothing to close
  }
}
