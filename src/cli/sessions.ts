// `ptyreaper sessions`: every pty on the host and the exec session holding it, like `w` for containers.
import { configPathFor, loadConfig } from "../config/load.js";
import { DockerCache } from "../docker/cache.js";
import { EngineHttpPort } from "../docker/engine-http.js";
import { collect } from "../poller/collect.js";
import { dockerClientEvidence } from "../runtimes/docker/client-evidence.js";
import { ProcFs } from "../procfs/procfs.js";
import { scanProc } from "../procfs/scan.js";
import { sessionsReport } from "../domain/report.js";
import { renderSessionsTable } from "./render.js";
import type { Command } from "./io.js";
import { parseFlags } from "./flags.js";
import { existsSync } from "node:fs";
import { ConfigError } from "../errors.js";
import { chooseRuntimes, openRuntimes } from "../runtimes/open.js";
import { SESSIONS_USAGE } from "./help.js";

export { SESSIONS_USAGE };

export const sessionsCommand: Command = async (args, io) => {
  const flags = parseFlags(args, { json: { type: "boolean" }, config: { type: "string" } }, SESSIONS_USAGE);
  const config = loadConfig(configPathFor(flags.config, io.defaultConfigPath), io.env);
  const procfs = new ProcFs(config.procRoot);
  const docker = config.docker.enabled
    ? new DockerCache({ port: new EngineHttpPort(config.docker.socket, config.docker.timeout), logger: { info: () => undefined, warn: () => undefined } })
    : null;
  // One look, no history: a client is `attached` or `unknown` here; only the daemon sees one go.
  const clients = docker ? dockerClientEvidence(procfs, config.docker.socket) : null;
  const choices = chooseRuntimes(config.runtimes, existsSync);
  if (choices.problems.length > 0) throw new ConfigError("runtimes", choices.problems);
  const runtimes = await openRuntimes(config.runtimes, choices.chosen);
  try {
    const skipNamespaces = new Set(config.docker.enabled ? ["moby"] : []);
    const observation = await collect({ procfs, scan: (options) => scanProc(procfs, options), docker, clients, runtimes, skipNamespaces });
    const now = Date.now();
    if (flags.json) io.stdout(JSON.stringify(sessionsReport(observation.inventory, observation.docker, now, { commandLine: "full" }), null, 2) + "\n");
    else io.stdout(renderSessionsTable(observation.inventory, observation.docker, now, observation.runtimes));
  } finally {
    for (const runtime of runtimes) runtime.close();
  }
  return 0;
};

