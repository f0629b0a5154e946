// The sessions table never lets a hostile string break or disguise a row.
import { describe, expect, it } from "vitest";
import { printable } from "../../../src/cli/render.js";

describe("printable", () => {
  it.each([
    ["plain", "sh -l", "sh -l"],
    ["newline and tab", "a\nb\tc", "a\\x0ab\\x09c"],
    ["escape sequence", "\u001b[31mred", "\\x1b[31mred"],
    ["C1 control and DEL", "a\u0085b\u007f", "a\\x85b\\x7f"],
    ["right-to-left override", "ls \u202Egnp.exe", "ls \\u202egnp.exe"],
    ["isolates and marks", "\u2066x\u2069\u200f", "\\u2066x\\u2069\\u200f"],
    ["line separator", "a\u2028b", "a\\u2028b"],
    ["zero-width space (two names that look alike)", "web\u200b-1", "web\\u200b-1"],
    ["byte order mark", "\ufeffsh", "\\ufeffsh"],
    ["word joiner and soft hyphen", "a\u2060b\u00adc", "a\\u2060b\\xadc"],
    ["unicode text stays", "café 日本 🙂", "café 日本 🙂"],
  ])("%s", (_name, input, expected) => {
    expect(printable(input, 200)).toBe(expected);
  });

  it("cuts long values with an ellipsis", () => {
    expect(printable("x".repeat(50), 10)).toBe(`${"x".repeat(9)}…`);
  });
});
