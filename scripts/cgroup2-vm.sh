#!/usr/bin/env bash
# Runs a command in a virtual machine whose kernel mounts only cgroup v2, so that code
# meant for cgroup v2 hosts is tested on a host that is not one (this CI machine is
# cgroup v1 with a hybrid v2 mount, and a running host cannot be switched).
#
#   scripts/cgroup2-vm.sh [VAR=value ...] COMMAND [ARGS ...]
#
# The guest runs Debian's own kernel (downloaded from the host's apt sources, cached in
# $SANDSTREAM_CACHE_DIR/vm) with `cgroup_no_v1=all`. Its root filesystem is the host's,
# shared read-only over virtio-9p, with a tmpfs overlay on top so the guest can write;
# nothing the guest writes reaches the host. The guest has no network device: only its
# own loopback and the namespaces and links the tests make. COMMAND runs as root from the
# checkout with the given variables; the script exits with its status.
source "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || { echo "scripts/cgroup2-vm.sh: run as root" >&2; exit 1; }
[ $# -gt 0 ] || { echo "usage: scripts/cgroup2-vm.sh [VAR=value ...] COMMAND [ARGS ...]" >&2; exit 2; }
for tool in qemu-system-x86_64 busybox depmod cpio; do
  command -v "$tool" >/dev/null || { echo "scripts/cgroup2-vm.sh: $tool is missing; run scripts/setup.sh" >&2; exit 1; }
done

cache="${SANDSTREAM_CACHE_DIR:-/var/cache/sandstream}/vm"
mkdir -p "$cache"

# The kernel: whatever linux-image-amd64 points at in the host's apt sources, unpacked
# (not installed: the host's boot setup is left alone).
if [ ! -f "$cache/kernel/ready" ]; then
  log "fetching Debian's kernel for the cgroup v2 machine"
  image="$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)"
  [ -n "$image" ] || { apt-get update -qq; image="$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)"; }
  [ -n "$image" ] || { echo "scripts/cgroup2-vm.sh: apt knows no linux-image-amd64" >&2; exit 1; }
  rm -rf "$cache/kernel" "$cache/download" && mkdir -p "$cache/download"
  (cd "$cache/download" && chown _apt . 2>/dev/null; apt-get download -qq "$image")
  dpkg-deb -x "$cache"/download/*.deb "$cache/kernel"
  rm -rf "$cache/download"
  version="$(ls "$cache/kernel/lib/modules")"
  depmod -b "$cache/kernel" "$version"
  echo "$version" > "$cache/kernel/ready"
fi
version="$(cat "$cache/kernel/ready")"
modules="$cache/kernel/lib/modules/$version"

# The initramfs: busybox, the modules that reach the host's filesystem, and /init.
work="$(mktemp -d /tmp/sandstream-vm.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/initrd/bin" "$work/initrd/mod"
cp "$(command -v busybox)" "$work/initrd/bin/busybox"
# Each module needed to mount the host's root, after the modules it depends on.
needed=(virtio_pci 9pnet_virtio 9p overlay)
: > "$work/initrd/mod/order"
add_module() {
  local path deps dep
  path="$(grep -E "(^|/)$1\.ko(\.[a-z]+)?:" "$modules/modules.dep" | head -n1 | cut -d: -f1)"
  [ -n "$path" ] || { echo "scripts/cgroup2-vm.sh: kernel $version has no module $1" >&2; exit 1; }
  grep -qx "$(basename "$path")" "$work/initrd/mod/order" && return 0
  deps="$(grep -E "^$path:" "$modules/modules.dep" | cut -d: -f2)"
  for dep in $deps; do add_module "$(basename "$dep" | sed 's/\.ko.*//')"; done
  cp "$modules/$path" "$work/initrd/mod/"
  basename "$path" >> "$work/initrd/mod/order"
}
for m in "${needed[@]}"; do add_module "$m"; done

# What the guest runs: the variables and the command, quoted for the guest's bash.
{
  printf 'cd %q\n' "$ROOT"
  printf 'export PATH=%q HOME=/root\n' "$PATH"
  while [ $# -gt 0 ] && [[ "$1" == [A-Za-z_]*=* ]]; do printf 'export %q\n' "$1"; shift; done
  printf '%q ' "$@"
  printf '\n'
} > "$work/initrd/command"

cat > "$work/initrd/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in \$(cat /mod/order); do insmod /mod/\$m || echo "sandstream-vm: insmod \$m failed"; done
mkdir -p /host /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576,ro,cache=loose hostroot /host
mount -t tmpfs -o mode=0755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /newroot
mkdir -p /newroot/lib/modules /newroot/.sandstream-vm
ln -sfn $modules /newroot/lib/modules/$version
cp /command /stage2 /newroot/.sandstream-vm/
umount /proc /sys /dev
exec switch_root /newroot /bin/bash /.sandstream-vm/stage2
EOF
cat > "$work/initrd/stage2" <<'EOF'
# Inside the guest, on the host's root with a tmpfs overlay.
set -u
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# A fresh /run, as after a boot: none of the host's runtime state or locks.
mount -t tmpfs -o mode=0755 tmpfs /run
# Scratch space for the command (TMPDIR): a tmpfs, since a sandbox's overlay cannot take
# its upper layer from the guest's own overlay root. Not mounted on /tmp, which would
# hide a checkout that lives there.
mkdir -p /.sandstream-vm/tmp
mount -t tmpfs -o mode=1777 tmpfs /.sandstream-vm/tmp
export TMPDIR=/.sandstream-vm/tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# Each sandbox's disk is an ext4 image on a loop device (crates/sandstream-runtime/src/disk.rs);
# both are modules in Debian's kernel, and nothing loads them in this bare guest.
modprobe -a loop ext4 || echo "sandstream-vm: modprobe loop ext4 failed"
ip link set lo up
# A default route into a dummy link (which drops everything), so the host has an
# address of its own as a networked machine does; no packet leaves the guest.
ip link add uplink0 type dummy
ip addr add 192.0.2.2/24 dev uplink0
ip link set uplink0 up
ip route add default via 192.0.2.1
hostname sandstream-cgroup2-vm
echo "sandstream-vm: kernel $(uname -r), cgroup controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
bash /.sandstream-vm/command
echo "sandstream-vm: exit $?"
sync
echo o > /proc/sysrq-trigger
sleep 10
EOF
chmod +x "$work/initrd/init"
(cd "$work/initrd" && find . | cpio -o -H newc --quiet | gzip -1 > "$work/initrd.gz")

# Emulated by default: nested KVM is not promised on CI machines, and on this kind of
# machine (a KVM guest itself) a nested guest hangs right after the kernel decompresses.
# SANDSTREAM_VM_ACCEL=kvm uses KVM where it works.
accel=(-accel tcg,thread=multi -cpu max)
[ "${SANDSTREAM_VM_ACCEL:-tcg}" = kvm ] && accel=(-accel kvm -cpu host)
# 4 GiB for the guest's tmpfs writes and its sandboxes. A guest that hangs is stopped
# after SANDSTREAM_VM_TIMEOUT seconds (20 min by default; the tests take about 8 under
# emulation), and booted once more: an emulated guest on a busy host has been seen to
# stall in a soft lockup that never ends. A guest that reported a status is never run
# again, whatever the status.
status=""
for attempt in 1 2; do
  log "booting the cgroup v2 machine (kernel $version), attempt $attempt"
  timeout --foreground "${SANDSTREAM_VM_TIMEOUT:-1200}" \
    qemu-system-x86_64 "${accel[@]}" -smp "$(nproc)" -m 4096 -nodefaults -no-reboot \
    -display none -serial stdio \
    -kernel "$cache/kernel/boot/vmlinuz-$version" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 cgroup_no_v1=all panic=-1 ${SANDSTREAM_VM_KERNEL_ARGS:-quiet loglevel=3}" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap \
    | tee "$work/console.log" || true
  status="$(sed -n 's/^sandstream-vm: exit \([0-9]*\).*/\1/p' "$work/console.log" | tail -n1)"
  [ -n "$status" ] && break
  echo "scripts/cgroup2-vm.sh: the machine stopped (or was stopped after ${SANDSTREAM_VM_TIMEOUT:-1200} s) without reporting an exit status" >&2
done
[ -n "$status" ] || exit 1
exit "$status"
