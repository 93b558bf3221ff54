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
#   --userns-remap=default
#                      every container in its own user namespace: root inside is the
#                      first id of a range of 65536 unprivileged host ids (container ids
#                      0..65535 are host BASE..BASE+65535), never host root. dockerd makes
#                      the user `dockremap` and its /etc/subuid and /etc/subgid range when
#                      missing (BASE is that range's start, 100000 on a host with no other
#                      ranges) and keeps its containers and images in DATA_ROOT/BASE.BASE,
#                      so images imported without remapping are not seen (the runtime
#                      imports its templates again on first use; the old ones stay in
#                      DATA_ROOT until removed by hand). The runtime refuses an Engine
#                      without it.
#
# Run again, it leaves a daemon it started with the same options alone. One it started with
# other options (an older version of this script: without --userns-remap) is restarted:
# its sandbox containers (label sandstream.sandbox=1), whose root was host root and which
# the restarted daemon would no longer see, are removed first. A daemon it did not start
# is never stopped: it says so and fails.
source "$(dirname "$0")/lib.sh"
SOCKET="${SANDSTREAM_DOCKER_SOCKET:-/var/run/docker.sock}"
IMAGE="${SANDSTREAM_DOCKER_IMAGE:-/var/lib/sandstream-docker/image.btrfs}"
# Beside its image, so that a second daemon (another socket and image) has its own.
DATA_ROOT="$(dirname "$IMAGE")/data"
id="$(printf '%s' "$SOCKET" | md5sum | cut -c1-8)"
pidfile="/run/sandstream-dockerd-$id.pid"
# The options the daemon was started with, to tell whether a running one has these.
argsfile="/run/sandstream-dockerd-$id.args"
LOG=/var/log/sandstream-dockerd.log
# The default socket's daemon keeps Docker's default state dir (/var/run/docker); another
# socket's gets its own, as two daemons cannot share one.
exec_root=()
if [ "$SOCKET" != /var/run/docker.sock ]; then
  exec_root=(--exec-root "/run/sandstream-dockerd-$id")
  LOG="/var/log/sandstream-dockerd-$id.log"
fi
args=(--host "unix://$SOCKET" --pidfile "$pidfile" "${exec_root[@]}" --bridge=none --live-restore
  --data-root "$DATA_ROOT" --storage-driver btrfs --userns-remap=default --log-level=warn)

if docker_answers "$SOCKET" && [ "$(cat "$argsfile" 2>/dev/null)" != "${args[*]}" ]; then
  pid="$(cat "$pidfile" 2>/dev/null || true)"
  if [ -z "$pid" ] || [ "$(ps -o comm= -p "$pid" 2>/dev/null)" != dockerd ]; then
    echo "scripts/docker.sh: a Docker daemon this script did not start answers on $SOCKET; stop it (or set SANDSTREAM_DOCKER_SOCKET to another socket) and run again" >&2
    exit 1
  fi
  [ "$(id -u)" = 0 ] || { echo "scripts/docker.sh: need root to restart dockerd" >&2; exit 1; }
  log "restarting dockerd on $SOCKET (pid $pid): it runs with other options than ${args[*]}"
  # Sandboxes of the old options: a restarted daemon with another data dir (user-namespace
  # remapping keeps its own) would lose track of them, and their root is host root.
  old="$(docker -H "unix://$SOCKET" ps -aq --filter label=sandstream.sandbox=1)"
  if [ -n "$old" ]; then
    log "removing $(echo "$old" | wc -l) sandbox container(s) of the old daemon"
    # shellcheck disable=SC2086 # one id a word
    docker -H "unix://$SOCKET" rm -f $old >/dev/null
  fi
  kill "$pid"
  for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { echo "scripts/docker.sh: dockerd (pid $pid) did not stop within 60 s" >&2; exit 1; }
fi

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
  printf '%s' "${args[*]}" > "$argsfile"
  setsid dockerd "${args[@]}" </dev/null >>"$LOG" 2>&1 &
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
