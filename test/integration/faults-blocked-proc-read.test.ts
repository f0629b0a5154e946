// A /proc read that never returns, on the built daemon: SIGTERM during the blocked pass still ends the process within 2 s.
// The procRoot is a tree whose one process has a FIFO for its stat, so the scan thread blocks in read(2) in the kernel.
import { closeSync, constants, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cleanupAll, waitFor } from "./support/index.js";
import { startDaemon } from "./support/daemon.js";

afterAll(cleanupAll);

/** A proc tree with pty sysctls, a btime, and process 4242 whose stat is a FIFO nobody writes. */
function blockingProcRoot(): { root: string; fifo: string } {
  const root = mkdtempSync(join(tmpdir(), "ptyreaper-blocked-proc-"));
  mkdirSync(join(root, "sys/kernel/pty"), { recursive: true });
  writeFileSync(join(root, "sys/kernel/pty/nr"), "0\n");
  writeFileSync(join(root, "sys/kernel/pty/max"), "4096\n");
  writeFileSync(join(root, "sys/kernel/pty/reserve"), "1024\n");
  writeFileSync(join(root, "stat"), "btime 1700000000\n");
  mkdirSync(join(root, "4242"));
  const fifo = join(root, "4242/stat");
  execFileSync("mkfifo", [fifo]);
  return { root, fifo };
}

/** Opens the FIFO's write end once a reader is blocked on it (ENXIO until then); the reader then blocks in read(2). */
function writerOnceRead(fifo: string): number | null {
  try {
    return openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENXIO") return null;
    throw err;
  }
}

describe("a scan blocked in a /proc read (built daemon, FIFO in a proc tree, worker thread)", () => {
  it("SIGTERM during the blocked pass: the daemon exits within 2 s, with code 0, saying why it did not wait", async () => {
    const { root, fifo } = blockingProcRoot();
    let writer: number | null = null;
    try {
      const daemon = await startDaemon(`procRoot: ${root}\npollInterval: 1s\ndocker:\n  enabled: false\n`);
      writer = await waitFor(() => writerOnceRead(fifo), 30_000, "the scan thread to block on the FIFO");
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        daemon.child.once("exit", (code, signal) => resolve({ code, signal })),
      );
      let stderr = "";
      daemon.child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      const sentAt = performance.now();
      daemon.child.kill("SIGTERM");
      const outcome = await Promise.race([exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), 10_000))]);
      const tookMs = performance.now() - sentAt;
      expect(outcome, "the daemon did not exit within 10 s of SIGTERM").not.toBeNull();
      expect(outcome).toEqual({ code: 0, signal: null });
      console.log(JSON.stringify({ sigtermToExitMs: Math.round(tookMs) }));
      expect(tookMs).toBeLessThan(2_000);
      expect(stderr).toContain("blocked in a /proc read");
      expect(daemon.logs().some((line) => line.msg === "stopping")).toBe(true);
    } finally {
      if (writer !== null) closeSync(writer);
      rmSync(root, { recursive: true, force: true });
    }
  }, 60_000);
});
