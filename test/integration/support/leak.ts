// Reproduces the leak on the real engine: `docker exec -it` sessions whose client runs under a real tty (script).
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { DOCKER_BIN, execIds, inspectExec, startContainer } from "./docker.js";
import { killAndWait, trackProcess, untrackProcess } from "./track.js";
import { StopWaiting, cmdlineOf, descendantsOf, environOf, isAlive, waitFor } from "./util.js";

/** A `docker exec -it` session whose shell runs in the container. */
export interface ExecSessionHandle {
  execId: string;
  /** Host pid of the exec'd shell (ExecInspect.Pid). */
  shellPid: number;
  /** Host pid of the `docker exec` client (already dead for a leaked session). */
  clientPid: number;
}

/** A session whose client stays attached: input typed into it reaches the shell through the pty. */
export interface AttachedExecSession extends ExecSessionHandle {
  /** Types `text` into the client's terminal (use "\r" for Enter); the shell reads it, moving the tty's atime. */
  sendInput(text: string): void;
  /** Everything the client's terminal has shown so far. */
  output(): string;
  /** Exits the shell, then ends the client and `script`; kills the shell by pid if it did not exit. */
  close(): Promise<void>;
  /**
   * Closes the client's terminal as a dying sshd or terminal emulator does: SIGKILLs `script`, which
   * holds the master of the client's tty, so the kernel hangs the tty up and sends the client SIGHUP;
   * resolves once the client has exited (the shell leaks). A SIGHUP to `script` itself would not do:
   * util-linux script ignores it, and a hang-up of script's own terminal makes it type EOF, which ends
   * the shell cleanly.
   */
  hangUp(): Promise<void>;
}

/** Options of leakExecSession and attachedExecSession. */
export interface ExecSessionOptions {
  /** Extra `docker exec -e K=V` variables. */
  env?: Record<string, string>;
  /** `docker -H HOST exec …`, e.g. tcp://127.0.0.1:PORT for a client that reaches the engine over TCP. */
  host?: string;
}

const SESSION_MARKER = "PTYR_TEST_SESSION";
const START_TIMEOUT_MS = 30_000;

function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

interface StartedSession extends ExecSessionHandle {
  script: ChildProcess;
  output: () => string;
}

/**
 * Starts `script -qfc "docker exec -it ... C sh" /dev/null` so the client has a real tty, and waits
 * until the new exec is Running with a Pid. The exec is told apart from others in the same container
 * by a marker variable in its environment.
 */
async function startExecSession(container: string, opts: ExecSessionOptions): Promise<StartedSession> {
  const marker = randomUUID();
  const before = new Set(await execIds(container));
  const envArgs = Object.entries({ ...opts.env, [SESSION_MARKER]: marker }).map(([key, value]) => `-e ${shellQuote(`${key}=${value}`)}`);
  const global = opts.host === undefined ? "" : `-H ${shellQuote(opts.host)} `;
  const command = `exec ${DOCKER_BIN} ${global}exec -it ${envArgs.join(" ")} ${shellQuote(container)} sh`;
  const script = spawn("script", ["-qfc", command, "/dev/null"], {
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, SHELL: "/bin/sh", TERM: "xterm" },
  });
  const scriptPid = script.pid;
  if (scriptPid === undefined) throw new Error("could not start script(1): is util-linux installed?");
  trackProcess(scriptPid, "script for docker exec", script);
  let output = "";
  const collect = (chunk: Buffer): void => {
    output = (output + chunk.toString("latin1")).slice(-64 * 1024);
  };
  script.stdout.on("data", collect);
  script.stderr.on("data", collect);
  let closed = false; // "close" comes after the last output, so the error below carries all of it
  script.once("close", () => (closed = true));
  const failIfScriptExited = (): void => {
    if (closed) {
      throw new StopWaiting(`script exited (${script.exitCode ?? script.signalCode}) before the session started; output: ${JSON.stringify(output)}`);
    }
  };

  try {
    const clientPid = await waitFor(
      () => {
        failIfScriptExited();
        return descendantsOf(scriptPid).find((pid) => {
          const argv = cmdlineOf(pid);
          return argv[0] === DOCKER_BIN && argv.includes("exec");
        });
      },
      START_TIMEOUT_MS,
      `the docker exec client under script (pid ${scriptPid})`,
    );
    trackProcess(clientPid, "docker exec client");
    const { execId, shellPid } = await waitFor(
      async () => {
        failIfScriptExited();
        for (const id of await execIds(container)) {
          if (before.has(id)) continue;
          const info = await inspectExec(id);
          if (info.Running && info.Pid > 0 && environOf(info.Pid).includes(`${SESSION_MARKER}=${marker}`)) {
            return { execId: id, shellPid: info.Pid };
          }
        }
        return null;
      },
      START_TIMEOUT_MS,
      `a running exec in ${container} (client pid ${clientPid})`,
    );
    trackProcess(shellPid, "exec shell");
    return { execId, shellPid, clientPid, script, output: () => output };
  } catch (err) {
    await killAndWait(scriptPid, script);
    throw err;
  }
}

/** Waits for `script` to exit on its own (it does once its child is gone), else kills it. */
async function endScript(script: ChildProcess): Promise<void> {
  const pid = script.pid as number;
  await waitFor(() => script.exitCode !== null || script.signalCode !== null, 5_000, "script to exit").catch(() => undefined);
  await killAndWait(pid, script);
}

/**
 * The leak from moby #9098: starts a `docker exec -it` session, then SIGKILLs its client by pid. The
 * shell keeps running in the container, the shim keeps the pty master, and the exec stays Running.
 */
export async function leakExecSession(container: string, opts: ExecSessionOptions = {}): Promise<ExecSessionHandle> {
  const session = await startExecSession(container, opts);
  await killAndWait(session.clientPid);
  await endScript(session.script);
  if (!isAlive(session.shellPid)) {
    throw new Error(`the exec shell (pid ${session.shellPid}) did not survive its client's SIGKILL; output: ${JSON.stringify(session.output())}`);
  }
  return { execId: session.execId, shellPid: session.shellPid, clientPid: session.clientPid };
}

/** A `docker exec -it` session whose client stays attached; see AttachedExecSession. */
export async function attachedExecSession(container: string, opts: ExecSessionOptions = {}): Promise<AttachedExecSession> {
  const session = await startExecSession(container, opts);
  const { script, execId, shellPid, clientPid } = session;
  return {
    execId,
    shellPid,
    clientPid,
    sendInput(text: string): void {
      script.stdin?.write(text);
    },
    output: session.output,
    async hangUp(): Promise<void> {
      await killAndWait(script.pid as number, script);
      await waitFor(() => !isAlive(clientPid), 10_000, `docker exec client ${clientPid} to exit on its terminal's hang-up`);
      untrackProcess(clientPid);
    },
    async close(): Promise<void> {
      if (isAlive(shellPid) && script.stdin?.writable) script.stdin.write("exit\r");
      await waitFor(() => !isAlive(shellPid), 10_000, `exec shell ${shellPid} to exit`).catch(() => undefined);
      await killAndWait(shellPid); // no-op when it exited
      await waitFor(() => !isAlive(clientPid), 5_000, "docker exec client to exit").catch(() => undefined);
      await killAndWait(clientPid);
      await endScript(script);
      untrackProcess(shellPid);
    },
  };
}

/** `docker run -d -t` of the test image: its init (sleep) holds the container's own pty. Resolves with the id. */
export function dockerRunTty(name: string): Promise<string> {
  return startContainer({ name, tty: true });
}
