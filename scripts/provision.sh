#!/usr/bin/env bash
# Installs what the full test run (scripts/test.sh, which runs this first) needs, idempotently:
# a second run checks and installs nothing. On a fresh Debian 12 machine, as root:
#   - from apt: mosquitto and its clients, haproxy, openssl, node and npm, Java 17, Maven,
#     PostgreSQL 15 (without starting their system services);
#   - a Python venv at .venv with tests/requirements.txt (reinstalled when the file changes);
#   - MQTT.js from npm into tests/integration/js (reinstalled when its package-lock.json changes);
#   - Debian's chromium (the dashboard's browser tests drive it with Playwright, which downloads no
#     browser) and the dashboard's npm packages into web/node_modules (npm ci, pinned by
#     web/package-lock.json, reinstalled when it changes);
#   - Apache Kafka 4.1.1 (the Kafka tests' reference engine) from Maven Central into
#     /opt/apache-kafka-4.1.1/libs, with mvn and scripts/kafka/pom.xml (~20 s once);
#   - the Kafka-protocol broker tansu 0.6.0 from crates.io into /opt/tansu-0.6.0 (~10 min once;
#     the second engine, for one smoke test);
#   - the S3-compatible server s3s-fs 0.14.1 from crates.io into /opt/s3s-fs-0.14.1 (~3 min once);
#   - Spark's Kafka connector with the jars it needs beside pyspark's (scripts/spark/pom.xml)
#     from Maven Central into /opt/spark-kafka-4.2.0/jars.
# cargo-fuzz is installed by scripts/fuzz-smoke.sh when it first runs. docs/testing.md has the rest.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        apt-get update -qq
        apt_updated=1
    fi
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# apt_install_without_services PACKAGE...: the tests start their own brokers, proxies and
# databases on free ports, so keep the packages from starting system services (mosquitto on
# 127.0.0.1:1883, haproxy, the PostgreSQL cluster): a policy-rc.d that answers 101 ("action
# forbidden") does that. An existing policy-rc.d is left as it is; ours is removed afterwards.
apt_install_without_services() {
    local made_policy=0 rc=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt_install "$@" || rc=$?
    if [ "$made_policy" -eq 1 ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
    return "$rc"
}

banner "prerequisites"
missing=()
command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto mosquitto-clients)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# Java 17 for Apache Kafka (the Kafka tests' reference engine) and Spark ML (scripts/spark_har.py,
# the behaviour model's anchor; pyspark runs on 17); Maven fetches Apache Kafka's jars.
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
# Maven fetches Apache Kafka's jars and Spark's Kafka connector (below).
command -v mvn >/dev/null 2>&1 || missing+=(maven)
# OpenDP (the noise of pack releases, crates/rights) draws from OpenSSL, linked from the system.
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
# The dashboard's end-to-end tests (tests/integration/test_dashboard.py) run in Debian's Chromium.
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt_install_without_services "${missing[@]}"
fi
# PostgreSQL 15 for the store tests. A failed install does not stop the run: scripts/test.sh's
# step that starts PostgreSQL then fails and is counted like any other failed step.
if [ ! -x "$pg_bin/initdb" ]; then
    echo "installing postgresql-15"
    apt_install_without_services postgresql-15 ||
        echo "provision.sh: postgresql-15 did not install; the PostgreSQL tests will fail" >&2
fi

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
lock_hash=$(sha256sum "$js/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$js/node_modules/.lock.sha256" 2>/dev/null || true)" != "$lock_hash" ]; then
    echo "installing MQTT.js into $js/node_modules"
    npm ci --prefix "$js" --no-audit --no-fund --loglevel=error
    echo "$lock_hash" >"$js/node_modules/.lock.sha256"
fi
# The dashboard's build and test tools (Vite, TypeScript, Vitest, axe-core), pinned by web/package-lock.json.
web_lock_hash=$(sha256sum "$web/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$web/node_modules/.lock.sha256" 2>/dev/null || true)" != "$web_lock_hash" ]; then
    echo "installing the dashboard's npm packages into $web/node_modules"
    npm ci --prefix "$web" --no-audit --no-fund --loglevel=error
    echo "$web_lock_hash" >"$web/node_modules/.lock.sha256"
fi
# Apache Kafka 4.1.1, the Kafka tests' reference engine (docs/testing.md): the runtime jars of the
# broker and of kafka-tools (and a logging binding), as scripts/kafka/pom.xml names them, copied
# from Maven Central into $kafka_root/libs (~55 MB, about 20 s). They go into a fresh directory
# first and are moved into place with the pom's hash, so an interrupted copy is not taken for a
# complete one and a changed pom installs again.
kafka_pom_hash=$(sha256sum scripts/kafka/pom.xml | cut -d' ' -f1)
if [ "$(cat "$kafka_root/libs/.pom.sha256" 2>/dev/null || true)" != "$kafka_pom_hash" ]; then
    echo "installing Apache Kafka 4.1.1 from Maven Central into $kafka_root/libs"
    mkdir -p "$kafka_root"
    rm -rf "$kafka_root/libs.new"
    mvn -q -B -Dstyle.color=never -f scripts/kafka/pom.xml dependency:copy-dependencies \
        -DoutputDirectory="$kafka_root/libs.new" -DincludeScope=runtime
    echo "$kafka_pom_hash" >"$kafka_root/libs.new/.pom.sha256"
    rm -rf "$kafka_root/libs"
    mv "$kafka_root/libs.new" "$kafka_root/libs"
fi
# tansu 0.6.0, the second Kafka-protocol broker (one smoke test; docs/testing.md). Plain
# `cargo install tansu` builds no storage engine, so it is built with libsql (sqlite) under /opt;
# the check below makes a second run cost nothing (the first build takes ~10 min on 2 cores).
# (The help text is captured first: with pipefail, `grep -q` closing the pipe early could fail the check.)
tansu_help=$("$tansu_root/bin/tansu" --help 2>/dev/null || true)
if ! grep -q 'Storage engines:.*libsql' <<<"$tansu_help"; then
    echo "building tansu 0.6.0 into $tansu_root (about 10 minutes)"
    cargo install tansu --version 0.6.0 --locked --features dynostore,libsql --root "$tansu_root"
fi
# s3s-fs, an S3-compatible server (S3 REST API with SigV4) over a directory, for the archive's
# S3 test (~3 minutes to build once; 0.14.1 is the newest that builds with Rust 1.95).
if ! "$s3s_root/bin/s3s-fs" --version >/dev/null 2>&1; then
    echo "building s3s-fs 0.14.1 into $s3s_root (about 3 minutes)"
    cargo install s3s-fs --version 0.14.1 --features binary --locked --root "$s3s_root"
fi
# Spark's Kafka connector for scripts/spark_ingest.py (docs/kafka.md, "Reading the log with
# Spark"): the jars of scripts/spark/pom.xml, copied by Maven into a directory of their own that
# is passed to Spark as spark.jars. Fetched again only when the pom changes (its hash is kept
# beside the jars); a copy that did not finish is not taken for a good one.
spark_pom_hash=$(sha256sum scripts/spark/pom.xml | cut -d' ' -f1)
if [ "$(cat "$spark_kafka_jars/.pom.sha256" 2>/dev/null || true)" != "$spark_pom_hash" ]; then
    echo "fetching Spark's Kafka connector $spark_kafka_version into $spark_kafka_jars"
    rm -rf "$spark_kafka_jars"
    mvn -q -B -f scripts/spark/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$spark_kafka_jars"
    echo "$spark_pom_hash" >"$spark_kafka_jars/.pom.sha256"
fi
echo "mosquitto: $(command -v mosquitto || echo /usr/sbin/mosquitto), clients: $(command -v mosquitto_sub)"
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo missing)"
echo "apache kafka: $kafka_root/libs ($(find "$kafka_root/libs" -name '*.jar' | wc -l) jars), $(java -version 2>&1 | head -1)"
echo "tansu: $tansu_root/bin/tansu"
echo "s3s-fs: $s3s_root/bin/s3s-fs"
echo "spark kafka jars: $spark_kafka_jars ($(cd "$spark_kafka_jars" && echo *.jar))"
echo "python: $("$venv/bin/python" --version), $("$venv/bin/python" -m pip --disable-pip-version-check \
    list 2>/dev/null | grep -Ei '^(paho-mqtt|pytest|pytest-timeout|confluent-kafka|pyarrow|duckdb) ' | tr -s ' ' | paste -sd, -)"
