#!/usr/bin/env bash
# Makes sure a Docker Engine answers for the `docker` backend and prints its socket path.
# Installs nothing (scripts/setup.sh installs the Docker Engine package). If nothing answers on the socket
# (SANDSTREAM_DOCKER_SOCKET, default /var/run/docker.sock), starts `dockerd` in the
# background, logging to /var/log/sandstream-dockerd.log, and waits until it answers.
#
# Note: dockerd changes the host: it adds its own iptables chains (DOCKER, DOCKER-USER,
# DOCKER-ISOLATION-*), sets the FORWARD policy to DROP and turns on net.ipv4.ip_forward.
# The oci backend's chains decide their own traffic with explicit ACCEPT/DROP, so both
# backends work side by side.
#
# Options chosen:
#   --bridge=none      no default docker0 network: sandboxes use the runtime's own
#                      `sandstream` network (no inter-container traffic), nothing else
#   --live-restore     containers survive a dockerd restart, as sandboxes outlive the
#                      processes that manage them
#   --userland-proxy   (the default) kept: the alternative sets route_localnet on bridges
#   --data-root, --storage-driver btrfs
#                      containers and images live in a btrfs filesystem in one sparse
#                      image file (SANDSTREAM_DOCKER_IMAGE, default
#                      /var/lib/sandstream-docker/image.btrfs, sized at half the free space
#                      of its filesystem when first made), loop-mounted at
#                      /var/lib/sandstream-docker/data: the btrfs driver can limit each
#                      container's writable layer (`--storage-opt size`, which the runtime
#                      sets to the sandbox's disk limit), which overlay2 on the host's ext4
#                      cannot. The mount stays while dockerd runs; scripts/clean-host.sh
#                      unmounts it once no dockerd runs.
source "$(dirname "$0")/lib.sh"
SOCKET="${SANDSTREAM_DOCKER_SOCKET:-/var/run/docker.sock}"
LOG=/var/log/sandstream-dockerd.log
IMAGE="${SANDSTREAM_DOCKER_IMAGE:-/var/lib/sandstream-docker/image.btrfs}"
DATA_ROOT=/var/lib/sandstream-docker/data

if ! docker_answers "$SOCKET"; then
  [ "$(id -u)" = 0 ] || { echo "scripts/docker.sh: need root to start dockerd" >&2; exit 1; }
  command -v dockerd >/dev/null || { echo "scripts/docker.sh: dockerd is not installed (scripts/setup.sh installs the Docker Engine package)" >&2; exit 1; }
  log "starting dockerd on $SOCKET (log: $LOG)"
  command -v mkfs.btrfs >/dev/null || { echo "scripts/docker.sh: mkfs.btrfs is not installed (scripts/setup.sh installs btrfs-progs)" >&2; exit 1; }
  mkdir -p "$(dirname "$IMAGE")" "$DATA_ROOT"
  if ! mountpoint -q "$DATA_ROOT"; then
    if [ ! -f "$IMAGE" ]; then
      size=$(( $(df --output=avail -B1 "$(dirname "$IMAGE")" | tail -n 1) / 2 ))
      log "making $IMAGE, a sparse btrfs image of $((size >> 30)) GiB, for dockerd's data root"
      truncate -s "$size" "$IMAGE.new"
      mkfs.btrfs -q "$IMAGE.new" >/dev/null
      mv "$IMAGE.new" "$IMAGE"
    fi
    mount -o loop,discard "$IMAGE" "$DATA_ROOT"
  fi
  pidfile="/run/sandstream-dockerd-$(printf '%s' "$SOCKET" | md5sum | cut -c1-8).pid"
  setsid dockerd --host "unix://$SOCKET" --pidfile "$pidfile" --bridge=none --live-restore \
    --data-root "$DATA_ROOT" --storage-driver btrfs --log-level=warn </dev/null >>"$LOG" 2>&1 &
  wait_for_docker "$SOCKET" || { echo "scripts/docker.sh: dockerd did not answer on $SOCKET within 30 s; see $LOG" >&2; tail -n 20 "$LOG" >&2; exit 1; }
fi
# Each sandbox's disk limit is a btrfs qgroup limit. Removing a subvolume whose tree is
# deeper than the kernel's drop_subtree_threshold (3 by default) marks every qgroup's
# accounting inconsistent instead of tracing it, and inconsistent qgroups enforce no
# limit until a rescan: after a sandbox that built a deep tree was removed, another
# wrote 200 MiB past its 64 MiB limit. The threshold at its maximum (8, BTRFS_MAX_LEVEL)
# keeps the accounting exact; quotas already inconsistent are rescanned.
if mountpoint -q "$DATA_ROOT"; then
  btrfs quota enable "$DATA_ROOT"
  qgroups="/sys/fs/btrfs/$(findmnt -no UUID "$DATA_ROOT")/qgroups"
  if [ -w "$qgroups/drop_subtree_threshold" ]; then
    echo 8 > "$qgroups/drop_subtree_threshold"
  else
    log "warning: this kernel has no $qgroups/drop_subtree_threshold; removing a deep sandbox may suspend disk limits until a rescan"
  fi
  if [ "$(cat "$qgroups/inconsistent" 2>/dev/null || echo 0)" != 0 ]; then
    log "rescanning the btrfs quotas of $DATA_ROOT (their accounting is inconsistent)"
    btrfs quota rescan -w "$DATA_ROOT" >/dev/null
  fi
fi
echo "$SOCKET"
