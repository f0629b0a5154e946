import { describe, expect, it } from "vitest";
import { ptyKey } from "../../../src/domain/types.js";

describe("ptyKey", () => {
  it("is devptsDev:index", () => {
    expect(ptyKey("0:40", 7)).toBe("0:40:7");
    expect(ptyKey("0:4", 17)).toBe("0:4:17");
    expect(ptyKey("0:40", 7)).not.toBe(ptyKey("0:40", 8));
  });

  it("keeps its answers right when more ptys than it keeps are asked for (a container making ptys)", () => {
    for (let round = 0; round < 3; round++) {
      for (let index = 0; index < 20_000; index++) expect(ptyKey(`0:${100 + (index % 7)}`, index)).toBe(`0:${100 + (index % 7)}:${index}`);
    }
  });
});
