// systemd's notify protocol (sd_notify): READY, WATCHDOG, STOPPING and STATUS datagrams to $NOTIFY_SOCKET.
import { execFile } from "node:child_process";
import { createRequire } from "node:module";

/** The daemon's one notifier port (app.ts); silent outside systemd. */
export interface Notifier {
  /** READY=1, with an optional STATUS= in the same datagram. */
  ready(status?: string): void;
  /** WATCHDOG=1; sent only when systemd asked for a watchdog (WATCHDOG_USEC) for this process. */
  watchdog(): void;
  stopping(): void;
  status(text: string): void;
  /** Half of WatchdogSec (as sd_watchdog_enabled() suggests), or null when there is no watchdog. */
  readonly watchdogIntervalMs: number | null;
  /** Resolves when every message handed over so far has been sent (or has failed). */
  flush(): Promise<void>;
  /** Later calls do nothing. Holds no handle, so forgetting it keeps nothing alive. */
  close(): void;
}

/** How a datagram reaches the socket. */
export interface NotifyTransport {
  readonly name: string;
  /** `address` is $NOTIFY_SOCKET as given ("/run/systemd/notify", "@abstract", ...). */
  send(address: string, message: string): Promise<void>;
}

export interface NotifierOptions {
  /** Our PID, compared with WATCHDOG_PID; defaults to process.pid. */
  pid?: number;
  /** Replaces the automatic choice (tests). */
  transport?: NotifyTransport;
  /** The unix-dgram module; tests pass a throwing loader to exercise the fallback. */
  loadUnixDgram?: () => UnixDgramModule;
  /** Path or name of systemd-notify for the fallback transport. */
  systemdNotify?: string;
  /** Problems worth one line each: a failed send, a fallback in use. Defaults to stderr (journald keeps it). */
  warn?: (text: string) => void;
}

/** The part of unix-dgram (a CommonJS addon without types) that we use. */
export interface UnixDgramModule {
  createSocket(type: "unix_dgram"): UnixDgramSocket;
}
export interface UnixDgramSocket {
  on(event: "error", listener: (err: Error) => void): unknown;
  send(buf: Buffer, offset: number, length: number, path: string, callback: (err?: Error) => void): void;
  close(): void;
}

const require = createRequire(import.meta.url);

function loadUnixDgramModule(): UnixDgramModule {
  return require("unix-dgram") as UnixDgramModule;
}

/**
 * In-process sendto() through the unix-dgram addon. The datagram carries our own PID, which is what
 * NotifyAccess=main accepts. One socket per message: nothing stays open between watchdog pings.
 */
export function unixDgramTransport(unixDgram: UnixDgramModule): NotifyTransport {
  return {
    name: "unix-dgram",
    send(address, message) {
      return new Promise((resolve, reject) => {
        const socket = unixDgram.createSocket("unix_dgram");
        const buf = Buffer.from(message, "utf8");
        let settled = false;
        const finish = (err?: Error): void => {
          if (settled) return;
          settled = true;
          socket.close();
          if (err) reject(err);
          else resolve();
        };
        socket.on("error", finish);
        socket.send(buf, 0, buf.length, address, finish);
      });
    },
  };
}

/**
 * systemd-notify(1) as a child process: it speaks every address form its systemd knows (abstract
 * "@name", vsock) and waits on BARRIER=1 so systemd can still attribute the message. The sender is
 * the child, though, so the unit needs NotifyAccess=all for this to be accepted.
 */
export function systemdNotifyTransport(binary = "systemd-notify"): NotifyTransport {
  return {
    name: "systemd-notify",
    send(address, message) {
      const assignments = message.split("\n").filter((line) => line.length > 0);
      return new Promise((resolve, reject) => {
        execFile(
          binary,
          assignments,
          { env: { NOTIFY_SOCKET: address, PATH: "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" }, timeout: 10_000 },
          (err, _stdout, stderr) => {
            if (err) reject(new Error(`${binary} ${assignments.join(" ")}: ${stderr.trim() || err.message}`, { cause: err }));
            else resolve();
          },
        );
      });
    },
  };
}

/** The watchdog period from WATCHDOG_USEC, halved, when it is meant for this PID; else null. */
export function watchdogIntervalFromEnv(env: Readonly<Record<string, string | undefined>>, pid: number): number | null {
  const usecText = env.WATCHDOG_USEC;
  if (usecText === undefined || !/^\d+$/.test(usecText)) return null;
  const pidText = env.WATCHDOG_PID;
  // WATCHDOG_PID names the process systemd expects pings from; a child that inherited the variables is not it.
  if (pidText !== undefined && pidText !== "" && Number(pidText) !== pid) return null;
  const usec = Number(usecText);
  if (usec <= 0) return null;
  return Math.max(1, Math.floor(usec / 2000));
}

/** A STATUS= value must stay on one line: a newline would start a new assignment. */
export function statusLine(text: string): string {
  return `STATUS=${text.replace(/[\r\n]+/g, " ")}`;
}

const silent: Notifier = {
  ready: () => undefined,
  watchdog: () => undefined,
  stopping: () => undefined,
  status: () => undefined,
  watchdogIntervalMs: null,
  flush: () => Promise.resolve(),
  close: () => undefined,
};

function chooseTransport(address: string, options: NotifierOptions, warn: (text: string) => void): NotifyTransport {
  if (options.transport) return options.transport;
  const fallback = systemdNotifyTransport(options.systemdNotify);
  if (!address.startsWith("/")) {
    // unix-dgram copies the address as a C string, so it cannot name an abstract socket.
    warn(`NOTIFY_SOCKET ${JSON.stringify(address)} is not a path: notifying through systemd-notify, which needs NotifyAccess=all`);
    return fallback;
  }
  try {
    return unixDgramTransport((options.loadUnixDgram ?? loadUnixDgramModule)());
  } catch (err) {
    warn(
      `the unix-dgram addon is not available (${err instanceof Error ? err.message.split("\n")[0] : String(err)}): ` +
        "notifying through systemd-notify, which needs NotifyAccess=all; install build tools and run `npm rebuild unix-dgram`",
    );
    return fallback;
  }
}

/** A Notifier for $NOTIFY_SOCKET; silent when it is unset, as outside systemd. */
export function createNotifier(env: Readonly<Record<string, string | undefined>>, options: NotifierOptions = {}): Notifier {
  const address = env.NOTIFY_SOCKET;
  if (address === undefined || address === "") return silent;
  const warn = options.warn ?? ((text: string) => void process.stderr.write(`ptyreaper: systemd notify: ${text}\n`));
  const watchdogIntervalMs = watchdogIntervalFromEnv(env, options.pid ?? process.pid);
  let transport: NotifyTransport | null = null;
  let closed = false;
  // Messages go out in order; a watchdog ping is dropped while another one is still on its way.
  let queue: Promise<void> = Promise.resolve();
  let watchdogPending = false;
  let lastFailure = "";

  const send = (message: string, onSettled?: () => void): void => {
    if (closed) return;
    transport ??= chooseTransport(address, options, warn);
    const via = transport;
    queue = queue.then(() =>
      via.send(address, message).then(
        () => {
          lastFailure = "";
        },
        (err: unknown) => {
          // Report a failure once, not every ten seconds while it lasts.
          const text = err instanceof Error ? err.message : String(err);
          if (text !== lastFailure) warn(`sending ${message.split("\n")[0]} via ${via.name} failed: ${text}`);
          lastFailure = text;
        },
      ),
    );
    if (onSettled) void queue.then(onSettled);
  };

  return {
    watchdogIntervalMs,
    ready(status) {
      send(status === undefined ? "READY=1" : `READY=1\n${statusLine(status)}`);
    },
    watchdog() {
      if (closed || watchdogIntervalMs === null || watchdogPending) return;
      watchdogPending = true;
      send("WATCHDOG=1", () => {
        watchdogPending = false;
      });
    },
    stopping() {
      send("STOPPING=1");
    },
    status(text) {
      send(statusLine(text));
    },
    flush: () => queue,
    close() {
      closed = true;
    },
  };
}
