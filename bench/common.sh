# Shared by bench/run and bench/scale (sourced, not executed).
# shellcheck shell=bash

say() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; }
die() { say "error: $*"; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# Load cargo when a rustup install did not put it on PATH.
need_cargo() {
    if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs)"
}

# apt-get install, as root or with sudo.
apt_install() {
    if is_root; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    elif command -v sudo >/dev/null 2>&1; then
        sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        die "missing $*: install with 'apt-get install $*' (as root), then rerun"
    fi
}

# Build flotilla (release) and set FLOTILLA to the binary; FLOTILLA_BIN=PATH measures that
# binary instead (e.g. an older build, to compare).
build_flotilla() {
    if [ -n "${FLOTILLA_BIN:-}" ]; then
        FLOTILLA="$(cd "$(dirname "$FLOTILLA_BIN")" && pwd)/$(basename "$FLOTILLA_BIN")"
        [ -x "$FLOTILLA" ] || die "FLOTILLA_BIN=$FLOTILLA_BIN is not an executable"
        say "measuring $FLOTILLA (FLOTILLA_BIN; not rebuilt)"
        return
    fi
    need_cargo
    say "building flotilla (cargo build --release --locked)"
    (cd "$REPO" && cargo build --release --locked --quiet) || die "cargo build --release failed"
    FLOTILLA="$REPO/target/release/flotilla"
    [ -x "$FLOTILLA" ] || die "no binary at $FLOTILLA"
}

# Seconds (float) between two $EPOCHREALTIME readings.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# Median of the numbers given as arguments.
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit } if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# One line describing this machine.
describe_machine() {
    local cpu mem kernel
    cpu="$(awk -F: '/model name/ { sub(/^ +/, "", $2); print $2; exit }' /proc/cpuinfo 2>/dev/null)"
    mem="$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null)"
    kernel="$(uname -sr)"
    printf '%s cores (%s), %s RAM, %s, %s' "$(nproc)" "${cpu:-unknown CPU}" "$mem" "$kernel" \
        "$( (. /etc/os-release 2>/dev/null && printf '%s' "$PRETTY_NAME") || echo 'unknown OS')"
}
