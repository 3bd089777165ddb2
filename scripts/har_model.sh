#!/usr/bin/env bash
# The behaviour model for the tests: fetches the UCI HAPT data set (scripts/har_dataset.py) and
# trains the model with the default settings once, both cached outside the work tree (the
# data's licence forbids commercial use: neither is ever committed). The model is cached by the
# hash of the data, of the model's code and of Cargo.lock, so a change to any of them trains
# again. Needs the release build (target/release/tributary) and the venv (scripts/provision.sh).
#
# Usage: scripts/har_model.sh ENV_FILE   writes `export TRIBUTARY_HAR_CSV=...` and
#                                        `export TRIBUTARY_HAR_MODEL=...` into ENV_FILE
# Environment: TRIBUTARY_CACHE (default ~/.cache/tributary)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

env_file=${1:?usage: har_model.sh ENV_FILE}
cache="${TRIBUTARY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tributary}/har"
csv=$("$venv/bin/python" scripts/har_dataset.py "$cache")
data_hash=$(sha256sum "$csv" | cut -c1-16)
# shellcheck disable=SC2046 # the file list is word-split on purpose (no spaces in these paths)
code_hash=$(cat Cargo.lock crates/model/Cargo.toml $(find crates/model/src -type f | sort) crates/cli/src/model.rs |
    sha256sum | cut -c1-16)
model="$cache/models/$data_hash-$code_hash"
if [ -f "$model/model.json" ]; then
    echo "har_model.sh: cached model $model"
else
    echo "har_model.sh: training the behaviour model into $model (a few minutes)"
    rm -rf "$model.tmp"
    target/release/tributary model train-har --data "$csv" --out "$model.tmp"
    mv "$model.tmp" "$model"
fi
printf 'export TRIBUTARY_HAR_CSV=%q\nexport TRIBUTARY_HAR_MODEL=%q\n' "$csv" "$model" >"$env_file"
