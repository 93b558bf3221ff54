#!/usr/bin/env bash
# Starts Sandstream on this machine: server, one local runner and the web page on
# http://127.0.0.1:3000 (state in .sandstream/). Installs and builds what it needs first;
# the first start also builds the default sandbox template (a few minutes). Extra
# arguments go to `sandstream up` (see `sandstream up --help`).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
agent="$("$ROOT/scripts/build-agent.sh")"
"$ROOT/scripts/build-web.sh"
log "building sandstream (release)"
cargo build --quiet --release --locked -p sandstream
exec "$TARGET_DIR/release/sandstream" up \
  --data-dir "${SANDSTREAM_DATA_DIR:-$ROOT/.sandstream}" \
  --web-dir "$ROOT/web/dist" \
  --agent-binary "$agent" "$@"
