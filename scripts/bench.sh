#!/bin/sh
# The zvfs benchmark (issue 9): pack, cold / chunk-cache-warm / page-cache-warm reads,
# stat walk, first listing of a big directory, mount-ready latency, daemon peak RSS,
# store bytes per byte read, partial checksum; each against its target and the native
# equivalent measured in the same run, with the machine it ran on.
# Run as root. Knobs (see scripts/bench.py): BENCH_QUICK=1 (smaller, a few minutes),
# BENCH_SIZE=MiB (tree size, default 1024), BENCH_SRC=/path (use a directory as the tree),
# BENCH_DIR=dir (work area, default /var/tmp), ZVFS=binary (default target/release/zvfs).
# `scripts/bench.sh bigdir` runs only the big-directory listings (ls -l of 200,000 entries,
# ls -f / find -ls of 1,000,000, daemon peak RSS; BENCH_BIGDIR_DATA=dir keeps the corpora).
set -eu
cd "$(dirname "$0")/.."
if [ -z "${ZVFS:-}" ]; then
    cargo build --release
    ZVFS=target/release/zvfs
fi
export ZVFS
exec python3 scripts/bench.py "$@"
