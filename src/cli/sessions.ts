// `ptyreaper sessions`: every pty on the host and the exec session holding it, like `w` for containers.
//
// A one-shot whose cost is mostly the /proc read: that read starts first, on the native reader's
// threads, and the rest (config, engine client, runtimes: modules that take a tenth of a second to
// load) is loaded and asked while it runs. Only what it read is taken from it; the pass itself is the
// same full scanProc as without it. As root on the host, the kernel names the pty fds first (the BPF
// finder, native/ptyfds.bpf.c) and only those are read, not every fd link.
import type { Command } from "./io.js";
import { parseFlags } from "./flags.js";
import { SESSIONS_USAGE } from "./help.js";
import { ProcFs } from "../procfs/procfs.js";
import { NATIVE_THREADS, scanProc } from "../procfs/scan.js";
import { bpfFinderFor, type NativeBatch } from "../procfs/native.js";

export { SESSIONS_USAGE };

/** The /proc root the config will most likely name; a config naming another only loses the early read. */
function likelyProcRoot(env: NodeJS.ProcessEnv): string {
  return env.PTYREAPER_PROC_ROOT || "/proc";
}

export const sessionsCommand: Command = async (args, io) => {
  const flags = parseFlags(args, { json: { type: "boolean" }, config: { type: "string" } }, SESSIONS_USAGE);
  const earlyProcfs = new ProcFs(likelyProcRoot(io.env));
  // A failed early read is only a lost head start: the pass then reads everything itself.
  const finder = bpfFinderFor(earlyProcfs.root, { env: io.env }) ?? undefined;
  const early: Promise<NativeBatch | null> = (earlyProcfs.batchOfAllAsync(NATIVE_THREADS, finder) ?? Promise.resolve(null)).catch(() => null);

  const [
    { configPathFor, loadConfig },
    { DockerRuntime },
    { DockerodeEngine },
    { collect },
    { dockerClientEvidence },
    { sessionsReport },
    { renderSessionsTable },
    { existsSync },
    { ConfigError },
    { chooseDocker, chooseRuntimes, openRuntimes },
    { runtimeClientEvidence },
    { dockerStatusOf },
  ] = await Promise.all([
    import("../config/load.js"),
    import("../runtimes/docker/docker.js"),
    import("../runtimes/docker/dockerode.js"),
    import("../poller/collect.js"),
    import("../runtimes/docker/client-evidence.js"),
    import("../domain/report.js"),
    import("./render.js"),
    import("node:fs"),
    import("../errors.js"),
    import("../runtimes/open.js"),
    import("../runtimes/client-evidence.js"),
    import("../domain/snapshot.js"),
  ]);
  const config = loadConfig(configPathFor(flags.config, io.defaultConfigPath), io.env);
  const sameRoot = config.procRoot === earlyProcfs.root;
  const procfs = sameRoot ? earlyProcfs : new ProcFs(config.procRoot);
  const dockerUsed = chooseDocker(config.docker, existsSync).used;
  const docker = dockerUsed
    ? new DockerRuntime(new DockerodeEngine(config.docker.socket, config.docker.timeout), {
        logger: { info: () => undefined, warn: () => undefined },
      })
    : null;
  // One look, no history: a client is `attached` or `unknown` here; only the daemon sees one go.
  const clients = docker ? dockerClientEvidence(procfs, config.docker.socket) : null;
  const choices = chooseRuntimes(config.runtimes, existsSync);
  if (choices.problems.length > 0) throw new ConfigError("runtimes", choices.problems);
  const runtimes = await openRuntimes(config.runtimes, choices.chosen);
  try {
    const skipNamespaces = new Set(dockerUsed ? ["moby"] : []);
    const scan = async (options: Parameters<typeof scanProc>[1]) => scanProc(procfs, options, (sameRoot ? await early : null) ?? undefined);
    // containerd's and Podman's evidence, one look too: a stream held now is `attached`, anything else `unknown`.
    const runtimeClients = runtimeClientEvidence(runtimes, procfs);
    const observation = await collect({
      procfs,
      scan,
      runtimes: [...(docker ? [docker] : []), ...runtimes],
      clients: new Map([...(clients ? [["docker", clients] as const] : []), ...runtimeClients]),
      skipNamespaces,
    });
    const now = Date.now();
    const dockerStatus = dockerStatusOf(observation.runtimes);
    if (flags.json) io.stdout(JSON.stringify(sessionsReport(observation.inventory, dockerStatus, now, { commandLine: "full" }), null, 2) + "\n");
    else {
      const others = observation.runtimes.filter((view) => view.runtime !== "docker");
      io.stdout(renderSessionsTable(observation.inventory, dockerStatus, now, others));
    }
  } finally {
    for (const runtime of runtimes) runtime.close();
  }
  return 0;
};
