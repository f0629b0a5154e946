// Stages the program for the container image exactly as `ptyreaper install` copies it (the one list in src/shipped.ts).
// usage: node scripts/stage-program.mjs TARGET_DIR [NATIVE_OUTPUT...]  (each named output must have been built)
import { dirname } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { copyProgram } from "../dist/systemd/install.js";

const [target, ...required] = process.argv.slice(2);
if (!target) {
  process.stderr.write("usage: node scripts/stage-program.mjs TARGET_DIR [NATIVE_OUTPUT...]\n");
  process.exit(64);
}
const record = copyProgram(dirname(dirname(fileURLToPath(import.meta.url))), target, "image build");
const missing = required.filter((name) => record.native[name] !== "installed");
if (missing.length > 0) {
  process.stderr.write(`stage-program: not built: ${missing.join(", ")} (the image needs them)\n`);
  process.exit(1);
}
const built = Object.keys(record.native).filter((name) => record.native[name] === "installed");
process.stdout.write(`stage-program: ${target} (native: ${built.join(", ")})\n`);
