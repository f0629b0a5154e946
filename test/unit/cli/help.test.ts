// Help texts say what a flag does, including what it does not do.
import { describe, expect, it } from "vitest";
import { COMMAND_HELP } from "../../../src/cli/help.js";

describe("run --help", () => {
  it("says --once is decision-only: one cycle, a JSON report, nothing signalled even in enforce mode", () => {
    const once = /^ {2}--once {2,}(.*(?:\n {26}.*)*)/m.exec(COMMAND_HELP.run ?? "")?.[1]?.replace(/\s+/g, " ");
    expect(once).toBe(
      "one cycle, then print its sessions report as JSON and exit; decision only: nothing is signalled, even in enforce mode (the report shows what the daemon would reap)",
    );
  });
});
