#!/usr/bin/env bash
# Starts what Sandstream has today: the agent, on 127.0.0.1:50052, with a token kept in
# .sandstream/token (created on first start) and its spool in .sandstream/spool.
# `sandstream up` (server, runner and web page) replaces this once they exist.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
mkdir -p .sandstream
if [ ! -s .sandstream/token ]; then
  (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > .sandstream/token)
fi
log "building sandstream (release)"
cargo build --quiet --release --locked -p sandstream
log "agent token: $(cat .sandstream/token)  (send it as 'authorization: Bearer <token>')"
exec "$ROOT/target/release/sandstream" agent \
  --listen "${SANDSTREAM_AGENT_LISTEN:-127.0.0.1:50052}" \
  --token-file .sandstream/token \
  --spool-dir .sandstream/spool \
  --workdir "$ROOT" "$@"
