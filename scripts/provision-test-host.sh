#!/usr/bin/env bash
# Makes this host ready for ptyreaper's integration tests: packages, a running dockerd, the busybox test image.
# Idempotent; run as root. Each step prints one line. Safe to run on a host where everything is already there.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
DOCKER=/usr/bin/docker # the Debian client; /usr/local/bin/docker may be a newer CLI that the engine does not speak
DOCKER_SOCK=/var/run/docker.sock
DOCKERD_LOG=/var/log/ptyreaper-test-dockerd.log
TEST_IMAGE=ptyreaper-test/busybox:latest
BUSYBOX_APPLETS=(sh sleep cat ls ps env echo true kill stty)

log() { printf 'provision: %s\n' "$*"; }
die() { printf 'provision: FAILED: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (try: sudo bash $0)"

# --- packages -------------------------------------------------------------------------------------
# package -> a file it installs that the tests use; a package is "missing" when dpkg says so.
# build-essential: npm ci compiles the unix-dgram addon the daemon uses for sd_notify.
# debootstrap: the container image test makes its Node base images from Debian packages (no registry here).
# podman, conmon: the Podman harness and adapter tests.
# clang, libbpf1: npm ci builds the BPF pty finder with clang, and `ptyreaper sessions` loads it through libbpf;
# strace: the finder test checks which read the command made.
PACKAGES=(docker.io containerd runc busybox-static prometheus wrk systemd util-linux procps python3 lsof iproute2 ca-certificates curl build-essential debootstrap openssl podman conmon clang libbpf1 strace)

missing_packages() {
  local pkg status
  for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ $status == installed ]] || printf '%s\n' "$pkg"
  done
}

apt_lists_fresh() {
  # Fresh = some list downloaded within the last day (the InRelease files carry the download time).
  [[ -n $(find /var/lib/apt/lists -maxdepth 1 -name '*InRelease' -mmin -1440 -print -quit 2>/dev/null) ]]
}

# There is no init system to start services under: keep package scripts (prometheus) from trying.
POLICY_RC=/usr/sbin/policy-rc.d
policy_rc_created=0
remove_policy_rc() { if [[ $policy_rc_created -eq 1 ]]; then rm -f "$POLICY_RC"; fi; }
trap remove_policy_rc EXIT

mapfile -t missing < <(missing_packages)
if [[ ${#missing[@]} -eq 0 ]]; then
  log "packages: all ${#PACKAGES[@]} present"
else
  if [[ ! -e $POLICY_RC ]]; then
    printf '#!/bin/sh\n# Temporary (ptyreaper provision): no service starts during package installs.\nexit 101\n' >"$POLICY_RC"
    chmod 755 "$POLICY_RC"
    policy_rc_created=1
  fi
  if ! apt_lists_fresh; then
    log "apt: lists missing or older than a day, running apt-get update"
    apt-get update -qq
  fi
  log "packages: installing ${missing[*]}"
  # Recommends left out: docker.io's containerd and runc are hard dependencies, and prometheus'
  # node-exporter recommendation would pull in a second daemon the tests do not need.
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/ptyreaper-provision-apt.log 2>&1; then
    log "apt: install failed, refreshing lists and retrying (first attempt's log: /tmp/ptyreaper-provision-apt.log)"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" || die "apt-get install ${missing[*]}"
  fi
  mapfile -t still < <(missing_packages)
  [[ ${#still[@]} -eq 0 ]] || die "still missing after install: ${still[*]}"
fi

for tool in "$DOCKER" /usr/sbin/dockerd /bin/busybox promtool wrk systemd-analyze script unshare python3 lsof ss clang strace; do
  command -v "$tool" >/dev/null || die "$tool not found although its package is installed"
done
log "tools: docker dockerd busybox promtool wrk systemd-analyze script unshare python3 lsof ss clang strace found"

# --- cgroups --------------------------------------------------------------------------------------
cgroups_usable() {
  [[ -f /sys/fs/cgroup/cgroup.controllers ]] && return 0 # cgroup v2 (unified)
  local hier
  for hier in cpu memory devices pids; do # cgroup v1: the hierarchies runc needs
    mountpoint -q "/sys/fs/cgroup/$hier" || return 1
  done
  return 0
}
if cgroups_usable; then
  log "cgroups: usable ($([[ -f /sys/fs/cgroup/cgroup.controllers ]] && echo v2 || echo v1))"
else
  if ! mountpoint -q /sys/fs/cgroup; then
    mount -t cgroup2 none /sys/fs/cgroup || die "cannot mount cgroup2 on /sys/fs/cgroup"
  fi
  cgroups_usable || die "cgroups not usable: /sys/fs/cgroup has neither cgroup.controllers nor v1 cpu/memory/devices/pids hierarchies ($(findmnt -rn -o FSTYPE /sys/fs/cgroup || echo unmounted))"
  log "cgroups: mounted cgroup2 on /sys/fs/cgroup"
fi

# --- dockerd --------------------------------------------------------------------------------------
if "$DOCKER" info >/dev/null 2>&1; then
  log "dockerd: already reachable on $DOCKER_SOCK"
else
  log "dockerd: not reachable, starting it (log: $DOCKERD_LOG)"
  # setsid + nohup: the daemon must outlive this script and the CI step that ran it.
  setsid nohup /usr/sbin/dockerd --host "unix://$DOCKER_SOCK" --bridge=none --iptables=false --ip6tables=false \
    >>"$DOCKERD_LOG" 2>&1 </dev/null &
  dockerd_pid=$!
  for _ in $(seq 1 60); do
    if "$DOCKER" info >/dev/null 2>&1; then break; fi
    if ! kill -0 "$dockerd_pid" 2>/dev/null; then
      tail -n 40 "$DOCKERD_LOG" >&2 || true
      die "dockerd (pid $dockerd_pid) exited during start-up; log above"
    fi
    sleep 1
  done
  if ! "$DOCKER" info >/dev/null 2>&1; then
    tail -n 40 "$DOCKERD_LOG" >&2 || true
    die "dockerd (pid $dockerd_pid) not reachable on $DOCKER_SOCK after 60 s; log above"
  fi
  log "dockerd: started (pid $dockerd_pid) and reachable"
fi

# --- test image -----------------------------------------------------------------------------------
# The label records the applet list, so an image built by hand with fewer applets is rebuilt.
image_applets=$("$DOCKER" image inspect -f '{{ index .Config.Labels "org.ptyreaper.test-image.applets" }}' "$TEST_IMAGE" 2>/dev/null || true)
if [[ $image_applets == "${BUSYBOX_APPLETS[*]}" ]]; then
  log "image: $TEST_IMAGE present"
else
  rootfs=$(mktemp -d /tmp/ptyreaper-busybox.XXXXXX)
  mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/dev" "$rootfs/proc" "$rootfs/sys" "$rootfs/etc"
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in "${BUSYBOX_APPLETS[@]}"; do ln -s busybox "$rootfs/bin/$applet"; done
  printf 'root:x:0:0:root:/:/bin/sh\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\n' >"$rootfs/etc/group"
  tar -C "$rootfs" -c . | "$DOCKER" import --change 'ENV PATH=/bin' --change 'CMD ["sh"]' \
    --change "LABEL org.ptyreaper.test-image.applets=\"${BUSYBOX_APPLETS[*]}\"" - "$TEST_IMAGE" >/dev/null
  rm -rf "$rootfs"
  "$DOCKER" image inspect "$TEST_IMAGE" >/dev/null || die "image $TEST_IMAGE missing after docker import"
  log "image: built $TEST_IMAGE by docker import (busybox applets: ${BUSYBOX_APPLETS[*]})"
fi

# --- pause image (containerd CRI) ----------------------------------------------------------------
# A CRI pod's sandbox container must keep running: the test image's CMD is `sh`, which exits at once
# without a terminal, so the sandbox image is the same rootfs with a CMD that blocks.
PAUSE_IMAGE=ptyreaper-test/pause:latest
if [[ $("$DOCKER" image inspect -f '{{ index .Config.Labels "org.ptyreaper.test-image.pause" }}' "$PAUSE_IMAGE" 2>/dev/null || true) == 1 ]]; then
  log "image: $PAUSE_IMAGE present"
else
  printf 'FROM %s\nCMD ["sleep", "2147483647"]\nLABEL org.ptyreaper.test-image.pause=1\n' "$TEST_IMAGE" |
    DOCKER_BUILDKIT=0 "$DOCKER" build -q -t "$PAUSE_IMAGE" - >/dev/null || die "docker build $PAUSE_IMAGE from $TEST_IMAGE"
  log "image: built $PAUSE_IMAGE from $TEST_IMAGE (CMD sleep)"
fi

# --- containerd (CRI) -----------------------------------------------------------------------------
# The tests start private instances of their own (own root, state, socket); here only check that the
# binaries are there and that this containerd has the CRI plugin compiled in.
for tool in /usr/bin/containerd /usr/bin/ctr /usr/bin/containerd-shim-runc-v2 /usr/sbin/runc; do
  [[ -x $tool ]] || die "$tool not found although containerd and runc are installed"
done
/usr/bin/containerd config default 2>/dev/null | grep -q 'io.containerd.grpc.v1.cri' ||
  die "this containerd has no CRI plugin (io.containerd.grpc.v1.cri)"
log "containerd: $(/usr/bin/containerd --version | awk '{print $3}') with the CRI plugin"

# --- podman ---------------------------------------------------------------------------------------
# As root without systemd: cgroupfs manager, file events, runc (crun refuses this hybrid cgroup layout),
# and ulimits no higher than this host's hard limits (raising them is refused: "error setting rlimit").
# The tests pass these as flags anyway; the drop-in makes a plain `podman` work here by hand too.
PODMAN_CONF=/etc/containers/containers.conf.d/50-ptyreaper-test.conf
podman_conf=$(cat <<'CONF'
# Written by ptyreaper's scripts/provision-test-host.sh: podman as root on a host without systemd.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
CONF
)
for tool in /usr/bin/podman /usr/bin/conmon; do
  [[ -x $tool ]] || die "$tool not found although podman and conmon are installed"
done
if [[ -f $PODMAN_CONF && $(cat "$PODMAN_CONF") == "$podman_conf" ]]; then
  log "podman: $PODMAN_CONF present"
else
  mkdir -p "$(dirname "$PODMAN_CONF")"
  printf '%s\n' "$podman_conf" >"$PODMAN_CONF"
  log "podman: wrote $PODMAN_CONF"
fi
/usr/bin/podman info --format '{{.Host.CgroupManager}} {{.Host.EventLogger}}' 2>/dev/null | grep -qx 'cgroupfs file' ||
  die "podman info does not report cgroupfs/file after writing $PODMAN_CONF"
log "podman: $(/usr/bin/podman --version | awk '{print $3}') (cgroupfs, file events, runc)"

log "done"
