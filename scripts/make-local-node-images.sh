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

if ! have "$runtime_tag"; then
  command -v debootstrap >/dev/null || { echo "$0: debootstrap missing: apt-get install debootstrap" >&2; exit 1; }
  work=$(mktemp -d /tmp/ptyreaper-node-base.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  root=$work/rootfs
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
  tar -C "$root" -c . | "$docker" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' - "$runtime_tag" >/dev/null
  echo "made $runtime_tag" >&2
fi

if ! have "$build_tag"; then
  # The build stand-in adds what node:20-bookworm has for node-gyp. --network host: the engine may have no bridge.
  DOCKER_BUILDKIT=0 "$docker" build --network host -q -t "$build_tag" - >/dev/null <<EOF
FROM $runtime_tag
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
EOF
  echo "made $build_tag" >&2
fi
