#!/usr/bin/env bash
# Installs the Debian packages Sandstream and its tests need. Idempotent: does nothing
# when they are all present. Package sources come from the machine's own apt config.
source "$(dirname "$0")/lib.sh"

PACKAGES=(
  busybox-static   # a libc-free root filesystem for the static-agent and runtime tests
  python3          # test programs
  runc             # the default OCI runtime
  crun             # another OCI runtime; the oci backend's tests run on both
  iptables         # host firewall for sandbox links
  iproute2         # the tests' own network namespaces and links (the runtime uses netlink)
  curl             # an HTTP/2 client for the port-publishing test
  mmdebstrap       # builds the default sandbox template from the host's apt sources
  chromium         # the web playground's browser tests (driven by playwright-core)
  docker.io        # the `docker` backend (scripts/docker.sh starts dockerd)
  qemu-system-x86  # the cgroup v2 virtual machine the oci tests also run in (scripts/cgroup2-vm.sh)
  kmod             # depmod for that machine's kernel, modprobe inside it
  cpio             # its initramfs
  gcc              # links Rust binaries; builds the runtime tests' static hostile program
  libc6-dev        # with gcc -static
  e2fsprogs        # mkfs.ext4: each oci sandbox's disk is an ext4 image of its own (crates/sandstream-runtime/src/disk.rs)
  btrfs-progs      # mkfs.btrfs: scripts/docker.sh's data root, whose storage driver limits each sandbox's disk
  openssh-client   # ssh, scp and sftp: the agent's SSH server is tested with the stock clients
  openssh-sftp-server # sftp-server, which the agent runs for the sftp subsystem (in the tests, the host's)
  sshpass          # gives ssh a password in the SSH tests
)
# Node runs the SDK, the web build and the JavaScript test suites; any Node >= 18 works.
command -v node >/dev/null || PACKAGES+=(nodejs npm)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "scripts/setup.sh: need root to install: ${missing[*]}" >&2; exit 1; }
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo-nextest >/dev/null || { log "installing cargo-nextest"; cargo install --locked cargo-nextest; }
