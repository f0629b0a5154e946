// capLabelValue: the documented length cap and UTF-8 safety rule for label values.
import { describe, expect, it } from "vitest";
import { capLabelValue, LABEL_TRUNCATION_MARK, LABEL_VALUE_MAX } from "../../../src/metrics/labels.js";

describe("capLabelValue", () => {
  it.each([
    ["", ""],
    ["web", "web"],
    ['a"b\\c\nd', 'a"b\\c\nd'],
    ["ünïcødé 🐳", "ünïcødé 🐳"],
    ["x".repeat(LABEL_VALUE_MAX), "x".repeat(LABEL_VALUE_MAX)],
    ["x".repeat(LABEL_VALUE_MAX + 1), "x".repeat(LABEL_VALUE_MAX - 1) + LABEL_TRUNCATION_MARK],
    ["y".repeat(10_000), "y".repeat(LABEL_VALUE_MAX - 1) + LABEL_TRUNCATION_MARK],
    // 256 emoji are 512 UTF-16 units but 256 code points: kept whole
    ["🐳".repeat(LABEL_VALUE_MAX), "🐳".repeat(LABEL_VALUE_MAX)],
    // never cut inside a surrogate pair
    ["🐳".repeat(LABEL_VALUE_MAX + 1), "🐳".repeat(LABEL_VALUE_MAX - 1) + LABEL_TRUNCATION_MARK],
    // lone surrogates would be invalid UTF-8 in the exposition
    ["a\uD800b", "a\uFFFDb"],
    ["a\uDC00", "a\uFFFD"],
    ["\uD83D", "\uFFFD"],
  ])("%j → %j", (input, expected) => {
    expect(capLabelValue(input)).toBe(expected);
  });

  it("never returns more than LABEL_VALUE_MAX code points", () => {
    for (const n of [LABEL_VALUE_MAX - 1, LABEL_VALUE_MAX, LABEL_VALUE_MAX + 1, 3 * LABEL_VALUE_MAX]) {
      expect(Array.from(capLabelValue("é🐳".repeat(n))).length).toBeLessThanOrEqual(LABEL_VALUE_MAX);
    }
  });
});
