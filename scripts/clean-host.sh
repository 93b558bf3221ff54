#!/usr/bin/env bash
# Removes Sandstream's host-wide state once no sandbox runs: every SANDSTREAM-* and SS-*
# iptables chain and the jumps to them, the address slots, and the original
# net.ipv4.ip_forward value, and the loop mount of scripts/docker.sh's data root once no
# dockerd uses it (its image file is kept: it holds the imported template images).
# Refuses while sandbox network namespaces exist. The oci backend's per-sandbox disks
# need nothing here: each is mounted only in its container's namespace and its loop
# device detaches itself when the container ends.
set -euo pipefail
if ip netns list 2>/dev/null | grep -q '^sb-'; then
  echo "clean-host: sandboxes are still running; nothing removed" >&2
  exit 0
fi
for table in filter nat; do
  # A host with none of them is already clean (grep's "no match" is not a failure here).
  iptables-save -t "$table" | { grep -E '^-A [A-Z]+ .*-j (SANDSTREAM-|SS-)' || true; } | while read -r _ rule; do
    eval "iptables -w -t $table -D $rule" || true
  done
  for chain in $(iptables-save -t "$table" | sed -n 's/^:\(SANDSTREAM-[A-Z]*\|SS-[0-9a-f]*\) .*/\1/p'); do
    iptables -w -t "$table" -F "$chain" || true
  done
  for chain in $(iptables-save -t "$table" | sed -n 's/^:\(SANDSTREAM-[A-Z]*\|SS-[0-9a-f]*\) .*/\1/p'); do
    iptables -w -t "$table" -X "$chain" || true
  done
done
if [ -f /run/sandstream/ip_forward.orig ]; then
  cat /run/sandstream/ip_forward.orig > /proc/sys/net/ipv4/ip_forward
  rm -f /run/sandstream/ip_forward.orig
fi
rm -rf /run/sandstream/slots
data_root=/var/lib/sandstream-docker/data
if mountpoint -q "$data_root" && ! pgrep -x dockerd >/dev/null; then
  umount --recursive "$data_root" || true
fi
