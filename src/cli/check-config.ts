// `ptyreaper check-config FILE`: validates a config as the daemon would, without starting anything.
import { isAbsolute, resolve } from "node:path";
import { formatDurationExact } from "../config/duration.js";
import { loadConfig } from "../config/load.js";
import { escapeControls, oneLine } from "../config/schema.js";
import type { Config } from "../config/types.js";
import { ConfigError, errorMessage, EXIT, PtyreaperError } from "../errors.js";
import { loadWebConfig } from "../http/webconfig.js";
import type { Command } from "./io.js";

const USAGE = "usage: ptyreaper check-config FILE";

export const checkConfigCommand: Command = (args, io) => {
  if (args.length === 1 && (args[0] === "-h" || args[0] === "--help")) {
    io.stdout(`${USAGE}\n`);
    return Promise.resolve(EXIT.ok);
  }
  const file = args[0];
  if (args.length !== 1 || file === undefined || file === "") {
    io.stderr(`${USAGE}\n`);
    return Promise.resolve(EXIT.usage);
  }
  const path = isAbsolute(file) ? file : resolve(io.cwd, file);
  // FILE is echoed on every line: a newline in it must not forge extra lines.
  const shown = escapeControls(file);
  try {
    const config = loadConfig(path, io.env);
    // The web config's problems name its own file, as the daemon would report them.
    if (config.webConfigFile !== null) loadWebConfig(config.webConfigFile);
    io.stdout(`${shown}: ok\n${summarizeConfig(config).join("\n")}\n`);
    return Promise.resolve(EXIT.ok);
  } catch (err) {
    if (err instanceof ConfigError) {
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

/** The normalised config, one section a line, as the daemon will use it (env overrides included). */
export function summarizeConfig(c: Config): string[] {
  const d = formatDurationExact;
  const off = (ms: number | null): string => (ms === null ? "off" : d(ms));
  const host = c.listen.host.includes(":") ? `[${c.listen.host}]` : c.listen.host;
  const p = c.policy;
  return [
    `  pollInterval ${d(c.pollInterval)}, listen ${host}:${c.listen.port}, procRoot ${c.procRoot}, log.level ${c.log.level}`,
    `  docker: ${c.docker.enabled ? `enabled, socket ${c.docker.socket}, timeout ${d(c.docker.timeout)}` : "disabled"}`,
    `  policy: idleTimeout ${off(p.idleTimeout)} (${p.idleIncludesOutput ? "input and output" : "input only"}), ` +
      `maxAge ${off(p.maxAge)}, minAge ${d(p.minAge)}`,
    `  policy.pressure: high ${p.pressure.high}, low ${p.pressure.low}, minIdle ${d(p.pressure.minIdle)}`,
    `  policy.exempt: label ${p.exemptLabel}=true, containers ${p.exemptContainers.length > 0 ? p.exemptContainers.join(" ") : "none"}`,
    `  reaper: ${c.reaper.mode}, grace ${d(c.reaper.grace)}, maxPerCycle ${c.reaper.maxPerCycle}`,
  ];
}
