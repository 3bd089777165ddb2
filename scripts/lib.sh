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
# Spark's Kafka connector and its own dependencies (scripts/spark/pom.xml), for scripts/spark_ingest.py.
spark_kafka_version=$(sed -n 's|.*<connector.version>\(.*\)</connector.version>.*|\1|p' "$root/scripts/spark/pom.xml")
spark_kafka_jars=/opt/spark-kafka-$spark_kafka_version/jars
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
        summary+=("FAILED  ${dt}s  $name (exit $rc$(low_disk_note))")
        failed+=("$name")
    fi
    return 0
}

# low_disk_note: ", only N MiB free on the build's disk" when under 4 GiB are left there, else
# nothing. A full disk makes every later step fail within seconds, each with an error of its own;
# said beside each failure, the cause is in the summary.
low_disk_note() {
    local free_kib
    free_kib=$(df -Pk . 2>/dev/null | awk 'NR == 2 { print $4 }')
    if [ -n "$free_kib" ] && [ "$free_kib" -lt $((4 * 1024 * 1024)) ]; then
        printf ', only %d MiB free on the build'"'"'s disk' $((free_kib / 1024))
    fi
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
    df -Ph . 2>/dev/null | awk 'NR == 2 { print "disk at the end: " $4 " free of " $2 }'
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

# start_test_kafka DIR: one Apache Kafka 4.1.1 KRaft node (broker and controller in one JVM,
# bounded heap) in DIR, on free ports, with a freshly formatted data directory, as
# tests/integration/kafka.py starts one (docs/testing.md). Sets kafka_port and kafka_pid; returns
# once the port accepts and the node answers Metadata (the venv's confluent-kafka asks), non-zero
# if that does not happen within 120 s. stop_test_kafka stops it.
kafka_pid=
start_test_kafka() {
    local dir="$1" cport cluster_id cp="$kafka_root/libs/*" i
    local jvm=(-Xms128m -Xmx512m "-Dlog4j2.configurationFile=$dir/log4j2.properties")
    kafka_port=$(free_port)
    cport=$(free_port)
    cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=10
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
PROPS
    printf '%s\n' 'appender.out.type = Console' 'appender.out.name = OUT' \
        'appender.out.layout.type = PatternLayout' 'appender.out.layout.pattern = [%d] %p %m (%c)%n' \
        'rootLogger.level = WARN' 'rootLogger.appenderRef.out.ref = OUT' >"$dir/log4j2.properties"
    # A KRaft cluster id: 16 random bytes in URL-safe base64 without padding, never starting with
    # "-" (StorageTool would read it as an option; Kafka's own ids avoid it too).
    cluster_id=$(python3 -c 'import base64, uuid
for _ in range(1000):
    i = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not i.startswith("-"):
        print(i)
        break')
    if ! java "${jvm[@]}" -cp "$cp" kafka.tools.StorageTool format -t "$cluster_id" \
        -c "$dir/server.properties" >"$dir/kafka.log" 2>&1; then
        cat "$dir/kafka.log"
        return 1
    fi
    java "${jvm[@]}" -cp "$cp" kafka.Kafka "$dir/server.properties" >>"$dir/kafka.log" 2>&1 </dev/null &
    kafka_pid=$!
    for i in $(seq 1200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null && break
        kill -0 "$kafka_pid" 2>/dev/null || break
        sleep 0.1
    done
    if ! "$venv/bin/python" -c 'import sys; from confluent_kafka.admin import AdminClient
md = AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0}).list_topics(timeout=60)
sys.exit(0 if md.brokers else 1)' "127.0.0.1:$kafka_port"; then
        echo "Apache Kafka did not answer Metadata on 127.0.0.1:$kafka_port (waited ${i}00 ms for the port):"
        tail -50 "$dir/kafka.log"
        return 1
    fi
    echo "Apache Kafka 4.1.1 on 127.0.0.1:$kafka_port (pid $kafka_pid, $dir)"
}

# stop_test_kafka: SIGTERM (a controlled shutdown, seconds), SIGKILL after 30 s.
stop_test_kafka() {
    local i
    if [ -n "${kafka_pid:-}" ]; then
        kill "$kafka_pid" 2>/dev/null || true
        for i in $(seq 300); do
            kill -0 "$kafka_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$kafka_pid" 2>/dev/null || true
        wait "$kafka_pid" 2>/dev/null || true
        kafka_pid=
    fi
}
