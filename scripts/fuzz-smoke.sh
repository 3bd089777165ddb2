#!/usr/bin/env bash
# Runs the tributary-mqtt `decode` fuzz target for SECONDS (default 30) and
# exits non-zero if it finds a crash; the crashing input is then saved under
# fuzz/artifacts/decode/ and can be replayed with
#   cargo fuzz run decode fuzz/artifacts/decode/<file>   (from fuzz/)
#
# Usage: scripts/fuzz-smoke.sh [SECONDS]
#
# cargo-fuzz needs unstable compiler flags (sanitizers). A nightly toolchain
# is used when rustup has one; otherwise the stable compiler is allowed
# unstable flags with RUSTC_BOOTSTRAP=1, which works for this crate as well.
set -euo pipefail

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: $0 [SECONDS]  (a positive whole number, default 30)" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found; installing it" >&2
    cargo install cargo-fuzz --locked
fi

toolchain=()
if command -v rustup >/dev/null 2>&1 && rustup toolchain list | grep -q '^nightly'; then
    toolchain=(+nightly)
    echo "fuzzing with the nightly toolchain for ${seconds}s" >&2
else
    export RUSTC_BOOTSTRAP=1
    echo "no nightly toolchain: fuzzing with stable and RUSTC_BOOTSTRAP=1 for ${seconds}s" >&2
fi

cd "$root/fuzz"
# `${toolchain[@]+...}` keeps `set -u` happy with an empty array on old bash.
exec cargo ${toolchain[@]+"${toolchain[@]}"} fuzz run decode -- \
    -max_total_time="$seconds" -print_final_stats=1
