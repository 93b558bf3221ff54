# Shared helpers for scripts/*.sh. Sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST_TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
# The static agent: built for the host triple with the C runtime linked in.
STATIC_AGENT="$ROOT/target/$HOST_TRIPLE/release/sandstream-agent"
log() { printf '==> %s\n' "$*" >&2; }
