// Strict flag parsing for every command: unknown flags and stray arguments are usage errors.
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../errors.js";

type Options = NonNullable<ParseArgsConfig["options"]>;

export function parseFlags<O extends Options>(args: string[], options: O, usage: string, positionals = 0) {
  try {
    const parsed = parseArgs({ args, options, strict: true, allowPositionals: positionals > 0 });
    if (parsed.positionals.length > positionals) throw new UsageError(`unexpected argument "${parsed.positionals[positionals]}"; ${usage}`);
    return { ...parsed.values, positionals: parsed.positionals };
  } catch (err) {
    if (err instanceof UsageError) throw err;
    // node's messages are long and multi-line; keep the first line.
    const first = (err as Error).message.split("\n")[0] ?? "bad arguments";
    throw new UsageError(`${first.split(". ")[0] ?? first}; ${usage}`);
  }
}
