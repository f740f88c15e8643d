#!/usr/bin/env bash
# Run the whole test suite: installs what the tests need, makes sure FUSE is usable,
# runs `cargo test` on the unit tests and the one integration test binary (debug, host
# target), then the script tests (the VM boot test of the initramfs, the quick start),
# then the S3 tests once Garage (built in the background meanwhile) is there. Exits
# non-zero when anything fails. After the cargo tests, every fuzz target of fuzz/ runs
# for 30 s (scripts/fuzz.sh 30: nightly and cargo-fuzz installed when missing, about 6
# minutes on 2 cores with the build); a crash fails the run, naming the target.
#   ZVFS_TEST_THREADS=N     test threads per test binary (default: cargo's default)
#   ZVFS_SKIP_BOOT_TEST=1   skip the script tests: boot-test.sh and quickstart.sh (CI never
#                           sets it)
#   ZVFS_SKIP_FUZZ=1        skip the fuzz step, for local runs (CI never sets it)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

t0=$(date +%s)
# Test dependencies: command -> Debian package.
need fusermount3 fuse3
need redis-server redis-server
need runc runc
need musl-gcc musl-tools
need capnp capnproto
need getfattr attr
need python3 python3
need fuser psmisc
need groff groff-base
need file file
# The image sources' tests (src/image/tests.rs) and tests/import.rs: a registry, image
# copies, OCI layouts and their reference unpack, htpasswd files for registry auth, openssl
# to sign the JWTs of the token-auth test.
need docker-registry docker-registry
need umoci umoci
need skopeo skopeo
need htpasswd apache2-utils
need gzip gzip
need ip iproute2
need openssl openssl
case "$(file -bL /bin/busybox 2>/dev/null || true)" in
    *"statically linked"*|*"static-pie linked"*) ;;
    *) apt_install busybox-static ;;
esac
# Garage, the S3 server of tests/s3.rs (module s3 of the test binary): built from
# crates.io once per machine when missing (about 11 minutes on 2 cores alone, at opt-level
# 1; later runs find it in ~/.cargo/bin). It builds in the background at the lowest priority, on whatever CPU
# the rest leaves idle; the S3 tests run last, once it is there.
mkdir -p "$REPO/target"
garage_log="$REPO/target/install-garage.log"
nice -n 19 "$REPO/scripts/install-garage.sh" >"$garage_log" 2>&1 &
garage_pid=$!

# FUSE: the kernel module and the device node.
if [ ! -c /dev/fuse ]; then
    say "/dev/fuse is missing: loading the fuse module"
    modprobe fuse 2>/dev/null || true
    [ -c /dev/fuse ] || mknod -m 0666 /dev/fuse c 10 229 || true
    [ -c /dev/fuse ] || die "/dev/fuse is not available; FUSE tests cannot run"
fi
say "setup took $(( $(date +%s) - t0 ))s"

failed=()
t1=$(date +%s)
threads=()
if [ -n "${ZVFS_TEST_THREADS:-}" ]; then threads=(--test-threads="$ZVFS_TEST_THREADS"); fi
# The unit tests, then the one integration test binary (tests/main.rs) but its S3 module
# (which waits for Garage, below); two runs, since `--skip s3::` would also skip the unit
# tests of store::s3.
say "cargo test --no-fail-fast --lib --bins ${threads[*]}"
if ! cargo test --locked --no-fail-fast --lib --bins -- "${threads[@]}"; then
    failed+=("cargo test --lib --bins")
fi
say "cargo test --no-fail-fast --test main -- --skip s3:: ${threads[*]}"
if ! cargo test --locked --no-fail-fast --test main -- --skip s3:: "${threads[@]}"; then
    failed+=("cargo test --test main")
fi
say "cargo test took $(( $(date +%s) - t1 ))s"

if [ "${ZVFS_SKIP_FUZZ:-0}" = 1 ]; then
    warn "fuzz step SKIPPED because ZVFS_SKIP_FUZZ=1"
else
    tf=$(date +%s)
    fuzz_log="$REPO/target/fuzz.log"
    if scripts/fuzz.sh 30 2>&1 | tee "$fuzz_log"; then
        say "fuzzing took $(( $(date +%s) - tf ))s"
    else
        crashed=$(sed -n 's/.*fuzz targets crashed: //p' "$fuzz_log" | tail -1)
        failed+=("scripts/fuzz.sh 30: ${crashed:-see $fuzz_log}")
    fi
fi

if [ "${ZVFS_SKIP_BOOT_TEST:-0}" = 1 ]; then
    warn "script tests (boot test, quick start) SKIPPED because ZVFS_SKIP_BOOT_TEST=1"
else
    t2=$(date +%s)
    if ! scripts/boot-test.sh; then failed+=("scripts/boot-test.sh"); fi
    say "boot test (static build, kernel, initramfs, two VM boots) took $(( $(date +%s) - t2 ))s"
    t3=$(date +%s)
    # The quick start runs on the static binary the boot test just built (one release
    # build instead of two); it builds its own when that is missing.
    if [ -x "$REPO/target/static/zvfs" ]; then export ZVFS_BIN="$REPO/target/static/zvfs"; fi
    if ! scripts/quickstart.sh "$REPO/target/quickstart-test"; then failed+=("scripts/quickstart.sh"); fi
    say "quick start took $(( $(date +%s) - t3 ))s"
fi

t4=$(date +%s)
say "waiting for the Garage build (log: $garage_log)"
if wait "$garage_pid"; then
    say "Garage ready after $(( $(date +%s) - t4 ))s of waiting"
    if ! cargo test --locked --no-fail-fast --test main -- s3:: "${threads[@]}"; then
        failed+=("cargo test --test main s3::")
    fi
    say "S3 tests took $(( $(date +%s) - t4 ))s with the wait"
else
    cat "$garage_log" >&2
    failed+=("scripts/install-garage.sh")
fi

say "total $(( $(date +%s) - t0 ))s"
if [ "${#failed[@]}" -gt 0 ]; then
    die "FAILED: ${failed[*]}"
fi
say "all tests passed"
