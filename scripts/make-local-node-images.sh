#!/usr/bin/env bash
# Makes local stand-ins for the Dockerfile's base images (node:20-bookworm and node:20-bookworm-slim)
# where no container registry is reachable: a Debian bookworm root made by debootstrap from Debian's
# packages, with this machine's Node.js, npm and Node headers in /usr/local as in the official images.
#
#   scripts/make-local-node-images.sh RUNTIME_TAG BUILD_TAG
#
# RUNTIME_TAG: node, npm and headers on a minimal bookworm. BUILD_TAG: the same plus python3, make
# and g++ for node-gyp. An image whose tag already exists is kept (put the Node version in the tag).
# This machine's CA bundle and npm cafile are copied in, so npm works behind a TLS-intercepting proxy
# as it does on the host. Uses DOCKER_HOST like the docker CLI. Needs root and debootstrap.
set -euo pipefail

runtime_tag=${1:?usage: $0 RUNTIME_TAG BUILD_TAG}
build_tag=${2:?usage: $0 RUNTIME_TAG BUILD_TAG}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
docker=${DOCKER:-/usr/bin/docker}

have() { "$docker" image inspect --format '{{.Id}}' "$1" >/dev/null 2>&1; }

node_bin=$(command -v node)
node_prefix=$(cd "$(dirname "$(readlink -f "$node_bin")")/.." && pwd)
npm_dir=$node_prefix/lib/node_modules/npm
headers=$node_prefix/include/node
for need in "$npm_dir/bin/npm-cli.js" "$headers/node_api.h"; do
  [[ -e $need ]] || { echo "$0: $need missing: need this machine's Node.js with npm and headers" >&2; exit 1; }
done

import() { # ROOT TAG
  tar -C "$1" -c . | "$docker" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' - "$2" >/dev/null
  echo "made $2" >&2
}

have "$runtime_tag" && have "$build_tag" && exit 0
command -v debootstrap >/dev/null || { echo "$0: debootstrap missing: apt-get install debootstrap" >&2; exit 1; }
work=$(mktemp -d /tmp/ptyreaper-node-base.XXXXXX)
proc_mounted=""
cleanup() {
  if [[ -n $proc_mounted ]]; then umount "$proc_mounted" || true; fi
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

root=$work/runtime
echo "debootstrap bookworm (minbase) from $mirror ..." >&2
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
install -D -m 0755 "$(readlink -f "$node_bin")" "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules" "$root/usr/local/include" "$root/usr/local/etc" "$root/etc/ssl/certs"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
cp -a "$headers" "$root/usr/local/include/node"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
echo "cafile=/etc/ssl/certs/ca-certificates.crt" >"$root/usr/local/etc/npmrc"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# The copied node must run on the new root's own libraries.
chroot "$root" /usr/local/bin/node -e 'process.exit(0)' || { echo "$0: node does not run on bookworm's libraries" >&2; exit 1; }

if ! have "$build_tag"; then
  # What node:20-bookworm adds for node-gyp, installed in a copy of the root (faster than a docker build layer).
  build=$work/build
  cp -a "$root" "$build"
  cp /etc/resolv.conf "$build/etc/resolv.conf"
  mount -t proc proc "$build/proc" && proc_mounted=$build/proc
  chroot "$build" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 make g++' \
    >"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log" >&2; exit 1; }
  umount "$build/proc" && proc_mounted=""
  rm -rf "$build"/var/cache/apt/archives/*.deb "$build"/var/lib/apt/lists/*
  : >"$build/etc/resolv.conf"
  import "$build" "$build_tag"
fi
have "$runtime_tag" || import "$root" "$runtime_tag"
