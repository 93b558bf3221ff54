#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, builds the static
# agent, runs every Rust test. Tests that need root (chroot, namespaces) run as root.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
export SANDSTREAM_STATIC_AGENT
SANDSTREAM_STATIC_AGENT="$("$ROOT/scripts/build-agent.sh")"
log "running the Rust tests"
status=0
cargo nextest run --workspace --locked --no-fail-fast "$@" || status=$?
"$ROOT/scripts/clean-host.sh"
exit $status
