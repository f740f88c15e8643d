#!/bin/sh
# The zvfs benchmark, the one entry point: scripts/bench.sh [SUITE...]; `--help` lists the
# suites (all, the default; quick; bigdir; identity; compare; import; wan: slow-link cold starts
# through scripts/wanproxy.py; restart: reads across worker kills). Each figure is measured
# against its target and the native equivalent in the same run, with the machine it ran on;
# `compare` runs the main figures of ZVFS_BASELINE=old-binary and the new binary in turns.
# Run as root. Knobs (see scripts/bench.py): BENCH_QUICK=1 (smaller, a few minutes),
# BENCH_SIZE=MiB (tree size, default 1024), BENCH_SRC=/path (use a directory as the tree),
# BENCH_DIR=dir (work area, default /var/tmp), BENCH_ROUNDS=N (compare, default 3),
# ZVFS=binary (default: build and use target/release/zvfs).
set -eu
cd "$(dirname "$0")/.."
case " $* " in
*" -h "* | *" --help "* | *" help "*) exec python3 scripts/bench.py --help ;;
esac
if [ -z "${ZVFS:-}" ]; then
    cargo build --release
    ZVFS=target/release/zvfs
fi
export ZVFS
exec python3 scripts/bench.py "$@"
