"""A local Spark session as the project's Spark scripts start it (scripts/spark_har.py,
scripts/spark_ingest.py): pyspark from the venv on Debian's Java 17, bound to loopback, logging at
WARN from the JVM's first line on, no UI."""

from __future__ import annotations

import os
import shutil
import sys

LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = stderr
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n%ex
# Says only that Hadoop's optional native library is absent, which changes nothing here.
logger.nativecode.name = org.apache.hadoop.util.NativeCodeLoader
logger.nativecode.level = error
"""


def spark_session(tmp: str, app: str, master: str, driver_memory: str, log4j_extra: str = "",
                  config: dict[str, str] | None = None):
    """A SparkSession named `app`; its log4j2 configuration is written into `tmp`; `config` adds
    Spark settings."""
    from pyspark.sql import SparkSession

    if not os.environ.get("JAVA_HOME") and shutil.which("java") is None:
        raise SystemExit("no Java runtime: Spark needs Java 17 (`java` on PATH or JAVA_HOME, "
                         "e.g. apt-get install openjdk-17-jre-headless)")
    # The driver binds to loopback (local mode needs no other address, and Spark otherwise warns
    # when the host name resolves to 127.0.0.1). The Python workers run this very interpreter, so
    # with the same pyspark.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # A log4j2 configuration at WARN from the JVM's first line on: setLogLevel alone would come
    # after Spark's INFO start-up lines.
    log4j = os.path.join(tmp, "log4j2.properties")
    with open(log4j, "w") as f:
        f.write(LOG4J2 + log4j_extra)
    builder = (SparkSession.builder
               .master(master)
               .appName(app)
               .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{log4j}")
               .config("spark.driver.memory", driver_memory)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false"))
    for key, value in (config or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
