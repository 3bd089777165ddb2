#!/usr/bin/env bash
# The one test command: formatting, lints, unit and doc tests, docs, the release build, the
# real-client integration tests (pytest + paho-mqtt + mosquitto clients) and a fuzz smoke run.
#
# Works on a fresh Debian 12 machine as root: it installs what is missing (mosquitto and its
# clients, haproxy, openssl, node and npm from apt, a Python venv at .venv with
# tests/requirements.txt, MQTT.js from npm into tests/integration/js, the Kafka-protocol broker
# tansu 0.6.0 from crates.io into /opt/tansu-0.6.0, the S3-compatible server s3s-fs 0.14.1 into
# /opt/s3s-fs-0.14.1), idempotently.
#
# Every step runs even when an earlier one failed (except the integration tests, which need the
# release build); the script exits non-zero if any step failed and lists them at the end.
#
# Environment:
#   TRIBUTARY_TEST_AGAINST=mosquitto  run the integration tests against mosquitto instead
#   FUZZ_SECONDS=N                    length of the fuzz smoke run per target (default 30)
#   PYTEST_ARGS="..."                 extra arguments for pytest (e.g. "-k acceptance")
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

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

# ---- prerequisites (quiet, idempotent) ---------------------------------------------------------

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        apt-get update -qq
        apt_updated=1
    fi
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

banner "prerequisites"
missing=()
command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto mosquitto-clients)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}"
    # The tests start their own brokers and proxies on free ports, so keep the packages from starting
    # system services (mosquitto on 127.0.0.1:1883, haproxy): a policy-rc.d that answers 101
    # ("action forbidden") does that.
    # An existing policy-rc.d is left as it is; ours is removed after the install.
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt_install "${missing[@]}"
    if [ "$made_policy" -eq 1 ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
fi

venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        # Debian's python3 needs python3-venv for ensurepip.
        apt_install python3-venv
        rm -rf "$venv"
        python3 -m venv "$venv"
    fi
fi
req_hash=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null || true)" != "$req_hash" ]; then
    echo "installing tests/requirements.txt into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/requirements.txt
    echo "$req_hash" >"$venv/.requirements.sha256"
fi
# MQTT.js for the WebSocket tests, pinned by tests/integration/js/package-lock.json.
js="$root/tests/integration/js"
lock_hash=$(sha256sum "$js/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$js/node_modules/.lock.sha256" 2>/dev/null || true)" != "$lock_hash" ]; then
    echo "installing MQTT.js into $js/node_modules"
    npm ci --prefix "$js" --no-audit --no-fund --loglevel=error
    echo "$lock_hash" >"$js/node_modules/.lock.sha256"
fi
# tansu 0.6.0, the Kafka-protocol broker for the Kafka tests (docs: RECIPES.md). Plain
# `cargo install tansu` builds no storage engine, so it is built with libsql (sqlite) under /opt;
# the check below makes a second run cost nothing (the first build takes ~10 min on 2 cores).
tansu_root=/opt/tansu-0.6.0
# (The help text is captured first: with pipefail, `grep -q` closing the pipe early could fail the check.)
tansu_help=$("$tansu_root/bin/tansu" --help 2>/dev/null || true)
if ! grep -q 'Storage engines:.*libsql' <<<"$tansu_help"; then
    echo "building tansu 0.6.0 into $tansu_root (about 10 minutes)"
    cargo install tansu --version 0.6.0 --locked --features dynostore,libsql --root "$tansu_root"
fi
# s3s-fs, an S3-compatible server (S3 REST API with SigV4) over a directory, for the archive's
# S3 test (~3 minutes to build once; 0.14.1 is the newest that builds with Rust 1.95).
s3s_root=/opt/s3s-fs-0.14.1
if ! "$s3s_root/bin/s3s-fs" --version >/dev/null 2>&1; then
    echo "building s3s-fs 0.14.1 into $s3s_root (about 3 minutes)"
    cargo install s3s-fs --version 0.14.1 --features binary --locked --root "$s3s_root"
fi
export TRIBUTARY_S3S_FS="$s3s_root/bin/s3s-fs"
echo "mosquitto: $(command -v mosquitto || echo /usr/sbin/mosquitto), clients: $(command -v mosquitto_sub)"
echo "tansu: $tansu_root/bin/tansu"
echo "s3s-fs: $TRIBUTARY_S3S_FS"
echo "python: $("$venv/bin/python" --version), $("$venv/bin/python" -m pip --disable-pip-version-check \
    list 2>/dev/null | grep -Ei '^(paho-mqtt|pytest|pytest-timeout|confluent-kafka|pyarrow|duckdb) ' | tr -s ' ' | paste -sd, -)"

# ---- Rust checks -------------------------------------------------------------------------------

step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings
# A tansu for the Rust tests that run on Kafka (tributary-kafka's conformance test reads
# TRIBUTARY_TEST_KAFKA); stopped when the script ends. The integration tests start their own.
kafka_dir=$(mktemp -d /tmp/tributary-test-kafka.XXXXXX)
kafka_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# `exec`: the background job is tansu itself, so $! is the process to stop.
(cd "$kafka_dir" && RUST_LOG=warn NO_COLOR=1 exec "$tansu_root/bin/tansu" broker \
    --listener-url "tcp://127.0.0.1:$kafka_port" --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
    --storage-engine sqlite://tansu.db >tansu.log 2>&1 </dev/null) &
kafka_pid=$!
stop_test_kafka() {
    if [ -n "${kafka_pid:-}" ]; then
        kill "$kafka_pid" 2>/dev/null || true
        wait "$kafka_pid" 2>/dev/null || true
        kafka_pid=
    fi
    rm -rf "$kafka_dir"
}
trap stop_test_kafka EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null && break; sleep 0.1; done
# tansu 0.6.0 needs this index to fetch records with headers (RECIPES.md).
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1], timeout=30); c.execute('create index if not exists header_topition_offset on header (topition, offset_id)'); c.commit()" "$kafka_dir/tansu.db"
export TRIBUTARY_TEST_KAFKA="127.0.0.1:$kafka_port"

# A throw-away PostgreSQL 15 for the Rust tests that run on PostgreSQL (tributary-store's test
# body reads TRIBUTARY_TEST_POSTGRES and makes and drops a database of its own per run), created
# and started as RECIPES.md shows, on a free port in a fresh directory; stopped and removed when
# the script ends.
pg_bin=/usr/lib/postgresql/15/bin
pg_dir=$(mktemp -d /tmp/tributary-test-pg.XXXXXX)
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_test_postgres() {
    if [ ! -x "$pg_bin/initdb" ]; then
        echo "installing postgresql-15"
        # As for mosquitto above: keep the package from starting the system cluster.
        local made_policy=0
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            made_policy=1
        fi
        apt_install postgresql-15
        if [ "$made_policy" -eq 1 ]; then
            rm -f /usr/sbin/policy-rc.d
        fi
    fi
    chown postgres:postgres "$pg_dir"
    su postgres -c "$pg_bin/initdb -D $pg_dir/data -U postgres --auth=trust -E UTF8 --no-sync" >/dev/null &&
        su postgres -c "$pg_bin/pg_ctl -D $pg_dir/data -l $pg_dir/pg.log -w start \
            -o '-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1'"
}
stop_test_postgres() {
    if [ -f "$pg_dir/data/postmaster.pid" ]; then
        su postgres -c "$pg_bin/pg_ctl -D $pg_dir/data -m fast stop" >/dev/null 2>&1 || true
    fi
    rm -rf "$pg_dir"
}
trap 'stop_test_kafka; stop_test_postgres' EXIT
step "start PostgreSQL 15 for the store tests" start_test_postgres
if [ "$last_rc" -eq 0 ]; then
    export TRIBUTARY_TEST_POSTGRES="postgres://postgres@127.0.0.1:$pg_port/postgres"
else
    cat "$pg_dir/pg.log" 2>/dev/null || true
fi

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run" cargo nextest run --workspace
else
    step "cargo test (nextest not installed)" cargo test --workspace
fi
stop_test_kafka
unset TRIBUTARY_TEST_KAFKA
step "cargo test --doc" cargo test --doc --workspace
step "cargo doc (warnings are errors)" env RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps

# ---- integration tests against the release binary ----------------------------------------------

step "cargo build --release -p tributary-cli" cargo build --release -p tributary-cli
if [ "$last_rc" -eq 0 ] || [ "${TRIBUTARY_TEST_AGAINST:-}" = "mosquitto" ]; then
    # Each test is bounded by pytest-timeout (tests/integration/pytest.ini); pytest runs every
    # test whatever fails before it, and exits non-zero if any failed.
    # shellcheck disable=SC2086
    step "integration tests (pytest, broker: ${TRIBUTARY_TEST_AGAINST:-tributary})" \
        "$venv/bin/pytest" -q tests/integration ${PYTEST_ARGS:-}
else
    skip "integration tests (pytest)" "the release build failed"
    failed+=("integration tests (not run: no release build)")
fi

# ---- fuzz smoke --------------------------------------------------------------------------------

if [ -f scripts/fuzz-smoke.sh ]; then
    step "fuzz smoke (${FUZZ_SECONDS:-30}s per target)" bash scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-30}"
else
    skip "fuzz smoke" "scripts/fuzz-smoke.sh does not exist"
fi

# ---- summary -----------------------------------------------------------------------------------

elapsed=$(($(date +%s) - started))
banner "summary"
printf '%s\n' "${summary[@]}"
printf 'total elapsed: %dm%02ds\n' $((elapsed / 60)) $((elapsed % 60))
if [ "${#failed[@]}" -gt 0 ]; then
    printf 'test.sh: %d step(s) failed: %s\n' "${#failed[@]}" "$(IFS=';'; echo "${failed[*]}")"
    exit 1
fi
echo "test.sh: every step passed"
