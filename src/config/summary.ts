// The policy in one line, as the startup and reload log lines show it.
import { formatDurationExact } from "./duration.js";
import type { Config } from "./types.js";

export function policySummary(c: Config): string {
  const d = formatDurationExact;
  const off = (ms: number | null): string => (ms === null ? "off" : d(ms));
  const p = c.policy;
  return (
    `${c.reaper.mode}; idleTimeout ${off(p.idleTimeout)} (${p.idleIncludesOutput ? "input and output" : "input only"}), ` +
    `maxAge ${off(p.maxAge)}, minAge ${d(p.minAge)}, orphanGrace ${off(p.orphanGrace)}, pressure ${p.pressure.high}/${p.pressure.low} after ${d(p.pressure.minIdle)} idle, ` +
    `grace ${d(c.reaper.grace)}, at most ${c.reaper.maxPerCycle} per cycle`
  );
}
