// The notifier's protocol text, env handling and transport choice, with a recording transport.
import { describe, expect, it } from "vitest";
import {
  createNotifier,
  statusLine,
  unixDgramTransport,
  watchdogIntervalFromEnv,
  type NotifyTransport,
  type UnixDgramModule,
} from "../../../src/systemd/notify.js";

function recorder(): NotifyTransport & { sent: { address: string; message: string }[] } {
  const sent: { address: string; message: string }[] = [];
  return {
    name: "recorder",
    sent,
    send(address, message) {
      sent.push({ address, message });
      return Promise.resolve();
    },
  };
}

describe("watchdogIntervalFromEnv", () => {
  it.each([
    [{}, null],
    [{ WATCHDOG_USEC: "60000000" }, 30_000],
    [{ WATCHDOG_USEC: "60000000", WATCHDOG_PID: "42" }, 30_000],
    [{ WATCHDOG_USEC: "60000000", WATCHDOG_PID: "43" }, null],
    [{ WATCHDOG_USEC: "60000000", WATCHDOG_PID: "" }, 30_000],
    [{ WATCHDOG_USEC: "0" }, null],
    [{ WATCHDOG_USEC: "-5" }, null],
    [{ WATCHDOG_USEC: "30s" }, null],
    [{ WATCHDOG_USEC: "1000" }, 1],
  ])("%j → %s", (env, expected) => {
    expect(watchdogIntervalFromEnv(env, 42)).toBe(expected);
  });
});

describe("statusLine", () => {
  it.each([
    ["first cycle complete", "STATUS=first cycle complete"],
    ["two\nlines", "STATUS=two lines"],
    ["READY=0\r\nSTOPPING=1", "STATUS=READY=0 STOPPING=1"],
  ])("%j", (text, expected) => {
    expect(statusLine(text)).toBe(expected);
  });
});

describe("createNotifier", () => {
  it("is silent without NOTIFY_SOCKET", async () => {
    const transport = recorder();
    const notifier = createNotifier({ WATCHDOG_USEC: "1000000" }, { transport });
    notifier.ready("x");
    notifier.watchdog();
    notifier.stopping();
    notifier.status("y");
    await notifier.flush();
    expect(transport.sent).toEqual([]);
    expect(notifier.watchdogIntervalMs).toBeNull();
  });

  it("sends the protocol lines in order to NOTIFY_SOCKET", async () => {
    const transport = recorder();
    const notifier = createNotifier({ NOTIFY_SOCKET: "/run/systemd/notify", WATCHDOG_USEC: "20000000", WATCHDOG_PID: "7" }, { transport, pid: 7 });
    expect(notifier.watchdogIntervalMs).toBe(10_000);
    notifier.ready("first cycle complete");
    await notifier.flush();
    notifier.watchdog();
    await notifier.flush();
    notifier.status("3 ptys");
    notifier.stopping();
    await notifier.flush();
    expect(transport.sent).toEqual([
      { address: "/run/systemd/notify", message: "READY=1\nSTATUS=first cycle complete" },
      { address: "/run/systemd/notify", message: "WATCHDOG=1" },
      { address: "/run/systemd/notify", message: "STATUS=3 ptys" },
      { address: "/run/systemd/notify", message: "STOPPING=1" },
    ]);
  });

  it("sends READY=1 alone when no status is given", async () => {
    const transport = recorder();
    const notifier = createNotifier({ NOTIFY_SOCKET: "/n" }, { transport });
    notifier.ready();
    await notifier.flush();
    expect(transport.sent.map((s) => s.message)).toEqual(["READY=1"]);
  });

  it("sends no WATCHDOG=1 when systemd asked for no watchdog, or asked another PID", async () => {
    for (const env of [{ NOTIFY_SOCKET: "/n" }, { NOTIFY_SOCKET: "/n", WATCHDOG_USEC: "1000000", WATCHDOG_PID: "1" }]) {
      const transport = recorder();
      const notifier = createNotifier(env, { transport, pid: 2 });
      notifier.watchdog();
      await notifier.flush();
      expect(transport.sent).toEqual([]);
    }
  });

  it("coalesces watchdog pings while one is still on its way", async () => {
    let release: () => void = () => undefined;
    const sent: string[] = [];
    const slow: NotifyTransport = {
      name: "slow",
      send(_address, message) {
        sent.push(message);
        return new Promise((resolve) => {
          release = resolve;
        });
      },
    };
    const notifier = createNotifier({ NOTIFY_SOCKET: "/n", WATCHDOG_USEC: "1000000" }, { transport: slow });
    notifier.watchdog();
    notifier.watchdog();
    notifier.watchdog();
    await Promise.resolve();
    release();
    await notifier.flush();
    notifier.watchdog();
    await Promise.resolve();
    release();
    await notifier.flush();
    expect(sent).toEqual(["WATCHDOG=1", "WATCHDOG=1"]);
  });

  it("reports a failing send once while it keeps failing, and keeps going", async () => {
    const warnings: string[] = [];
    let calls = 0;
    const failing: NotifyTransport = {
      name: "failing",
      send() {
        calls += 1;
        return Promise.reject(new Error("connect ECONNREFUSED"));
      },
    };
    const notifier = createNotifier({ NOTIFY_SOCKET: "/n", WATCHDOG_USEC: "1000000" }, { transport: failing, warn: (t) => warnings.push(t) });
    notifier.ready();
    notifier.watchdog();
    await notifier.flush();
    notifier.watchdog();
    await notifier.flush();
    expect(calls).toBe(3);
    expect(warnings).toEqual(["sending READY=1 via failing failed: connect ECONNREFUSED"]);
  });

  it("does nothing after close()", async () => {
    const transport = recorder();
    const notifier = createNotifier({ NOTIFY_SOCKET: "/n", WATCHDOG_USEC: "1000000" }, { transport });
    notifier.close();
    notifier.ready();
    notifier.watchdog();
    notifier.stopping();
    await notifier.flush();
    expect(transport.sent).toEqual([]);
  });

  it("uses unix-dgram for a socket path", async () => {
    const calls: string[] = [];
    const fake: UnixDgramModule = {
      createSocket: () => ({
        on: () => undefined,
        send: (buf, offset, length, path, callback) => {
          calls.push(`${path} ${buf.toString("utf8", offset, offset + length)}`);
          callback();
        },
        close: () => calls.push("close"),
      }),
    };
    const warnings: string[] = [];
    const notifier = createNotifier({ NOTIFY_SOCKET: "/run/systemd/notify" }, { loadUnixDgram: () => fake, warn: (t) => warnings.push(t) });
    notifier.stopping();
    await notifier.flush();
    expect(calls).toEqual(["/run/systemd/notify STOPPING=1", "close"]);
    expect(warnings).toEqual([]);
  });

  it.each([
    [
      "an abstract socket",
      "@ptyreaper-notify",
      () => ({
        createSocket: () => {
          throw new Error("must not be used");
        },
      }),
    ],
    [
      "a missing addon",
      "/run/systemd/notify",
      () => {
        throw new Error("Could not locate the bindings file");
      },
    ],
  ])("falls back to systemd-notify for %s, and says it needs NotifyAccess=all", async (_name, address, loadUnixDgram) => {
    const warnings: string[] = [];
    const notifier = createNotifier(
      { NOTIFY_SOCKET: address },
      { loadUnixDgram, systemdNotify: "/nonexistent/systemd-notify", warn: (t) => warnings.push(t) },
    );
    notifier.ready();
    await notifier.flush();
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toContain("NotifyAccess=all");
    expect(warnings[1]).toMatch(/^sending READY=1 via systemd-notify failed: .*ENOENT/);
  });
});

describe("unixDgramTransport", () => {
  it("rejects with the socket's error and still closes it", async () => {
    let closed = false;
    const fake: UnixDgramModule = {
      createSocket: () => ({
        on: () => undefined,
        send: (_b, _o, _l, _p, callback) => callback(new Error("send -111")),
        close: () => {
          closed = true;
        },
      }),
    };
    await expect(unixDgramTransport(fake).send("/n", "READY=1")).rejects.toThrow("send -111");
    expect(closed).toBe(true);
  });
});
