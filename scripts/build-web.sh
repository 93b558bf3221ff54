#!/usr/bin/env bash
# Builds the web playground into web/dist, which `sandstream up` serves at /.
source "$(dirname "$0")/lib.sh"
cd "$ROOT/web"
log "building the web playground"
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
