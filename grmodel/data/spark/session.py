"""The SparkSession the Spark engine runs in: local mode here and in tests, a cluster's when
the session is started by spark-submit (a SparkApplication's driver)."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

from grmodel.data.io import DataSpecError

# Arrow batches between the JVM and Python workers: the pandas UDFs' unit of work.
ARROW_BATCH_ROWS = 65_536
# Partitions of every shuffle (sorts, joins, aggregations; Spark's default count) before adaptive
# execution merges neighbours up to ADVISORY_PARTITION_BYTES, so that a task's share of a shuffle
# stays about that size whatever the data. Before 2026-12 it was two per core, and adaptive
# execution's default merges down to about one per core: either way each sort task of a 2-core
# machine held a quarter to a half of a split (bench/bench_ingest.py --sweep, docs/scale.md).
SHUFFLE_PARTITIONS = 200
ADVISORY_PARTITION_BYTES = "64m"


class SparkUnavailable(DataSpecError):
    """The Spark engine was asked for but pyspark or Java is missing (says which, and how)."""


def missing_requirement() -> str | None:
    """Why the Spark engine cannot run here (None when it can)."""
    try:
        import pyspark  # noqa: F401  (an optional extra: imported only to see that it is there)
    except ImportError:
        return "pyspark is not installed (pip install 'grmodel[spark]')"
    java_home = os.environ.get("JAVA_HOME")
    if not (shutil.which("java") or (java_home and os.path.isfile(os.path.join(java_home, "bin", "java")))):
        return "java is not installed (Debian: apt-get install openjdk-17-jre-headless)"
    return None


def spark_session(master: str | None = None, driver_memory: str = "2g",
                  shuffle_partitions: int | None = None, app_name: str = "grmodel") -> Any:
    """The active SparkSession, else a new one (``master`` defaults to ``local[<cores>]``
    unless spark-submit started this process). UTC, Arrow-backed pandas conversion."""
    reason = missing_requirement()
    if reason:
        raise SparkUnavailable(f"--engine spark: {reason}")
    # lazy: pyspark is the optional extra `spark`
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Python workers run this interpreter (its pandas, pyarrow and grmodel), not the PATH's.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    # Under spark-submit (a SparkApplication's driver) the JVM started this Python and handed it
    # a gateway: its configured master (the cluster) stands unless one is asked for here.
    if master or not os.environ.get("PYSPARK_GATEWAY_PORT"):
        builder = builder.master(master or f"local[{os.cpu_count() or 1}]")
    return (builder
            .config("spark.driver.memory", driver_memory)
            .config("spark.sql.shuffle.partitions", str(shuffle_partitions or SHUFFLE_PARTITIONS))
            .config("spark.sql.adaptive.enabled", "true")
            .config("spark.sql.adaptive.coalescePartitions.enabled", "true")
            .config("spark.sql.adaptive.coalescePartitions.parallelismFirst", "false")
            .config("spark.sql.adaptive.advisoryPartitionSizeInBytes", ADVISORY_PARTITION_BYTES)
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH_ROWS))
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate())
