#!/usr/bin/env python3
"""Spark reads what Tributary writes: messages per owner from the Kafka log, measurements per
owner from the Parquet archive.

Two subcommands, each a PySpark job on a local master:

``stream``: Structured Streaming over the Kafka topic Tributary writes to (default
``tributary.ingest``, docs/kafka.md). It reads with ``includeHeaders=true`` and takes each
record's owner from its ``tributary.owner`` header and its device from ``tributary.device``
(falling back to the record key, which is the device too), never from the topic or the payload:
only the headers carry what authentication established. It counts records per (owner, device)
in ``complete`` output mode; every micro-batch's result replaces the JSON file ``--out`` (written
whole, then renamed) and is printed to stderr.

* ``--once``: ``trigger(availableNow=True)``: read everything in the topic now, then stop and
  print the final counts (for tests and batch use);
* without it: a micro-batch every ``--every`` seconds until Ctrl-C (for people watching).

Records without an owner (anonymous clients, or written by someone else) are counted apart as
``anonymous``. ``--checkpoint DIR`` keeps the offsets and the counts between runs; without it
every run starts from the topic's earliest offsets with a fresh count.

``archive``: a batch read of the Parquet archive (docs/archive.md: ``ROOT/owner=NAME/date=DAY/
part-*.parquet``). Spark turns the ``owner=`` and ``date=`` directories back into columns
(partition type inference off, so an owner named ``2024`` stays a string) and skips the
``.part-*.tmp`` files being written. It counts rows per owner and per (owner, measurement name),
and also distinct ``(message_id, seq)`` per owner: a crash can make the archive hold a row twice
(docs/archive.md), and the distinct count is what the store holds.

Human-readable lines go to stderr; stdout carries exactly one JSON document:

  stream:  {"topic": ..., "records": N, "anonymous": N,
            "owners": {"ann": {"messages": N, "devices": {"anndev": N, ...}}, ...}}
  archive: {"root": ..., "rows": N,
            "owners": {"ann": {"rows": N, "distinct": N, "names": {"anndev/temp": N, ...}}, ...}}

The Kafka source is not in pyspark: ``stream`` passes the jars of ``--jars DIR`` (default
``$TRIBUTARY_SPARK_KAFKA_JARS``, else /opt/spark-kafka-4.2.0/jars, where scripts/provision.sh
puts them from scripts/spark/pom.xml) to Spark as ``spark.jars``. Needs pyspark (PyPI) and a
Java 17 runtime (``java`` on PATH or JAVA_HOME).

Usage:
  spark_ingest.py stream --bootstrap HOST:PORT [--topic T] [--once] [--out FILE]
                         [--checkpoint DIR] [--every SECONDS] [--jars DIR]
  spark_ingest.py archive ROOT
Common options: --master (default local[2]), --driver-memory (default 1g), --json OUT (a copy
of the document).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import sys
import tempfile
import threading
import time

import spark_local

DEFAULT_TOPIC = "tributary.ingest"
DEFAULT_JARS = "/opt/spark-kafka-4.2.0/jars"
OWNER_HEADER = "tributary.owner"
DEVICE_HEADER = "tributary.device"

# More quiet loggers than spark_local.LOG4J2 has, for the stream.
LOG4J2_EXTRA = """\
# Streaming aggregations cannot use adaptive query execution; Spark says so at every start.
logger.resolvewrite.name = org.apache.spark.sql.execution.streaming.runtime.ResolveWriteToStream
logger.resolvewrite.level = error
logger.microbatch.name = org.apache.spark.sql.execution.streaming.runtime.MicroBatchExecution
logger.microbatch.level = error
# The Kafka client's INFO and WARN lines (configs, metadata) would drown the counts.
logger.kafka.name = org.apache.kafka
logger.kafka.level = error
"""


def log(line: str = "") -> None:
    print(line, file=sys.stderr, flush=True)


def kafka_jars(directory: str) -> list[str]:
    jars = sorted(glob.glob(os.path.join(directory, "*.jar")))
    if not any(os.path.basename(j).startswith("spark-sql-kafka-0-10_") for j in jars):
        raise SystemExit(f"no Spark Kafka connector in {directory}: run scripts/provision.sh (it copies "
                         "the jars of scripts/spark/pom.xml there) or point --jars / "
                         "TRIBUTARY_SPARK_KAFKA_JARS at such a directory")
    return jars


def spark_session(tmp: str, master: str, driver_memory: str, jars: list[str] | None = None):
    config = {
        # A handful of owners: 200 shuffle partitions would be 200 tasks of nothing each.
        "spark.sql.shuffle.partitions": "2",
        # Owner names are strings, even those that look like numbers or dates.
        "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    }
    if jars:
        config["spark.jars"] = ",".join(jars)
    return spark_local.spark_session(tmp, "tributary-spark-ingest", master, driver_memory,
                                     LOG4J2_EXTRA, config)


# -- stream: the Kafka log -------------------------------------------------------------------


def header(name: str):
    """The value of the record's first header `name` as a string (null when absent)."""
    from pyspark.sql import functions as F

    return F.expr(f"decode(filter(headers, h -> h.key = '{name}')[0].value, 'UTF-8')")


def owner_device_counts(records):
    """(owner, device, messages) of a Kafka source's records; owner null for anonymous ones."""
    from pyspark.sql import functions as F

    owner = F.nullif(header(OWNER_HEADER), F.lit(""))
    device = F.coalesce(F.nullif(header(DEVICE_HEADER), F.lit("")), F.col("key").cast("string"))
    return (records.select(owner.alias("owner"), device.alias("device"))
            .groupBy("owner", "device").agg(F.count(F.lit(1)).alias("messages")))


def stream_document(topic: str, rows) -> dict:
    owners: dict[str, dict] = {}
    anonymous = 0
    for row in rows:
        if row["owner"] is None:
            anonymous += row["messages"]
            continue
        entry = owners.setdefault(row["owner"], {"messages": 0, "devices": {}})
        entry["messages"] += row["messages"]
        entry["devices"][row["device"] or ""] = row["messages"]
    owners = {k: owners[k] for k in sorted(owners)}
    records = anonymous + sum(o["messages"] for o in owners.values())
    return {"topic": topic, "records": records, "anonymous": anonymous, "owners": owners}


def write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def run_stream(args, tmp: str) -> dict:
    spark = spark_session(tmp, args.master, args.driver_memory, kafka_jars(args.jars))
    latest: dict = {"document": stream_document(args.topic, [])}
    try:
        log(f"Spark {spark.version} ({args.master}) reading {args.topic} from {args.bootstrap}")
        records = (spark.readStream.format("kafka")
                   .option("kafka.bootstrap.servers", args.bootstrap)
                   .option("subscribe", args.topic)
                   .option("includeHeaders", "true")
                   .option("startingOffsets", "earliest")
                   # A topic that was deleted and made again must not stop the job.
                   .option("failOnDataLoss", "false")
                   .load())

        def on_batch(frame, batch_id: int) -> None:
            # Complete mode: every batch holds the whole table, so the file is replaced whole.
            document = stream_document(args.topic, frame.collect())
            latest["document"] = document
            if args.out:
                write_atomically(args.out, json.dumps(document, indent=2) + "\n")
            log(f"batch {batch_id}: {document['records']} records, {document['anonymous']} anonymous")
            for owner, entry in document["owners"].items():
                log(f"  {owner}: {entry['messages']} messages from {len(entry['devices'])} devices")

        checkpoint = args.checkpoint or os.path.join(tmp, "checkpoint")
        writer = (owner_device_counts(records).writeStream
                  .outputMode("complete")
                  .option("checkpointLocation", checkpoint)
                  .foreachBatch(on_batch))
        if args.once:
            query = writer.trigger(availableNow=True).start()
            query.awaitTermination()
        else:
            query = writer.trigger(processingTime=f"{args.every} seconds").start()
            log(f"a batch every {args.every} s; Ctrl-C stops")
            # pyspark's own SIGINT handler raises KeyboardInterrupt in the middle of a py4j call,
            # which prints tracebacks of the gateway; a flag, looked at every second, stops the
            # query between calls instead.
            stopping = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stopping.set())
            while query.isActive and not stopping.is_set():
                query.awaitTermination(1)
            query.stop()
        if query.exception() is not None:
            raise SystemExit(f"the streaming query failed: {query.exception()}")
    finally:
        spark.stop()
    return latest["document"]


# -- archive: the Parquet files --------------------------------------------------------------


def run_archive(args, tmp: str) -> dict:
    root = args.root
    document = {"root": root, "rows": 0, "owners": {}}
    # Spark cannot infer a schema from a directory without files; an empty archive counts nothing.
    if "://" not in root and not glob.glob(os.path.join(root, "owner=*", "date=*", "*.parquet")):
        log(f"no Parquet files under {root}")
        return document
    from pyspark.sql import functions as F

    spark = spark_session(tmp, args.master, args.driver_memory)
    try:
        log(f"Spark {spark.version} ({args.master}) reading {root}")
        # Partition discovery finds owner= and date= below the root; names starting with "." or
        # "_" (the sink's temporary files) are not read.
        rows = spark.read.parquet(root)
        per_owner = (rows.groupBy("owner")
                     .agg(F.count(F.lit(1)).alias("rows"),
                          F.count_distinct("message_id", "seq").alias("distinct"))
                     .collect())
        per_name = rows.groupBy("owner", "name").agg(F.count(F.lit(1)).alias("rows")).collect()
    finally:
        spark.stop()
    owners = {r["owner"]: {"rows": r["rows"], "distinct": r["distinct"], "names": {}}
              for r in sorted(per_owner, key=lambda r: r["owner"])}
    for r in sorted(per_name, key=lambda r: (r["owner"], r["name"])):
        owners[r["owner"]]["names"][r["name"]] = r["rows"]
    document["owners"] = owners
    document["rows"] = sum(o["rows"] for o in owners.values())
    for owner, entry in owners.items():
        log(f"  {owner}: {entry['rows']} rows ({entry['distinct']} distinct), "
            f"{len(entry['names'])} measurement names")
    return document


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    parser.add_argument("--driver-memory", default="1g", help="spark.driver.memory (default 1g)")
    parser.add_argument("--json", metavar="OUT", help="also write the final JSON document to OUT")
    commands = parser.add_subparsers(dest="command", required=True)

    stream = commands.add_parser("stream", help="messages per owner and device from the Kafka log")
    stream.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, HOST:PORT[,...]")
    stream.add_argument("--topic", default=DEFAULT_TOPIC, help=f"topic (default {DEFAULT_TOPIC})")
    stream.add_argument("--once", action="store_true",
                        help="read what the topic holds now, then stop (trigger availableNow)")
    stream.add_argument("--every", type=float, default=10.0,
                        help="seconds between micro-batches without --once (default 10)")
    stream.add_argument("--out", metavar="FILE", help="the latest counts as JSON, replaced each batch")
    stream.add_argument("--checkpoint", metavar="DIR",
                        help="keep offsets and counts here between runs (default: a fresh temporary one)")
    stream.add_argument("--jars", metavar="DIR",
                        default=os.environ.get("TRIBUTARY_SPARK_KAFKA_JARS") or DEFAULT_JARS,
                        help="the Kafka connector's jars (default $TRIBUTARY_SPARK_KAFKA_JARS, "
                             f"else {DEFAULT_JARS})")

    archive = commands.add_parser("archive", help="rows per owner and measurement name in the archive")
    archive.add_argument("root", metavar="ROOT", help="the archive's directory (DATA_DIR/archive)")
    args = parser.parse_args()

    # The JVM that pyspark starts inherits file descriptor 1 and may print there. So that stdout
    # carries only the JSON document, fd 1 points at stderr while Spark runs and the document is
    # written to a copy of the original stdout.
    sys.stdout.flush()
    json_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spark-ingest-") as tmp:
        document = run_stream(args, tmp) if args.command == "stream" else run_archive(args, tmp)
    document["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    log(f"total {document['wall_seconds']:.1f} s")
    text = json.dumps(document, indent=2) + "\n"
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    json_out.write(text)
    json_out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
