// `ptyreaper check-config FILE`: validates a config as the daemon would, without starting anything.
import { statfsSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { formatDurationExact } from "../config/duration.js";
import { appliedOverrides, loadConfig, type Env } from "../config/load.js";
import { escapeControls, oneLine, quote } from "../config/schema.js";
import type { Config } from "../config/types.js";
import { ConfigError, errorMessage, EXIT, PtyreaperError, UsageError } from "../errors.js";
import { loadWebConfig, type WebConfig } from "../http/webconfig.js";
import { CHECK_CONFIG_USAGE as USAGE } from "./help.js";
import type { Command } from "./io.js";

/** statfs f_type of procfs (PROC_SUPER_MAGIC in linux/magic.h). */
const PROC_SUPER_MAGIC = 0x9fa0;

/** What the statfs of a path says about it being a procfs; null when it is one. */
export type StatFs = (path: string) => { type: number };

/** A procRoot that is not a procfs makes every scan fail or, worse, read a look-alike tree: say so now. */
export function procRootProblem(procRoot: string, statfs: StatFs = statfsSync): string | null {
  let type: number;
  try {
    type = statfs(procRoot).type;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException | null)?.code;
    return `procRoot: ${quote(procRoot)} cannot be read (${code ?? errorMessage(err)}); expected where procfs is mounted, e.g. /proc`;
  }
  if (type === PROC_SUPER_MAGIC) return null;
  return `procRoot: ${quote(procRoot)} is not a procfs mount (file system type 0x${type.toString(16)}); expected where procfs is mounted, e.g. /proc`;
}

export const checkConfigCommand: Command = (args, io) => {
  if (args.length === 1 && (args[0] === "-h" || args[0] === "--help")) {
    io.stdout(`${USAGE}\n`);
    return Promise.resolve(EXIT.ok);
  }
  const file = args[0];
  // `check-config --bogus` is a usage error, not a file named "--bogus" (a file that is really named
  // so can be given as ./--bogus).
  if (file?.startsWith("-")) throw new UsageError(`unknown option ${JSON.stringify(file)}; ${USAGE}`);
  if (args.length !== 1 || file === undefined || file === "") {
    io.stderr(`${USAGE}\n`);
    return Promise.resolve(EXIT.usage);
  }
  const path = isAbsolute(file) ? file : resolve(io.cwd, file);
  // FILE is echoed on every line: a newline in it must not forge extra lines.
  const shown = escapeControls(file);
  try {
    const config = loadConfig(path, io.env);
    const procProblem = procRootProblem(config.procRoot);
    if (procProblem) {
      // Name where the value came from: the variable when it overrides the file.
      io.stderr(`${io.env.PTYREAPER_PROC_ROOT ? "environment: PTYREAPER_PROC_ROOT" : shown}: ${procProblem}\n`);
      return Promise.resolve(EXIT.config);
    }
    // The web config's problems name its own file, as the daemon would report them.
    const web = config.webConfigFile === null ? null : loadWebConfig(config.webConfigFile);
    io.stdout(`${shown}: ok\n${[...summarizeConfig(config, web), ...overridesLine(config, io.env)].join("\n")}\n`);
    return Promise.resolve(EXIT.ok);
  } catch (err) {
    if (err instanceof ConfigError) {
      // Problems of an environment variable are not the file's: they are shown under "environment".
      const where = err.source === path ? shown : escapeControls(err.source);
      io.stderr(err.problems.map((p) => `${where}: ${p}\n`).join(""));
      return Promise.resolve(EXIT.config);
    }
    if (err instanceof PtyreaperError && err.code === "PTYR_CONFIG_READ") {
      io.stderr(`${oneLine(err.message)}\n`);
      return Promise.resolve(EXIT.config);
    }
    // A bug, not a config problem: still one line, never a stack trace.
    io.stderr(`${shown}: internal error: ${oneLine(errorMessage(err))}\n`);
    return Promise.resolve(EXIT.failure);
  }
};

function overridesLine(config: Config, env: Env): string[] {
  const applied = appliedOverrides(config, env);
  return applied.length > 0 ? [`  environment overrides: ${applied.join(", ")}`] : [];
}

function runtimeLine(name: string, r: { enabled: boolean | "auto"; socket: string; timeout: number; namespaces?: readonly string[] }): string {
  if (r.enabled === false) return `${name} disabled`;
  const namespaces = r.namespaces ? `, namespaces ${r.namespaces.join(" ")}` : "";
  return `${name} ${r.enabled === "auto" ? "auto (used when the socket exists)" : "required"}, socket ${r.socket}${namespaces}, timeout ${formatDurationExact(r.timeout)}`;
}

function webLine(c: Config, web: WebConfig | null): string {
  if (c.webConfigFile === null || web === null) return "  http: plain, no authentication (webConfigFile null)";
  const tls = web.tls === null ? "plain HTTP" : `TLS${web.tls.ca !== null ? " with client certificates" : ""}`;
  const users = web.basicAuthUsers.size;
  return `  http: webConfigFile ${c.webConfigFile}: ${tls}, ${users === 0 ? "no basic auth" : `basic auth for ${users} user${users === 1 ? "" : "s"}`}`;
}

/** The normalised config, one section a line, as the daemon will use it (env overrides included). */
export function summarizeConfig(c: Config, web: WebConfig | null = null): string[] {
  const d = formatDurationExact;
  const off = (ms: number | null): string => (ms === null ? "off" : d(ms));
  const host = c.listen.host.includes(":") ? `[${c.listen.host}]` : c.listen.host;
  const p = c.policy;
  return [
    `  pollInterval ${d(c.pollInterval)}, listen ${host}:${c.listen.port}, procRoot ${c.procRoot}, log.level ${c.log.level}`,
    `  docker: ${c.docker.enabled === false ? "disabled" : `${c.docker.enabled === "auto" ? "auto (used when its socket exists at start)" : "enabled"}, socket ${c.docker.socket}, timeout ${d(c.docker.timeout)}`}`,
    `  runtimes: ${runtimeLine("containerd", c.runtimes.containerd)}; ${runtimeLine("podman", c.runtimes.podman)}`,
    `  policy: idleTimeout ${off(p.idleTimeout)} (${p.idleIncludesOutput ? "input and output" : "input only"}), ` +
      `maxAge ${off(p.maxAge)}, minAge ${d(p.minAge)}, orphanGrace ${off(p.orphanGrace)}`,
    `  policy.pressure: high ${p.pressure.high}, low ${p.pressure.low}, minIdle ${d(p.pressure.minIdle)}`,
    `  policy.exempt: label ${p.exemptLabel}=true, containers ${p.exemptContainers.length > 0 ? p.exemptContainers.join(" ") : "none"}, ` +
      `namespaces ${p.exemptNamespaces.length > 0 ? p.exemptNamespaces.join(" ") : "none"}`,
    `  reaper: ${c.reaper.mode}, grace ${d(c.reaper.grace)}, maxPerCycle ${c.reaper.maxPerCycle}`,
    `  commandLine ${c.commandLine} (how much of an exec's command line GET /sessions shows)`,
    webLine(c, web),
  ];
}
