// Text from outside (exec arguments, container names, config values) made safe to show on one line.

/**
 * Characters that would break a line or disguise what it says: C0 and C1 controls, DEL, the soft
 * hyphen, bidi marks, embeddings, overrides and isolates, zero-width characters, line and paragraph
 * separators, invisible operators, the BOM and interlinear annotations. (A U+202E in an exec
 * argument reverses the rest of the row; a U+200B makes two names look alike.)
 */
// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]/g;

/** `\x1b` for a byte-sized code, `\u202e` above. */
function escapeChar(c: string): string {
  const code = c.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
}

/** Every unprintable character escaped; everything else, spaces and non-Latin text included, unchanged. */
export function escapeUnprintable(text: string): string {
  return text.replace(UNPRINTABLE, escapeChar);
}
