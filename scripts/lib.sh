# Shared helpers for the scripts in this directory (sourced, not run).
# Sets REPO to the repository root and cds there; offers messages and installs.

CALLER_PWD="$PWD"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# abspath P: P made absolute against the directory the script was started from.
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$CALLER_PWD/$1" ;; esac; }
export DEBIAN_FRONTEND=noninteractive

_tag="$(basename "$0" .sh)"
say() { printf '==> %s: %s\n' "$_tag" "$*" >&2; }
warn() { printf '!!! %s: WARNING: %s\n' "$_tag" "$*" >&2; }
die() { printf '!!! %s: ERROR: %s\n' "$_tag" "$*" >&2; exit 1; }
# Any command that fails outside a condition stops the script (set -e); say which one and
# where, so that no step fails silently. (errtrace: functions and subshells inherit it.)
set -E
trap '_err_rc=$?; [ "$BASHPID" != "$$" ] || printf "!!! %s: ERROR: \"%s\" failed with status %s (%s line %s)\n" "$_tag" "$BASH_COMMAND" "$_err_rc" "${BASH_SOURCE[0]##*/}" "$LINENO" >&2' ERR

_apt_updated=0
# apt_install PKG...: install Debian packages (apt-get update once per script run).
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found; install by hand: $*"
    if [ "$(id -u)" != 0 ]; then die "need root to install: $*"; fi
    if [ "$_apt_updated" = 0 ]; then
        say "apt-get update"
        apt-get update -qq >/dev/null || die "apt-get update failed"
        _apt_updated=1
    fi
    say "installing $*"
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null </dev/null \
        || die "apt-get install $* failed"
}

# need CMD PKG: install PKG when CMD is not on PATH.
need() {
    command -v "$1" >/dev/null 2>&1 || apt_install "$2"
    command -v "$1" >/dev/null 2>&1 || die "$1 still missing after installing $2"
}

# need_file FILE PKG: install PKG when FILE does not exist.
need_file() {
    [ -e "$1" ] || apt_install "$2"
    [ -e "$1" ] || die "$1 still missing after installing $2"
}

# human SIZE_IN_BYTES -> "1234567 bytes (1.2 MiB)"
human() { awk -v b="$1" 'BEGIN { printf "%d bytes (%.1f MiB)", b, b / 1048576 }'; }
