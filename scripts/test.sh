#!/usr/bin/env bash
# The one test command (`npm test`): lint, typecheck, build, then every vitest test, unit and integration.
# Integration tests need the real kernel and a Docker engine; as root this provisions what is missing,
# otherwise it stops and says what to install. Tests are never skipped.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DOCKER=/usr/bin/docker
log() { printf 'test.sh: %s\n' "$*"; }

# --- what the integration tests need ---------------------------------------------------------------
missing_requirements() {
  local tool
  [[ -x $DOCKER ]] || { echo "$DOCKER (package docker.io)"; }
  if [[ -x $DOCKER ]] && ! "$DOCKER" info >/dev/null 2>&1; then echo "a reachable Docker engine ($DOCKER info fails)"; fi
  for tool in promtool script unshare systemd-analyze python3 debootstrap openssl; do
    command -v "$tool" >/dev/null 2>&1 || echo "$tool"
  done
  if [[ -x $DOCKER ]] && ! "$DOCKER" image inspect ptyreaper-test/busybox:latest >/dev/null 2>&1; then
    echo "the test image ptyreaper-test/busybox:latest"
  fi
  # The containerd CRI and Podman tests (private instances of their own; see docs/runtimes.md).
  for tool in /usr/bin/containerd /usr/bin/ctr /usr/bin/podman /usr/bin/conmon; do
    [[ -x $tool ]] || echo "$tool"
  done
  if [[ -x $DOCKER ]] && ! "$DOCKER" image inspect ptyreaper-test/pause:latest >/dev/null 2>&1; then
    echo "the CRI sandbox image ptyreaper-test/pause:latest"
  fi
}

mapfile -t missing < <(missing_requirements)
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    log "missing: ${missing[*]}; running scripts/provision-test-host.sh"
    bash scripts/provision-test-host.sh || { log "provisioning failed"; echo "test.sh: 0 passed, 1 failed"; exit 1; }
    mapfile -t missing < <(missing_requirements)
  fi
  if [[ ${#missing[@]} -gt 0 ]]; then
    printf 'test.sh: the integration tests need what this host lacks:\n' >&2
    printf '  - %s\n' "${missing[@]}" >&2
    printf 'test.sh: fix with: sudo bash scripts/provision-test-host.sh   (then run npm test again)\n' >&2
    if [[ $(id -u) -ne 0 ]]; then
      printf 'test.sh: the integration tests also need root (they mount devpts in new namespaces and read every /proc/PID/fd): sudo npm test; unit tests alone: npm run test:unit\n' >&2
    fi
    echo "test.sh: 0 passed, 1 failed"
    exit 1
  fi
fi

# --- the steps ------------------------------------------------------------------------------------
# Every step runs even after a failure, so one run shows everything that is wrong.
failed_steps=()
run_step() {
  local name=$1
  shift
  log "== $name: $*"
  if ! "$@"; then
    failed_steps+=("$name")
    log "== $name FAILED"
  fi
}

run_step lint npm run --silent lint
run_step typecheck npm run --silent typecheck
run_step build npm run --silent build

results=$(mktemp /tmp/ptyreaper-vitest.XXXXXX.json)
trap 'rm -f "$results"' EXIT
run_step vitest npx vitest run --reporter=default --reporter=json --outputFile.json="$results"

# vitest prints its own summary above; this closing line is the one CI reads.
counts=$(node -e '
  const fs = require("node:fs");
  let r = {};
  try { r = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch { /* no results: vitest crashed */ }
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  // A file that fails to load has no test results but still fails the run.
  const brokenFiles = (r.testResults ?? []).filter((f) => f.status === "failed" && (f.assertionResults ?? []).length === 0).length;
  const failed = (r.numFailedTests ?? 0) + brokenFiles;
  process.stdout.write(`${r.numPassedTests ?? 0} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
  // How long each vitest project took, first file start to last file end (to stderr: not the closing line).
  const spans = {};
  for (const f of r.testResults ?? []) {
    const project = /\/test\/integration\//.test(f.name ?? "") ? "integration" : "unit";
    const span = (spans[project] ??= { start: Infinity, end: -Infinity, files: 0 });
    span.start = Math.min(span.start, f.startTime ?? Infinity);
    span.end = Math.max(span.end, f.endTime ?? -Infinity);
    span.files++;
  }
  const times = Object.entries(spans).filter(([, s]) => s.end > s.start).sort(([, a], [, b]) => a.start - b.start).map(([p, s]) => `${p}: ${s.files} files in ${Math.round((s.end - s.start) / 1000)} s`);
  if (times.length > 0) process.stderr.write(`test.sh: vitest projects: ${times.join(", ")}\n`);
' "$results")
# Nothing here skips a test; one that is skipped anyway (a stray .skip or skipIf) fails the run.
if [[ $counts == *skipped* ]]; then
  failed_steps+=("skipped tests")
fi

if [[ ${#failed_steps[@]} -gt 0 ]]; then
  log "FAILED steps: ${failed_steps[*]}"
  echo "vitest: $counts"
  exit 1
fi
echo "vitest: $counts"
