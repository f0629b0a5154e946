// `ptyreaper sessions`: every pty on the host and the exec session holding it, like `w` for containers.
import { loadConfig } from "../config/load.js";
import { DockerCache } from "../docker/cache.js";
import { DockerodePort } from "../docker/dockerode.js";
import { collect } from "../poller/collect.js";
import { dockerClientEvidence } from "../runtimes/docker/client-evidence.js";
import { ProcFs } from "../procfs/procfs.js";
import { scanProc } from "../procfs/scan.js";
import { pino } from "pino";
import { renderSessionsTable, sessionsReport } from "./render.js";
import type { Command } from "./io.js";
import { parseFlags } from "./flags.js";

export const SESSIONS_USAGE = "usage: ptyreaper sessions [--json] [--config FILE]";

export const sessionsCommand: Command = async (args, io) => {
  const flags = parseFlags(args, { json: { type: "boolean" }, config: { type: "string" } }, SESSIONS_USAGE);
  const config = loadConfig(flags.config ?? null, io.env);
  const procfs = new ProcFs(config.procRoot);
  const docker = config.docker.enabled
    ? new DockerCache({ port: new DockerodePort(config.docker.socket, config.docker.timeout), logger: pino({ enabled: false }) })
    : null;
  // One look, no history: a client is `attached` or `unknown` here; only the daemon sees one go.
  const clients = docker ? dockerClientEvidence(procfs, config.docker.socket) : null;
  const observation = await collect({ procfs, scan: (options) => scanProc(procfs, options), docker, clients });
  const now = Date.now();
  if (flags.json) io.stdout(JSON.stringify(sessionsReport(observation.inventory, observation.docker, now), null, 2) + "\n");
  else io.stdout(renderSessionsTable(observation.inventory, observation.docker, now));
  return 0;
};

