#!/usr/bin/env bash
# Runs each fuzz target — `decode` (the MQTT packet decoder) and
# `connection` (a broker connection's state machine fed arbitrary bytes after
# CONNECT) — for SECONDS each (default 30) and exits non-zero if one finds a
# crash, a hang or unbounded memory; the input is then saved under
# fuzz/artifacts/TARGET/ and can be replayed with
#   cargo fuzz run TARGET fuzz/artifacts/TARGET/<file>   (from fuzz/)
#
# Usage: scripts/fuzz-smoke.sh [SECONDS] [TARGET...]
#
# The smoke run builds without optimizations (`cargo fuzz run --dev`): that
# build takes about 6 minutes on 2 cores against about 15 for cargo-fuzz's
# default optimized one, and a smoke run's job is to show the targets build
# and survive their first inputs. Longer runs that search in earnest want the
# optimized build (tens of times more inputs per second for `connection`):
#   FUZZ_PROFILE=release scripts/fuzz-smoke.sh 600
#
# cargo-fuzz needs unstable compiler flags (sanitizers). A nightly toolchain
# is used when rustup has one; otherwise the stable compiler is allowed
# unstable flags with RUSTC_BOOTSTRAP=1, which works for this crate as well.
set -euo pipefail

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: $0 [SECONDS] [TARGET...]  (SECONDS a positive whole number, default 30)" >&2
    exit 2
fi
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(decode connection)
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found; installing it" >&2
    cargo install cargo-fuzz --locked
fi

case "${FUZZ_PROFILE:-dev}" in
    dev) profile=(--dev) ;;
    release) profile=(--release) ;;
    *)
        echo "FUZZ_PROFILE must be dev or release, not '${FUZZ_PROFILE}'" >&2
        exit 2
        ;;
esac

toolchain=()
if command -v rustup >/dev/null 2>&1 && rustup toolchain list | grep -q '^nightly'; then
    toolchain=(+nightly)
    echo "fuzzing with the nightly toolchain" >&2
else
    export RUSTC_BOOTSTRAP=1
    echo "no nightly toolchain: fuzzing with stable and RUSTC_BOOTSTRAP=1" >&2
fi

cd "$root/fuzz"
for target in "${targets[@]}"; do
    echo "== fuzz target $target for ${seconds}s" >&2
    # `${toolchain[@]+...}` keeps `set -u` happy with an empty array on old bash.
    cargo ${toolchain[@]+"${toolchain[@]}"} fuzz run "${profile[@]}" "$target" -- \
        -max_total_time="$seconds" -print_final_stats=1
done
