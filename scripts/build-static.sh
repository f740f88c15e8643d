#!/usr/bin/env bash
# Build the static, stripped release binary of zvfs for x86_64 Linux.
# Preferred: x86_64-unknown-linux-musl (musl-gcc for the bundled SQLite). Fallback when
# that fails: a static glibc build (+crt-static on x86_64-unknown-linux-gnu).
# The result is copied to target/static/zvfs; its path is the last line on stdout.
#   ZVFS_STATIC_LIBC=gnu   skip musl and build the static glibc binary directly
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MUSL=x86_64-unknown-linux-musl
GNU=x86_64-unknown-linux-gnu
OUT_DIR="$REPO/target/static"

need file file
need capnp capnproto      # the legacy flist reader's build.rs compiles capnp schemas
need musl-gcc musl-tools

built=""
started=$(date +%s)
if [ "${ZVFS_STATIC_LIBC:-musl}" = gnu ]; then
    warn "ZVFS_STATIC_LIBC=gnu: not trying musl"
elif ! rustup target list --installed 2>/dev/null | grep -qx "$MUSL"; then
    say "adding rust target $MUSL"
    rustup target add "$MUSL" || warn "rustup target add $MUSL failed"
fi
if [ "${ZVFS_STATIC_LIBC:-musl}" != gnu ] && rustup target list --installed 2>/dev/null | grep -qx "$MUSL"; then
    say "cargo build --release --target $MUSL (fat LTO: takes a few minutes)"
    if cargo build --release --locked --target "$MUSL"; then
        built="$REPO/target/$MUSL/release/zvfs"
    else
        warn "the musl build failed"
    fi
fi
if [ -z "$built" ]; then
    warn "##############################################################"
    warn "FALLING BACK to a static GLIBC build ($GNU, +crt-static)."
    warn "(host and user name lookups then need the glibc NSS modules of the running system)"
    warn "##############################################################"
    RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --release --locked --target "$GNU" --target-dir "$REPO/target/static-gnu" \
        || die "the static glibc build failed too"
    built="$REPO/target/static-gnu/$GNU/release/zvfs"
fi
secs=$(( $(date +%s) - started ))

desc="$(file -b "$built")"
case "$desc" in
    *"dynamically linked"*) die "$built is dynamically linked: $desc" ;;
    *"statically linked"*|*"static-pie linked"*) ;;
    *) die "cannot tell that $built is static: $desc" ;;
esac
case "$desc" in
    *"not stripped"*) strip "$built" ;;
esac
mkdir -p "$OUT_DIR"
cp -f "$built" "$OUT_DIR/zvfs.tmp" && mv -f "$OUT_DIR/zvfs.tmp" "$OUT_DIR/zvfs"
"$OUT_DIR/zvfs" --version >/dev/null || die "the built binary does not run"

say "built in ${secs}s: $built"
say "type: $(file -b "$OUT_DIR/zvfs")"
say "size: $(human "$(stat -c %s "$OUT_DIR/zvfs")")"
echo "$OUT_DIR/zvfs"
