#!/usr/bin/env bash
# Run every fuzz target of fuzz/ (cargo-fuzz, libFuzzer) for SECONDS each (default 60):
# installs the nightly toolchain and cargo-fuzz when missing, builds the corpora
# (fuzz/corpus/<target>/: the committed seeds of fuzz/seeds/ plus inputs made from the
# fixtures, by scripts/fuzz-seeds.py; what the fuzzer finds stays there for the next run),
# builds all targets, runs each one at a time (nice'd, -rss_limit_mb=2048, a 10 s limit
# per input so a hang is a finding), and prints per target its executions, exec/s and new
# crashes. Exits non-zero when a target crashed, naming it and its artifact
# (fuzz/artifacts/<target>/; reproduce with `cargo +nightly fuzz run -s none TARGET FILE`).
#   scripts/fuzz.sh [SECONDS] [TARGET...]   (default: all targets)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

secs="${1:-60}"
shift || true
case "$secs" in ''|*[!0-9]*) die "usage: scripts/fuzz.sh [SECONDS] [TARGET...] (SECONDS a whole number)" ;; esac
all=(fl_v2 legacy_flist codec_v2 codec_legacy resp http_response compat_argv oci)
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${all[@]}")

t0=$(date +%s)
command -v rustup >/dev/null || die "rustup not found: install it (https://rustup.rs) to get the nightly toolchain cargo-fuzz needs"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    say "installing the nightly toolchain"
    nice -n 10 rustup toolchain install nightly --profile minimal \
        || die "cannot install the nightly toolchain (rustup toolchain install nightly --profile minimal failed)"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz"
    nice -n 10 cargo install cargo-fuzz --locked \
        || die "cannot install cargo-fuzz (cargo install cargo-fuzz --locked failed)"
fi
need python3 python3

corpus="$REPO/fuzz/corpus"
python3 "$REPO/scripts/fuzz-seeds.py" "$REPO" "$corpus"

say "building ${targets[*]}"
for t in "${targets[@]}"; do
    nice -n 10 cargo +nightly fuzz build -s none "$t" \
        || die "building fuzz target $t failed"
done
say "build took $(( $(date +%s) - t0 ))s"

failed=()
total_runs=0
for t in "${targets[@]}"; do
    artifacts="$REPO/fuzz/artifacts/$t"
    mkdir -p "$artifacts"
    before=$(ls "$artifacts" | wc -l)
    log="$REPO/fuzz/artifacts/$t.log"
    rc=0
    nice -n 10 cargo +nightly fuzz run -s none "$t" "$corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" >"$log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    after=$(ls "$artifacts" | wc -l)
    new=$(( after - before ))
    total_runs=$(( total_runs + ${runs:-0} ))
    printf '%-14s %10s executions %7s exec/s  %d new crash(es)\n' "$t" "${runs:-?}" "${rate:-?}" "$new"
    if [ "$rc" != 0 ] || [ "$new" -gt 0 ]; then
        art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        grep -m1 -E "panicked at|ERROR: libFuzzer|SUMMARY" "$log" >&2 || tail -20 "$log" >&2
        failed+=("$t (artifact: ${art:-none, see $log})")
    fi
done
say "fuzzing took $(( $(date +%s) - t0 ))s in total, $total_runs executions"
if [ "${#failed[@]}" -gt 0 ]; then
    die "fuzz targets crashed: ${failed[*]}"
fi
say "no crash"
