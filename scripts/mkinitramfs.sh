#!/usr/bin/env bash
# Build a gzip-compressed cpio initramfs whose /init mounts an flist with the static zvfs
# (see initramfs/init for the kernel command-line parameters).
#   usage: scripts/mkinitramfs.sh [KERNEL_VERSION] [OUT]
#   KERNEL_VERSION: a directory of /lib/modules (default: the newest one there)
#   OUT:            default target/initramfs/zvfs-initramfs-KERNEL_VERSION.cpio.gz
#   ZVFS_BIN=path   use this static zvfs instead of building one (scripts/build-static.sh)
# Contents: busybox (static, Debian's busybox-static), /bin/zvfs, the kernel modules for
# fuse, overlay, virtio disks and ext4 (with their dependencies, in load order), /init.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need cpio cpio
need gzip gzip
need modprobe kmod
need file file
case "$(file -bL /bin/busybox 2>/dev/null || true)" in
    *"statically linked"*|*"static-pie linked"*) ;;
    *) apt_install busybox-static ;;
esac

KVER="${1:-}"
if [ -z "$KVER" ]; then
    KVER="$( (ls -1 /lib/modules 2>/dev/null || true) | sort -V | tail -n 1)"
    [ -n "$KVER" ] || die "no kernel modules in /lib/modules: install linux-image-amd64 or give KERNEL_VERSION"
fi
MODDIR="/lib/modules/$KVER"
[ -f "$MODDIR/modules.dep" ] || die "$MODDIR/modules.dep not found (is the kernel $KVER installed?)"
OUT="$(abspath "${2:-$REPO/target/initramfs/zvfs-initramfs-$KVER.cpio.gz}")"
mkdir -p "$(dirname "$OUT")"
OUT="$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")"

ZVFS_BIN="${ZVFS_BIN:-}"
if [ -n "$ZVFS_BIN" ]; then
    ZVFS_BIN="$(abspath "$ZVFS_BIN")"
else
    ZVFS_BIN="$(scripts/build-static.sh | tail -n 1)"
fi
case "$(file -bL "$ZVFS_BIN")" in
    *"statically linked"*|*"static-pie linked"*) ;;
    *) die "$ZVFS_BIN is not a static binary" ;;
esac

# Modules zvfs needs at boot; dependencies (and soft dependencies such as crc32c for
# ext4) come from modules.dep via `modprobe --show-depends`.
MODULES=(fuse overlay virtio_pci virtio_blk ext4)
# Optional ones, copied when the kernel has them. /init reports any module that fails to
# load (crc32c-intel needs SSE4.2, absent from QEMU's default TCG CPU) and goes on.
OPTIONAL_MODULES=(crc32c_generic crc32c_intel)

STAGE="$(mktemp -d "${TMPDIR:-/tmp}/zvfs-initramfs.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{bin,dev,proc,sys,run,tmp,data,etc,mnt,root,lib/modules}
chmod 1777 "$STAGE/tmp"
cp /bin/busybox "$STAGE/bin/busybox"
cp "$ZVFS_BIN" "$STAGE/bin/zvfs"
install -m 0755 initramfs/init "$STAGE/init"
# The kernel opens /dev/console before /init runs (devtmpfs is mounted later).
mknod -m 0600 "$STAGE/dev/console" c 5 1 || die "mknod /dev/console failed (run as root)"
mknod -m 0666 "$STAGE/dev/null" c 1 3

# add_module NAME OPTIONAL: copy NAME and its dependencies; append them to the load order.
: >"$STAGE/etc/modules.order"
add_module() {
    local name="$1" optional="$2" lines line path base dest
    if ! lines="$(modprobe -S "$KVER" --show-depends "$name" 2>/dev/null)"; then
        [ "$optional" = 1 ] && { say "optional module $name not found: skipped"; return 0; }
        die "module $name not found for kernel $KVER"
    fi
    while IFS= read -r line; do
        case "$line" in
            builtin\ *) continue ;;
            insmod\ *) path="$(echo "$line" | awk '{print $2}')" ;;
            *) continue ;;
        esac
        base="$(basename "$path")"
        dest="lib/modules/${base%%.ko*}.ko"
        if grep -qx "$dest" "$STAGE/etc/modules.order"; then continue; fi
        case "$path" in
            *.ko) cp "$path" "$STAGE/$dest" ;;
            *.ko.xz) need xz xz-utils; xz -dc "$path" >"$STAGE/$dest" ;;
            *.ko.zst) need zstd zstd; zstd -qdc "$path" >"$STAGE/$dest" ;;
            *.ko.gz) gzip -dc "$path" >"$STAGE/$dest" ;;
            *) die "unknown module file type: $path" ;;
        esac
        echo "$dest" >>"$STAGE/etc/modules.order"
    done <<<"$lines"
}
for m in "${MODULES[@]}"; do add_module "$m" 0; done
for m in "${OPTIONAL_MODULES[@]}"; do add_module "$m" 1; done
echo "$KVER" >"$STAGE/etc/kernel-version"

(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) \
    | gzip -9 >"$OUT.tmp"
mv -f "$OUT.tmp" "$OUT"
say "modules ($(wc -l <"$STAGE/etc/modules.order")): $(sed 's|.*/||; s|\.ko$||' "$STAGE/etc/modules.order" | tr '\n' ' ')"
say "zvfs: $(human "$(stat -c %s "$STAGE/bin/zvfs")"), busybox: $(human "$(stat -c %s "$STAGE/bin/busybox")")"
say "initramfs for kernel $KVER: $(human "$(stat -c %s "$OUT")")"
echo "$OUT"
