// Reproduces the `kubectl exec -it` leak on containerd's CRI: an Exec URL attached by a WebSocket client in a
// child process (as kubectl's stream is), which is then SIGKILLed.
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { killAndWait, trackProcess } from "./track.js";
import { StopWaiting, environOf, isAlive, waitFor } from "./util.js";
import type { CriClient } from "./cri.js";
import { CRI_NAMESPACE, type PrivateContainerd } from "./containerd.js";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const SESSION_MARKER = "PTYR_TEST_SESSION";

// The streaming client: the k8s.io v4 channel protocol (a leading byte per message: 0 stdin, 1 stdout,
// 4 resize), a resize first as kubectl sends one, then one command typed into the shell. It prints what
// the shell writes, so the parent sees the session is live before it kills this process.
const STREAM_CLIENT = `
import WebSocket from "ws";
const ws = new WebSocket(process.argv[1], ["v4.channel.k8s.io"]);
const frame = (channel, text) => Buffer.concat([Buffer.from([channel]), Buffer.from(text)]);
ws.on("open", () => {
  ws.send(frame(4, JSON.stringify({ Width: 80, Height: 24 })));
  ws.send(frame(0, "echo ptyr-$((6*7))\\r"));
});
ws.on("message", (data) => {
  const bytes = Buffer.from(data);
  process.stdout.write("[" + bytes[0] + "]" + bytes.subarray(1).toString("latin1") + "\\n");
});
ws.on("close", (code) => { process.stdout.write("closed " + code + "\\n"); process.exit(0); });
ws.on("error", (err) => { process.stderr.write(String(err) + "\\n"); process.exit(2); });
`;

export interface CriLeakedExec {
  /** containerd's exec ID (the `<exec-id>.pid` file's name, ExecID in `ctr tasks ps`). */
  execId: string;
  /** Host pid of the exec'd shell. */
  shellPid: number;
  /** Pid of the streaming client, dead once leaked. */
  clientPid: number;
  /** Everything the client printed before it was killed. */
  clientOutput: string;
}

/** `<state>/io.containerd.runtime.v2.task/k8s.io/<cid>/`: init.pid and one `<exec-id>.pid` per live exec. */
export function taskBundle(containerd: PrivateContainerd, containerId: string): string {
  return `${containerd.stateDir}/io.containerd.runtime.v2.task/${CRI_NAMESPACE}/${containerId}`;
}

/** Exec ID → pid, from the task bundle's pid files. */
export function execPidFiles(containerd: PrivateContainerd, containerId: string): Map<string, number> {
  const bundle = taskBundle(containerd, containerId);
  const found = new Map<string, number>();
  for (const entry of readdirSync(bundle)) {
    if (!entry.endsWith(".pid") || entry === "init.pid") continue;
    try {
      found.set(entry.slice(0, -".pid".length), Number(readFileSync(`${bundle}/${entry}`, "utf8").trim()));
    } catch {
      // removed as the exec was deleted
    }
  }
  return found;
}

/** A CRI exec whose streaming client is still attached. */
export interface CriAttachedExec {
  execId: string;
  shellPid: number;
  clientPid: number;
  /** What the client printed so far. */
  output(): string;
  /** SIGKILLs the streaming client by pid and waits for it. */
  killClient(): Promise<void>;
}

/**
 * CRI Exec (tty + stdin) of `sh` in `containerId`, attached by a WebSocket client in a child process.
 * Resolves once the shell has answered a typed command through the stream, the client still attached.
 */
export async function attachCriExec(cri: CriClient, containerd: PrivateContainerd, containerId: string): Promise<CriAttachedExec> {
  const marker = randomUUID();
  const before = new Set(execPidFiles(containerd, containerId).keys());
  // busybox `env` puts the marker in the shell's environment, which tells this exec apart from others.
  const url = await cri.exec(containerId, ["env", `${SESSION_MARKER}=${marker}`, "sh"]);
  // The URL is single-use and expires within about a minute: connect at once.
  const client = spawn(process.execPath, ["--input-type=module", "-e", STREAM_CLIENT, url], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  const clientPid = client.pid;
  if (clientPid === undefined) throw new Error("could not start the streaming client");
  trackProcess(clientPid, "CRI streaming client", client);
  let output = "";
  client.stdout.on("data", (chunk: Buffer) => (output += chunk.toString("latin1")));
  client.stderr.on("data", (chunk: Buffer) => (output += chunk.toString("latin1")));
  try {
    await waitFor(
      () => {
        if (client.exitCode !== null) throw new StopWaiting(`streaming client exited (${client.exitCode}) early; output: ${JSON.stringify(output)}`);
        return output.includes("ptyr-42");
      },
      30_000,
      `the exec shell to answer through ${url}`,
    );
    const { execId, shellPid } = await waitFor(
      () => {
        for (const [id, pid] of execPidFiles(containerd, containerId)) {
          if (!before.has(id) && environOf(pid).includes(`${SESSION_MARKER}=${marker}`)) return { execId: id, shellPid: pid };
        }
        return null;
      },
      10_000,
      `the exec's pid file in ${taskBundle(containerd, containerId)}`,
    );
    trackProcess(shellPid, "CRI exec shell");
    return { execId, shellPid, clientPid, output: () => output, killClient: () => killAndWait(clientPid, client) };
  } catch (err) {
    await killAndWait(clientPid, client);
    throw err;
  }
}

/**
 * An attached CRI exec (attachCriExec) whose streaming client is then SIGKILLed by pid. Resolves once the
 * client is gone and the shell is seen to live on.
 */
export async function leakCriExec(cri: CriClient, containerd: PrivateContainerd, containerId: string): Promise<CriLeakedExec> {
  const attached = await attachCriExec(cri, containerd, containerId);
  await attached.killClient();
  if (!isAlive(attached.shellPid)) throw new Error(`the exec shell ${attached.shellPid} did not survive its client's SIGKILL`);
  return { execId: attached.execId, shellPid: attached.shellPid, clientPid: attached.clientPid, clientOutput: attached.output() };
}
