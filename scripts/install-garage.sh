#!/usr/bin/env bash
# Install Garage (the S3 server the S3 store tests run against) when it is missing.
# Builds it from crates.io with `cargo install` (no prebuilt download): about 11
# minutes on a 2-core machine (631 s measured), once per machine. The tests find it on PATH, in
# ~/.cargo/bin, or at $GARAGE_BIN.
#   GARAGE_VERSION   version to install (default below; the tests use its v2 CLI/config)
set -euo pipefail
version="${GARAGE_VERSION:-2.5.0}"
if [ -n "${GARAGE_BIN:-}" ] && [ -x "$GARAGE_BIN" ]; then exit 0; fi
if command -v garage >/dev/null 2>&1 || [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/garage" ]; then
    exit 0
fi
echo "==> install-garage: cargo install garage $version (takes a while)" >&2
t0=$(date +%s)
# A test server needs no peak speed: a quick optimisation level without link-time
# optimisation builds it in a fraction of the time of Garage's own release profile.
# (Unoptimised, it builds in 192 s, but its nodes start so slowly that the three-node
# S3 test failed 2 runs in 7: a node not yet listening, the mesh not yet complete.)
CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
CARGO_PROFILE_RELEASE_LTO=false \
CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
CARGO_PROFILE_RELEASE_DEBUG=false \
CARGO_PROFILE_RELEASE_INCREMENTAL=false \
    cargo install garage --version "$version" --locked \
    --no-default-features --features sqlite,bundled-libs
echo "==> install-garage: took $(( $(date +%s) - t0 ))s" >&2
