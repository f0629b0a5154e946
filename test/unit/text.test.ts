// The one sanitiser for outside text shown on a line: every character that could break or disguise it is escaped.
import { describe, expect, it } from "vitest";
import { escapeUnprintable } from "../../src/text.js";

describe("escapeUnprintable", () => {
  it.each([
    ["plain text", "sh -l", "sh -l"],
    ["newline, tab, carriage return", "a\nb\tc\rd", "a\\x0ab\\x09c\\x0dd"],
    ["NUL and escape", "\u0000\u001b[2J", "\\x00\\x1b[2J"],
    ["DEL and C1 controls", "\u007f\u0085\u009b", "\\x7f\\x85\\x9b"],
    ["soft hyphen", "pass\u00adword", "pass\\xadword"],
    ["Arabic letter mark", "a\u061cb", "a\\u061cb"],
    ["Mongolian vowel separator", "a\u180eb", "a\\u180eb"],
    ["zero-width space, non-joiner, joiner", "a\u200bb\u200cc\u200dd", "a\\u200bb\\u200cc\\u200dd"],
    ["left-to-right and right-to-left marks", "\u200e\u200f", "\\u200e\\u200f"],
    ["line and paragraph separators", "a\u2028b\u2029c", "a\\u2028b\\u2029c"],
    ["embeddings and overrides", "\u202a\u202b\u202c\u202d\u202e", "\\u202a\\u202b\\u202c\\u202d\\u202e"],
    ["word joiner and isolates", "\u2060\u2066x\u2069", "\\u2060\\u2066x\\u2069"],
    ["byte order mark (zero-width no-break space)", "\ufeffweb-1", "\\ufeffweb-1"],
    ["interlinear annotation", "\ufff9a\ufffbb", "\\ufff9a\\ufffbb"],
    ["visible Unicode stays", "café 日本 🙂 – ü", "café 日本 🙂 – ü"],
    ["no-break space stays (it is visible as a space)", "a\u00a0b", "a\u00a0b"],
  ])("%s", (_name, input, expected) => {
    expect(escapeUnprintable(input)).toBe(expected);
  });

  it("the result never holds a character of the escaped classes, whatever the input", () => {
    const all = Array.from({ length: 0x3000 }, (_, i) => String.fromCharCode(i)).join("") + "\ufeff\ufff9\ufffa\ufffb";
    const out = escapeUnprintable(all);
    // eslint-disable-next-line no-control-regex
    expect(out).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]/);
  });
});
