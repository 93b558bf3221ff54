# Shared helpers for scripts/*.sh. Sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST_TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
# The static agent: built for the host triple with the C runtime linked in.
# Where cargo puts what it builds: CARGO_TARGET_DIR when set, as cargo does.
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
STATIC_AGENT="$TARGET_DIR/$HOST_TRIPLE/release/sandstream-agent"
# Each line says when, so a slow step shows in CI's log.
log() { printf '==> %s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
# Whether a Docker Engine answers on the socket $1.
docker_answers() { curl -sf --max-time 2 --unix-socket "$1" http://docker/_ping >/dev/null 2>&1; }
# Waits up to 30 s for a Docker Engine to answer on the socket $1.
wait_for_docker() {
  local _
  for _ in $(seq 1 300); do
    docker_answers "$1" && return 0
    sleep 0.1
  done
  return 1
}
