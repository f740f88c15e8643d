#!/bin/sh
# Read throughput and memory of `zvfs mount` (run as root, release build):
#   cold            chunks fetched from a dir store, decoded, verified, cached
#   cache-warm      chunks in the cache directory, page cache dropped
#   page-cache-warm served by the kernel's page cache (FOPEN_KEEP_CACHE)
# and the daemon's peak RSS (VmHWM) after 8 concurrent cold readers.
# Usage: scripts/mount-figures.sh [SIZE_MIB]   (ZVFS=path/to/zvfs to override)
set -eu
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-200}
ZVFS=${ZVFS:-target/release/zvfs}
[ -x "$ZVFS" ] || cargo build --release
W=$(mktemp -d /tmp/zvfs-figures.XXXXXX)
MNT=$W/mnt
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    umount -l "$MNT" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT INT TERM
mkdir -p "$W/src" "$MNT" "$W/cache"
head -c "$((SIZE_MIB * 1048576))" /dev/urandom >"$W/src/random.bin"

# The flist: `zvfs pack` when it exists, else the test helper that writes one.
if ! "$ZVFS" pack -m "$W/f.fl" -s "dir://$W/store" "$W/src" >/dev/null 2>&1; then
    ZVFS_FIG_SRC=$W/src/random.bin ZVFS_FIG_FL=$W/f.fl ZVFS_FIG_STORE=$W/store \
        cargo test -q --test mount -- --ignored make_figures_flist >/dev/null 2>&1
fi

mount_it() {
    "$ZVFS" mount -d -m "$W/f.fl" -c "$W/cache" -l "$W/log" "$@" "$MNT"
    PID=$(awk -v m="$MNT" '$5 == m { for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 2); exit } }' /proc/self/mountinfo)
}

# MB/s of reading FILE once (dd, 1 MiB blocks).
rate() {
    start=$(date +%s.%N)
    dd if="$1" of=/dev/null bs=1M 2>/dev/null
    end=$(date +%s.%N)
    echo "$SIZE_MIB $start $end" | awk '{ printf "%.0f", $1 * 1.048576 / ($3 - $2) }'
}

mount_it
sync
echo 3 >/proc/sys/vm/drop_caches
cold=$(rate "$MNT/random.bin")
echo 3 >/proc/sys/vm/drop_caches
warm=$(rate "$MNT/random.bin")
pc=$(rate "$MNT/random.bin")
hwm1=$(awk '/VmHWM/ { print $2 }' "/proc/$PID/status")
kill "$PID"
while kill -0 "$PID" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$PID/status" 2>/dev/null; do sleep 0.1; done

# 8 concurrent cold readers, each from its own eighth of the file.
rm -rf "$W/cache"
mount_it
echo 3 >/proc/sys/vm/drop_caches
part=$((SIZE_MIB / 8))
i=0
while [ $i -lt 8 ]; do
    dd if="$MNT/random.bin" of=/dev/null bs=1M skip=$((i * part)) count=$part 2>/dev/null &
    i=$((i + 1))
done
wait
hwm8=$(awk '/VmHWM/ { print $2 }' "/proc/$PID/status")

echo "file                    ${SIZE_MIB} MiB of random bytes"
echo "cold read               $cold MB/s"
echo "cache-warm read         $warm MB/s (page cache dropped)"
echo "page-cache-warm read    $pc MB/s"
echo "daemon peak RSS         $((hwm1 / 1024)) MiB (one sequential reader)"
echo "daemon peak RSS         $((hwm8 / 1024)) MiB (8 concurrent cold readers)"
