#!/usr/bin/env bash
# Removes Sandstream's host-wide state once no sandbox runs: the iptables chains for
# sandbox links and the address-slot directory. Safe to run any time: it refuses while
# sandbox network namespaces exist.
set -euo pipefail
if ip netns list 2>/dev/null | grep -q '^sb-'; then
  echo "clean-host: sandboxes are still running; nothing removed" >&2
  exit 0
fi
for pair in "INPUT SANDSTREAM-IN" "FORWARD SANDSTREAM-FWD"; do
  set -- $pair
  while iptables -w -D "$1" -i 'vs+' -j "$2" 2>/dev/null; do :; done
  iptables -w -F "$2" 2>/dev/null || true
  iptables -w -X "$2" 2>/dev/null || true
done
rm -rf /run/sandstream/slots
