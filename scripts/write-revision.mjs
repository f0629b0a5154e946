// Writes dist/revision.txt, the git revision `ptyreaper --version` shows (run by `npm run build`).
// Outside a git checkout of this package (a source tarball, an unpacked npm package) it writes "unknown".
import { execFileSync } from "node:child_process";
import { mkdirSync, realpathSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));

function git(...args) {
  return execFileSync("git", ["-C", root, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
}

let revision = "unknown";
try {
  // Only this package's own repository counts: a tarball unpacked inside another checkout is not it.
  if (realpathSync(git("rev-parse", "--show-toplevel")) === realpathSync(root)) {
    revision = git("describe", "--always", "--dirty", "--abbrev=12", "--exclude=*");
  }
} catch {
  // no git, or not a repository: "unknown"
}
mkdirSync(join(root, "dist"), { recursive: true });
writeFileSync(join(root, "dist", "revision.txt"), `${revision}\n`);
