"""One local SparkSession for every Spark test (starting one costs seconds of JVM time):
two cores, two shuffle partitions, so the tiny tables stay tiny. The Spark tests skip, saying
why, only when pyspark or Java is missing."""

from __future__ import annotations

import pytest

from grmodel.data.spark.session import missing_requirement


@pytest.fixture(scope="session")
def spark():
    reason = missing_requirement()
    if reason:
        pytest.skip(f"the Spark engine cannot run here: {reason}")
    from grmodel.data.spark.session import spark_session

    session = spark_session("local[2]", driver_memory="1g", shuffle_partitions=2)
    yield session
    session.stop()
