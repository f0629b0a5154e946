// `ptyreaper hash-password`: a bcrypt hash for web config's basic_auth_users, from the installed program alone.
import bcrypt from "bcryptjs";
import { EXIT, UsageError } from "../errors.js";
import { parseFlags } from "./flags.js";
import { HASH_PASSWORD_USAGE } from "./help.js";
import type { Command } from "./io.js";

export const DEFAULT_COST = 10;
/** bcrypt hashes only the first 72 bytes: a longer password would be accepted by its prefix alone. */
export const MAX_PASSWORD_BYTES = 72;

/**
 * Reads the password from standard input (never from argv, which /proc shows every user): one line, its
 * newline dropped. On a terminal the input is not echoed.
 */
export const hashPasswordCommand: Command = async (args, io) => {
  const values = parseFlags(args, { cost: { type: "string" } }, HASH_PASSWORD_USAGE);
  const cost = values.cost === undefined ? DEFAULT_COST : Number(values.cost);
  if (!Number.isInteger(cost) || cost < 4 || cost > 31)
    throw new UsageError(`--cost must be a whole number from 4 to 31, got ${JSON.stringify(values.cost)}; ${HASH_PASSWORD_USAGE}`);
  if (!io.readSecret) throw new UsageError(`no standard input to read the password from; ${HASH_PASSWORD_USAGE}`);
  const password = (await io.readSecret("password (not echoed): ")).replace(/\r?\n$/, "");
  if (password === "") throw new UsageError("the password is empty (read from standard input)");
  if (password.includes("\n")) throw new UsageError("the password spans several lines: give one line on standard input");
  const bytes = Buffer.byteLength(password, "utf8");
  if (bytes > MAX_PASSWORD_BYTES)
    throw new UsageError(`the password is ${bytes} bytes; bcrypt uses only the first ${MAX_PASSWORD_BYTES}, so give at most that many`);
  io.stdout(`${await bcrypt.hash(password, cost)}\n`);
  return EXIT.ok;
};
