#!/bin/sh
# Benchmark: the partial checksum (formats.md section 6) of a 1 GiB file that sits in the
# page cache, timed by `zvfs identity --time N` (open + fstat + five 10,000-byte sampled
# reads + SHA-256, per run). Target: well under 100 us per file.
#
# Usage: scripts/bench-identity.sh [ZVFS_BINARY] ; env N=runs (default 2000),
#        DIR=where to put the 1 GiB file (default /var/tmp). The file is deleted at exit.
set -eu
BIN=${1:-target/release/zvfs}
N=${N:-2000}
DIR=${DIR:-/var/tmp}
F=$(mktemp "$DIR/zvfs-bench-identity.XXXXXX")
trap 'rm -f "$F"' EXIT INT TERM HUP
head -c 1073741824 /dev/urandom > "$F"
cat "$F" > /dev/null # warm the page cache
"$BIN" identity --partial "$F"
"$BIN" identity --time "$N" "$F"
