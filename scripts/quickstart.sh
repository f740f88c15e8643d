#!/usr/bin/env bash
# Quick start: build zvfs, pack a small demo tree into an flist with a local chunk store,
# mount it read-only over FUSE (or, without FUSE, unpack it) and check it is identical.
#   usage: scripts/quickstart.sh [DEMO_DIR]     (default: target/quickstart)
#   ZVFS_BIN=path   use this zvfs binary instead of building one
#   ZVFS_NO_MOUNT=1 do not try FUSE; unpack instead
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEMO="$(abspath "${1:-$REPO/target/quickstart}")"
mkdir -p "$DEMO"
DEMO="$(cd "$DEMO" && pwd)"

need file file
need fusermount3 fuse3
need mountpoint util-linux

ZVFS="${ZVFS_BIN:-}"
if [ -n "$ZVFS" ]; then
    ZVFS="$(abspath "$ZVFS")"
else
    say "building zvfs (static release binary; the first build takes several minutes)"
    ZVFS="$(scripts/build-static.sh | tail -n 1)"
fi
[ -x "$ZVFS" ] || die "build did not produce a binary"

say "creating the demo tree in $DEMO/src"
if mountpoint -q "$DEMO/mnt" 2>/dev/null; then
    fusermount3 -u "$DEMO/mnt" 2>/dev/null || umount "$DEMO/mnt"
fi
rm -rf "$DEMO/src" "$DEMO/store" "$DEMO/cache" "$DEMO/out" "$DEMO/mnt" "$DEMO/demo.fl"
mkdir -p "$DEMO/src/docs/notes" "$DEMO/mnt"
printf 'Hello from zvfs!\n' >"$DEMO/src/hello.txt"
printf '# demo\nThis tree was packed into an flist by scripts/quickstart.sh.\n' >"$DEMO/src/docs/README.md"
printf 'nested file\n' >"$DEMO/src/docs/notes/todo.txt"
head -c $((5 * 1024 * 1024 + 12345)) /dev/urandom >"$DEMO/src/big.bin"   # several chunks
: >"$DEMO/src/empty"
ln -s docs/README.md "$DEMO/src/readme-link"
chmod 0755 "$DEMO/src/hello.txt"

say "packing: zvfs pack -m $DEMO/demo.fl -s dir://$DEMO/store $DEMO/src"
"$ZVFS" pack -m "$DEMO/demo.fl" -s "dir://$DEMO/store" "$DEMO/src" \
    || die "zvfs pack failed"
chunks=$(find "$DEMO/store" -type f | wc -l)
say "flist: $DEMO/demo.fl ($(stat -c %s "$DEMO/demo.fl") bytes), $chunks chunk files in $DEMO/store"

verify() { # verify DIR: the tree in DIR equals the source tree
    diff -r --no-dereference "$DEMO/src" "$1" || return 1
    cmp "$DEMO/src/big.bin" "$1/big.bin" || return 1
    [ "$(readlink "$1/readme-link")" = docs/README.md ] || return 1
}

how=""
mounted=0
cleanup() {
    if [ "$mounted" = 1 ] && mountpoint -q "$DEMO/mnt"; then
        fusermount3 -u "$DEMO/mnt" 2>/dev/null || umount "$DEMO/mnt" 2>/dev/null || true
    fi
}
trap cleanup EXIT

if [ "${ZVFS_NO_MOUNT:-0}" = 1 ]; then
    warn "ZVFS_NO_MOUNT=1: unpacking instead of mounting"
elif ! "$ZVFS" mount --help >/dev/null 2>&1; then
    warn "this zvfs has no 'mount' command yet: unpacking instead"
elif [ ! -c /dev/fuse ] && ! { modprobe fuse 2>/dev/null && [ -c /dev/fuse ]; }; then
    warn "FUSE is not available here (/dev/fuse missing): unpacking instead"
else
    say "mounting: zvfs mount -d -m $DEMO/demo.fl -c $DEMO/cache $DEMO/mnt"
    if "$ZVFS" mount -d -m "$DEMO/demo.fl" -c "$DEMO/cache" -l "$DEMO/mount.log" "$DEMO/mnt"; then
        mounted=1
        mountpoint -q "$DEMO/mnt" || die "zvfs mount returned but $DEMO/mnt is not a mountpoint"
        say "comparing the mount with the source (diff -r, cmp)"
        verify "$DEMO/mnt" || die "the mounted tree differs from the source"
        fusermount3 -u "$DEMO/mnt" 2>/dev/null || umount "$DEMO/mnt"
        mounted=0
        how=mount
    else
        warn "zvfs mount failed (see $DEMO/mount.log): unpacking instead"
    fi
fi
if [ -z "$how" ]; then
    say "unpacking: zvfs unpack -m $DEMO/demo.fl -c $DEMO/cache $DEMO/out"
    "$ZVFS" unpack -m "$DEMO/demo.fl" -c "$DEMO/cache" "$DEMO/out" || die "zvfs unpack failed"
    say "comparing the unpacked tree with the source (diff -r, cmp)"
    verify "$DEMO/out" || die "the unpacked tree differs from the source"
    how=unpack
fi

cat <<MSG

Quick start done. What happened:
  - the zvfs binary (static release build): $ZVFS
  - a demo tree was made in                $DEMO/src
    (a few small files, a $(stat -c %s "$DEMO/src/big.bin")-byte file, a symlink, subdirectories)
  - it was packed into the flist           $DEMO/demo.fl
    with its content as $chunks encrypted chunks in the store $DEMO/store
MSG
if [ "$how" = mount ]; then
    cat <<MSG
  - the flist was mounted read-only over FUSE on $DEMO/mnt (chunks cached in
    $DEMO/cache), compared file by file with the source: identical; then unmounted.
MSG
else
    cat <<MSG
  - the flist was unpacked into $DEMO/out and compared with the source: identical.
    (It was not mounted: FUSE or 'zvfs mount' was not available here.)
MSG
fi
cat <<MSG

To mount it yourself:
  $ZVFS mount -d -m $DEMO/demo.fl -c $DEMO/cache $DEMO/mnt
  ls -l $DEMO/mnt
  fusermount3 -u $DEMO/mnt        # or: umount $DEMO/mnt
To look inside without mounting:
  $ZVFS inspect $DEMO/demo.fl
MSG
