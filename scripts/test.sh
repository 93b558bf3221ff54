#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, builds the static
# agent, runs every Rust test, then the JavaScript suites against a real `sandstream up`
# (server end to end, TypeScript SDK under the machine's Node and under Node 18, web
# playground in headless Chromium); the oci backend's tests run on runc, then on crun,
# then on runc in a cgroup v2 virtual machine (scripts/cgroup2-vm.sh).
# Tests that need root (namespaces, runc, iptables) run as root. Browser screenshots
# are kept in web/test-results/screenshots.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
# crun refuses a hybrid cgroup layout whose v2 hierarchy has controllers.
"$ROOT/scripts/cgroups.sh"
export SANDSTREAM_STATIC_AGENT SANDSTREAM_AGENT_BINARY
SANDSTREAM_STATIC_AGENT="$("$ROOT/scripts/build-agent.sh")"
SANDSTREAM_AGENT_BINARY="$SANDSTREAM_STATIC_AGENT"
# One template cache for every suite: the default template is built once per machine.
export SANDSTREAM_CACHE_DIR="${SANDSTREAM_CACHE_DIR:-/var/cache/sandstream}"
export SANDSTREAM_BIN="$TARGET_DIR/debug/sandstream"
# The docker backend's tests need a Docker Engine; one this script starts, it stops.
docker_socket="${SANDSTREAM_DOCKER_SOCKET:-/var/run/docker.sock}"
docker_was_up=no
docker_answers "$docker_socket" && docker_was_up=yes
export SANDSTREAM_DOCKER_SOCKET
SANDSTREAM_DOCKER_SOCKET="$("$ROOT/scripts/docker.sh")"
stop_docker() {
  if [ "$docker_was_up" = no ]; then
    for pidfile in /run/sandstream-dockerd-*.pid; do
      [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
  fi
}
trap stop_docker EXIT
status=0
log "checking the code's structure: no import cycle between a crate's modules, no source file over 600 lines"
python3 "$ROOT/scripts/module-cycles.py" || status=$?
long="$(find "$ROOT"/crates/*/src "$ROOT/web/src" "$ROOT/sdk/typescript/src" -name '*.rs' -o -name '*.ts' |
  xargs wc -l | awk '$2 != "total" && $1 > 600 {print "  " $2 ": " $1 " lines"}')"
[ -z "$long" ] || { printf 'source files over 600 lines:\n%s\n' "$long" >&2; status=1; }
log "running the Rust tests"
cargo nextest run --workspace --locked --no-fail-fast "$@" || status=$?
log "running the oci backend's tests again on crun"
SANDSTREAM_OCI_RUNTIME=crun cargo nextest run --locked --no-fail-fast -p sandstream-runtime --test oci "$@" || status=$?
# This host is cgroup v1; the same tests run once more (on runc) in a virtual machine
# whose kernel has only cgroup v2.
log "running the oci backend's tests on cgroup v2, in a virtual machine"
oci_tests="$(cargo test --locked --no-run --message-format=json -p sandstream-runtime --test oci 2>/dev/null |
  python3 -c 'import json, sys; print(*[m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")])')"
# The machine is emulated (no nested KVM), about ten times slower than the host, so it
# runs what differs between cgroup versions (limits, OOM, cgroup creation and removal,
# recovery, isolation from the host) and skips the network-policy tests, whose iptables
# and routing code is the same on both and ran on the host above.
"$ROOT/scripts/cgroup2-vm.sh" CI=true SANDSTREAM_STATIC_AGENT="$SANDSTREAM_STATIC_AGENT" \
  SANDSTREAM_CACHE_DIR="$SANDSTREAM_CACHE_DIR" "$oci_tests" \
  --skip egress_follows_the_policy --skip link_local_metadata_is_unreachable_even_when_routed || status=$?
cargo build --locked -p sandstream
"$ROOT/scripts/build-web.sh"
for suite in tests/server sdk/typescript web; do
  log "running the $suite tests"
  (cd "$suite" && npm ci --no-audit --no-fund --loglevel=error && npm test) || status=$?
  if [ "$suite" = sdk/typescript ]; then
    # The SDK promises Node 18 and newer: its suite runs again, on the built package,
    # under the oldest supported release.
    log "running the $suite tests under Node.js 18"
    node18="$("$ROOT/scripts/node18.sh")" && (cd "$suite" && "$node18" scripts/run-tests.mjs) || status=$?
  fi
done
"$ROOT/scripts/clean-host.sh" || status=$?
exit $status
