// Label values from untrusted sources (container names) made safe and bounded for the exposition.

/** Longest label value we emit, in code points. */
export const LABEL_VALUE_MAX = 256;
/** Marks a value that was cut, so a reader never mistakes it for the real name. */
export const LABEL_TRUNCATION_MARK = "…";

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * The rule: lone UTF-16 surrogates become U+FFFD (the exposition must be valid UTF-8); a value longer
 * than LABEL_VALUE_MAX code points keeps its first LABEL_VALUE_MAX - 1 code points followed by "…".
 * Escaping of quotes, backslashes and newlines is left to prom-client, which does it on output.
 */
export function capLabelValue(value: string): string {
  const wellFormed = value.replace(LONE_SURROGATE, "\uFFFD");
  // Cheap exit: UTF-16 length is an upper bound on the code point count.
  if (wellFormed.length <= LABEL_VALUE_MAX) return wellFormed;
  const codePoints = Array.from(wellFormed);
  if (codePoints.length <= LABEL_VALUE_MAX) return wellFormed;
  return codePoints.slice(0, LABEL_VALUE_MAX - 1).join("") + LABEL_TRUNCATION_MARK;
}
