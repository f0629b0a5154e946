// Duration strings of the config ("500ms", "30s", "1h30m", "1d", "off") to milliseconds and back.

const UNIT_MS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000, ms: 1 } as const;
type Unit = keyof typeof UNIT_MS;
/** Largest first: formatting walks them in this order. */
const UNITS: readonly Unit[] = ["d", "h", "m", "s", "ms"];

// One component: a number (decimals allowed, as in Go's time.ParseDuration) and its unit.
// "ms" is listed before "m" so that "500ms" is not read as 500 minutes followed by "s".
const COMPONENT = /(\d+(?:\.\d+)?)(ms|d|h|m|s)/y;

/**
 * Milliseconds for a duration string, `null` for "off", `undefined` when the text is not a duration.
 * Whether "off" is allowed, and the range, is the caller's business (see config/schema.ts).
 * Components may be combined ("1h30m") but each unit appears at most once, largest first.
 */
export function parseDuration(text: string): number | null | undefined {
  if (text === "off") return null;
  if (text.length === 0 || text.length > 64) return undefined;
  let total = 0;
  let pos = 0;
  let lastUnitRank = -1;
  while (pos < text.length) {
    COMPONENT.lastIndex = pos;
    const m = COMPONENT.exec(text);
    if (m === null) return undefined;
    const unit = m[2] as Unit;
    const rank = UNITS.indexOf(unit);
    // "30m1h" or "1h1h" is more likely a typo than an intent.
    if (rank <= lastUnitRank) return undefined;
    lastUnitRank = rank;
    total += Number(m[1]) * UNIT_MS[unit];
    pos = COMPONENT.lastIndex;
  }
  const ms = Math.round(total);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/**
 * Every non-zero unit, so that `parseDuration(formatDurationExact(ms)) === ms`:
 * "1h30m", "1d2h3m4s5ms". Used where a value is shown back to the person who configured it.
 */
export function formatDurationExact(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  let rest = Math.round(Math.abs(ms));
  if (rest === 0) return "0s";
  let out = ms < 0 ? "-" : "";
  for (const unit of UNITS) {
    const n = Math.floor(rest / UNIT_MS[unit]);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * UNIT_MS[unit];
    }
  }
  return out;
}

/**
 * For people reading a table or a log line: the two largest units, rounded down, so a time is
 * never shown as more than it is ("4h12m" for 4h12m37s, "45s", "250ms", "1d3h").
 * Milliseconds only appear below one second; config-like values ("4h", "1h30m") come out exactly.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  const abs = Math.floor(Math.abs(ms));
  const sign = ms < 0 && abs > 0 ? "-" : "";
  if (abs < 1_000) return abs === 0 ? "0s" : `${sign}${abs}ms`;
  const start = UNITS.findIndex((u) => abs >= UNIT_MS[u]);
  const big = UNITS[start] as Unit;
  const bigCount = Math.floor(abs / UNIT_MS[big]);
  let out = `${sign}${bigCount}${big}`;
  const small = UNITS[start + 1];
  if (small !== undefined && small !== "ms") {
    const smallCount = Math.floor((abs - bigCount * UNIT_MS[big]) / UNIT_MS[small]);
    if (smallCount > 0) out += `${smallCount}${small}`;
  }
  return out;
}
