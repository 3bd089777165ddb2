#!/usr/bin/env bash
# The one test command: formatting, lints, unit and doc tests (tributary-kafka's conformance test
# on an Apache Kafka node, the store's on PostgreSQL), docs, the release build, the
# behaviour model (UCI HAPT fetched and the model trained once, both cached outside the work tree:
# scripts/har_model.sh), the real-client integration tests (pytest + paho-mqtt + mosquitto clients,
# confluent-kafka on Apache Kafka, Spark ML) and a fuzz smoke run.
#
# Works on a fresh Debian 12 machine as root: scripts/provision.sh, run first, installs what is
# missing (mosquitto and its clients, haproxy, openssl, node, npm, Java 17, Maven and PostgreSQL 15 from apt, a
# Python venv at .venv with tests/requirements.txt, MQTT.js from npm into tests/integration/js,
# Apache Kafka 4.1.1 from Maven Central into /opt/apache-kafka-4.1.1, the Kafka-protocol broker
# tansu 0.6.0 from crates.io into /opt/tansu-0.6.0, the S3-compatible server s3s-fs 0.14.1 into
# /opt/s3s-fs-0.14.1), idempotently. scripts/check-fast.sh runs the
# checks that need none of it (docs/testing.md).
#
# Every step runs even when an earlier one failed (except the integration tests, which need the
# release build); the script exits non-zero if any step failed and lists them at the end.
#
# Environment:
#   TRIBUTARY_TEST_AGAINST=mosquitto  run the integration tests against mosquitto instead
#   FUZZ_SECONDS=N                    length of the fuzz smoke run per target (default 30)
#   FUZZ_PROFILE=dev|release          the fuzz build (default dev: quick to build)
#   PYTEST_ARGS="..."                 extra arguments for pytest (e.g. "-k acceptance")
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---- prerequisites (quiet, idempotent) ---------------------------------------------------------

bash scripts/provision.sh
export TRIBUTARY_S3S_FS="$s3s_root/bin/s3s-fs"
export TRIBUTARY_SPARK_KAFKA_JARS="$spark_kafka_jars"

# ---- Rust checks -------------------------------------------------------------------------------

rust_format_and_lint_steps

# An Apache Kafka node for the Rust tests that run on Kafka (tributary-kafka's conformance test
# reads TRIBUTARY_TEST_KAFKA), started by scripts/lib.sh's start_test_kafka on free ports in a fresh
# directory; stopped and removed when the script ends. The integration tests start their own.
kafka_dir=$(mktemp -d /tmp/tributary-test-kafka.XXXXXX)
# A throw-away PostgreSQL 15 for the Rust tests that run on PostgreSQL (tributary-store's test
# body reads TRIBUTARY_TEST_POSTGRES and makes and drops a database of its own per run), created
# and started as docs/testing.md shows, on a free port in a fresh directory; stopped and removed when
# the script ends.
pg_dir=$(mktemp -d /tmp/tributary-test-pg.XXXXXX)
pg_port=$(free_port)
start_test_postgres() {
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
trap 'stop_test_kafka; rm -rf "$kafka_dir"; stop_test_postgres' EXIT
step "start Apache Kafka 4.1.1 for the Kafka conformance test" start_test_kafka "$kafka_dir"
if [ "$last_rc" -eq 0 ]; then
    export TRIBUTARY_TEST_KAFKA="127.0.0.1:$kafka_port"
fi
step "start PostgreSQL 15 for the store tests" start_test_postgres
if [ "$last_rc" -eq 0 ]; then
    export TRIBUTARY_TEST_POSTGRES="postgres://postgres@127.0.0.1:$pg_port/postgres"
else
    cat "$pg_dir/pg.log" 2>/dev/null || true
fi

rust_test_step
stop_test_kafka
unset TRIBUTARY_TEST_KAFKA
step "cargo test --doc" cargo test --doc --workspace
step "cargo doc (warnings are errors)" env RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps

# ---- the dashboard (web/) ----------------------------------------------------------------------

step "dashboard: types, Vitest, web/dist equals a fresh build" bash scripts/web_check.sh

# ---- integration tests against the release binary ----------------------------------------------

step "cargo build --release -p tributary-cli" cargo build --release -p tributary-cli
release_rc=$last_rc
if [ "$release_rc" -eq 0 ]; then
    # The behaviour model's data set and trained model (cached; docs/model.md) for
    # tests/integration/test_activity.py and test_spark_har.py.
    har_env=$(mktemp /tmp/tributary-har-env.XXXXXX)
    step "behaviour model: fetch UCI HAPT, train once (cached)" bash scripts/har_model.sh "$har_env"
    # shellcheck disable=SC1090
    source "$har_env"
    rm -f "$har_env"
fi
if [ "$release_rc" -eq 0 ] || [ "${TRIBUTARY_TEST_AGAINST:-}" = "mosquitto" ]; then
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

finish test.sh
