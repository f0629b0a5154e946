// One HTTP request over a unix socket (a container engine's API), with a deadline for the whole call and a
// bound on the answer: a hung or hostile engine can neither hold a caller nor fill its memory.
import { request, type RequestOptions } from "node:http";

export interface UnixHttpAnswer {
  status: number;
  text: string;
}

export interface UnixHttpRequest {
  socket: string;
  method: string;
  path: string;
  /** JSON text to send, if any. */
  body?: string;
  headers?: Record<string, string>;
  timeoutMs: number;
  maxBytes: number;
}

/** The whole call took longer than its deadline. */
export class UnixHttpTimeoutError extends Error {}

export function unixHttp(call: UnixHttpRequest): Promise<UnixHttpAnswer> {
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined = undefined;
    const fail = (err: unknown): void => {
      clearTimeout(timer);
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    const headers = {
      ...call.headers,
      ...(call.body === undefined ? {} : { "content-type": "application/json", "content-length": String(Buffer.byteLength(call.body)) }),
    };
    // servername "" (an agent option Node's types leave out): no TLS name to work out for a unix
    // socket. Working it out compiles Node's IPv6 pattern: ~10 ms of a one-shot CLI's first request.
    const options: RequestOptions & { servername: string } = {
      socketPath: call.socket,
      path: call.path,
      method: call.method,
      headers,
      servername: "",
    };
    const req = request(options, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > call.maxBytes) req.destroy(new Error(`answer larger than ${call.maxBytes} bytes`));
        else chunks.push(chunk);
      });
      res.on("error", fail);
      res.on("end", () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") });
      });
    });
    timer = setTimeout(() => {
      fail(new UnixHttpTimeoutError(`no answer within ${call.timeoutMs} ms`));
      req.destroy();
    }, call.timeoutMs);
    req.on("error", fail);
    req.end(call.body);
  });
}
