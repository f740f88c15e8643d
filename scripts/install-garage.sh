#!/usr/bin/env bash
# Install Garage (the S3 server the S3 store tests run against) when it is missing.
# Builds it from crates.io with `cargo install` (no prebuilt download), unoptimised:
# about 3 minutes on a 2-core machine (192 s measured, against 631 s at opt-level 1 and
# far more with Garage's own release profile), once per machine. The tests find it on
# PATH, in ~/.cargo/bin, or at $GARAGE_BIN.
#   GARAGE_VERSION   version to install (default below; the tests use its v2 CLI/config)
set -euo pipefail
version="${GARAGE_VERSION:-2.5.0}"
if [ -n "${GARAGE_BIN:-}" ] && [ -x "$GARAGE_BIN" ]; then exit 0; fi
if command -v garage >/dev/null 2>&1 || [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/garage" ]; then
    exit 0
fi
echo "==> install-garage: cargo install garage $version (takes a while)" >&2
t0=$(date +%s)
# A test server needs no peak speed: the S3 tests pass against an unoptimised build
# (in about 14 s), which compiles in a fraction of the time. No debug info: it only
# makes the build slower and the binary larger.
CARGO_PROFILE_DEV_DEBUG=false \
CARGO_PROFILE_DEV_INCREMENTAL=false \
    cargo install garage --version "$version" --locked --debug \
    --no-default-features --features sqlite,bundled-libs
echo "==> install-garage: took $(( $(date +%s) - t0 ))s" >&2
