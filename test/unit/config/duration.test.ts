// Duration strings to milliseconds and back.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatDuration, formatDurationExact, parseDuration } from "../../../src/config/duration.js";

describe("parseDuration", () => {
  it.each<[string, number | null]>([
    ["500ms", 500],
    ["0s", 0],
    ["30s", 30_000],
    ["10m", 600_000],
    ["4h", 14_400_000],
    ["1d", 86_400_000],
    ["1h30m", 5_400_000],
    ["1d2h3m4s5ms", 93_784_005],
    ["1.5h", 5_400_000],
    ["0.5s", 500],
    ["90m", 5_400_000],
    ["off", null],
  ])("%j → %j", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each([
    "",
    "10",
    "soon",
    "10 s",
    " 10s",
    "10s ",
    "10S",
    "OFF",
    "-5s",
    "+5s",
    "1w",
    "1y",
    "30m1h",
    "1h1h",
    "1ms1s",
    "s",
    ".5s",
    "5.s",
    "1e3ms",
    "Infinityms",
    "9".repeat(30) + "d",
    "1h" + "0".repeat(80) + "s",
  ])("%j is not a duration", (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe("formatDuration (for people: two largest units, rounded down)", () => {
  it.each<[number, string]>([
    [0, "0s"],
    [1, "1ms"],
    [250, "250ms"],
    [999, "999ms"],
    [1_000, "1s"],
    [1_500, "1s"],
    [45_000, "45s"],
    [60_000, "1m"],
    [90_000, "1m30s"],
    [5_400_000, "1h30m"],
    [14_400_000, "4h"],
    [4 * 3_600_000 + 12 * 60_000 + 37_000, "4h12m"],
    [86_400_000, "1d"],
    [86_400_000 + 3 * 3_600_000 + 59 * 60_000, "1d3h"],
    [86_400_000 + 59 * 60_000, "1d"],
    [-30_000, "-30s"],
    [-0.4, "0s"],
    [Number.NaN, "NaN"],
  ])("%d → %j", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it("never shows more than the real time", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 400 * 86_400_000 }), (ms) => {
        const shown = parseDuration(formatDuration(ms));
        expect(shown).toBeTypeOf("number");
        expect(shown).toBeLessThanOrEqual(ms);
      }),
      { numRuns: 2_000 },
    );
  });
});

describe("formatDurationExact", () => {
  it.each<[number, string]>([
    [0, "0s"],
    [250, "250ms"],
    [1_500, "1s500ms"],
    [5_400_000, "1h30m"],
    [93_784_005, "1d2h3m4s5ms"],
    [2_147_483_647, "24d20h31m23s647ms"],
  ])("%d → %j", (ms, text) => {
    expect(formatDurationExact(ms)).toBe(text);
  });

  it("round-trips through parseDuration", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (ms) => {
        expect(parseDuration(formatDurationExact(ms))).toBe(ms);
      }),
      { numRuns: 2_000 },
    );
  });
});
