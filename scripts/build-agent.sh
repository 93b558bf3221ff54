#!/usr/bin/env bash
# Builds the agent as one static executable, so it runs in any root filesystem: glibc,
# musl, or none at all. Prints its path.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
log "building the static agent for $HOST_TRIPLE"
# crt-static links glibc in; given only for --target builds, so build scripts and proc
# macros stay dynamic. The agent resolves no host names, so static NSS is not needed.
# getrandom uses the raw syscall: a bare rootfs may have no /dev/urandom to fall back on.
env "CARGO_TARGET_$(echo "$HOST_TRIPLE" | tr 'a-z-' 'A-Z_')_RUSTFLAGS=-C target-feature=+crt-static --cfg getrandom_backend=\"linux_raw\"" \
  cargo build --quiet --release --locked --target "$HOST_TRIPLE" -p sandstream-agent --bin sandstream-agent 2> >(grep -v "statically linked applications requires at runtime" >&2)
echo "$STATIC_AGENT"
