#!/usr/bin/env bash
# Lets crun (and any OCI runtime that wants all controllers in one version) run on a host
# with the hybrid cgroup layout: cgroup v1 hierarchies under /sys/fs/cgroup plus a v2
# hierarchy at /sys/fs/cgroup/unified. crun refuses that layout while the v2 hierarchy
# still has controllers ("cgroups in hybrid mode not supported, drop all controllers
# from cgroupv2"); on Debian 12 under a v1 init, hugetlb is such a controller. This binds
# each of them to a v1 hierarchy of its own at /sys/fs/cgroup/NAME, as the others are.
# runc and Docker work the same before and after. Idempotent; nothing to do on a pure
# v1 or pure v2 host. Needs root.
source "$(dirname "$0")/lib.sh"

unified=/sys/fs/cgroup/unified
if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ] || ! [ -f "$unified/cgroup.controllers" ]; then
  exit 0
fi
read -r -a controllers < "$unified/cgroup.controllers" || true
for c in "${controllers[@]}"; do
  [ "$(id -u)" = 0 ] || { echo "scripts/cgroups.sh: need root to bind the $c controller to cgroup v1" >&2; exit 1; }
  log "binding the $c cgroup controller to a cgroup v1 hierarchy at /sys/fs/cgroup/$c (for crun)"
  mkdir -p "/sys/fs/cgroup/$c"
  mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"
done
left="$(cat "$unified/cgroup.controllers")"
[ -z "$left" ] || { echo "scripts/cgroups.sh: cgroup v2 still has controllers: $left" >&2; exit 1; }
