# shellcheck shell=bash disable=SC2034  # (its variables are for the scripts that source it)
# Shared by scripts/provision.sh, scripts/check-fast.sh and scripts/test.sh (sourced, not run):
# where the provisioned tools live, the step accounting, and the Rust checks both check scripts
# run. Sourcing it moves to the repository root and starts the clock for `finish`.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1

# Where scripts/provision.sh installs what the tests need (docs/testing.md).
venv="$root/.venv"
js="$root/tests/integration/js"
web="$root/web"
kafka_root=/opt/apache-kafka-4.1.1
tansu_root=/opt/tansu-0.6.0
s3s_root=/opt/s3s-fs-0.14.1
pg_bin=/usr/lib/postgresql/15/bin

# rust-toolchain.toml pins the compiler by version, and rustup downloads a pinned version it
# does not have; the project's machines reach no download server, only package registries.
# When the installed stable toolchain is the pinned version but is not installed under that
# name, it is given the name (a link, nothing downloaded). Any other mismatch is reported.
ensure_pinned_toolchain() {
    command -v rustup >/dev/null 2>&1 || return 0
    local pinned home host stable
    pinned=$(sed -n 's/^channel = "\(.*\)"$/\1/p' "$root/rust-toolchain.toml")
    home="${RUSTUP_HOME:-$HOME/.rustup}"
    host=$(RUSTUP_TOOLCHAIN=stable rustc -vV 2>/dev/null | sed -n 's/^host: //p')
    if [ -z "$pinned" ] || [ -z "$host" ] || [ -e "$home/toolchains/$pinned-$host" ]; then
        return 0
    fi
    stable=$(RUSTUP_TOOLCHAIN=stable rustc --version 2>/dev/null | cut -d' ' -f2)
    if [ "$stable" = "$pinned" ]; then
        echo "naming the installed stable Rust $stable as the pinned toolchain $pinned-$host"
        ln -s "$home/toolchains/stable-$host" "$home/toolchains/$pinned-$host"
    else
        echo "rust-toolchain.toml pins Rust $pinned, the installed stable is ${stable:-missing}: rustup will try to download $pinned" >&2
    fi
}
ensure_pinned_toolchain

started=$(date +%s)
failed=()
summary=()

banner() {
    printf '\n==== %s ====\n' "$*"
}

# step NAME CMD...: run CMD with a banner, record pass/fail and its duration, never abort.
# The command's exit status is left in $last_rc.
last_rc=0
step() {
    local name="$1"
    shift
    banner "$name"
    local t0 rc=0 dt
    t0=$(date +%s)
    "$@" || rc=$?
    last_rc=$rc
    dt=$(($(date +%s) - t0))
    if [ "$rc" -eq 0 ]; then
        summary+=("ok      ${dt}s  $name")
    else
        summary+=("FAILED  ${dt}s  $name (exit $rc)")
        failed+=("$name")
    fi
    return 0
}

skip() {
    banner "$1"
    echo "skipped: $2"
    summary+=("skipped      $1 ($2)")
}

# finish SCRIPT: print the summary and the elapsed time; exit non-zero if any step failed.
finish() {
    local elapsed=$(($(date +%s) - started))
    banner "summary"
    printf '%s\n' "${summary[@]}"
    printf 'total elapsed: %dm%02ds\n' $((elapsed / 60)) $((elapsed % 60))
    if [ "${#failed[@]}" -gt 0 ]; then
        printf '%s: %d step(s) failed: %s\n' "$1" "${#failed[@]}" "$(IFS=';'; echo "${failed[*]}")"
        exit 1
    fi
    echo "$1: every step passed"
}

# The checks that need nothing but the Rust toolchain: formatting and lints.
rust_format_and_lint_steps() {
    step "cargo fmt --check" cargo fmt --all -- --check
    step "cargo clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings
    step "no import cycles between a crate's modules" module_cycles_all
}

# scripts/module_cycles.py on every crate: no module imports one that imports it back.
module_cycles_all() {
    local crate rc=0
    for crate in crates/*/; do
        python3 scripts/module_cycles.py "$crate" || rc=1
    done
    return "$rc"
}

# The workspace's unit, property and in-process tests. Those that need an engine run on it
# when TRIBUTARY_TEST_KAFKA / TRIBUTARY_TEST_POSTGRES name one, and say they did not otherwise.
rust_test_step() {
    if cargo nextest --version >/dev/null 2>&1; then
        step "cargo nextest run" cargo nextest run --workspace
    else
        step "cargo test (nextest not installed)" cargo test --workspace
    fi
}

# A free TCP port on 127.0.0.1 (for the engines the full test run starts).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
