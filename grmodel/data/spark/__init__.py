"""The Spark engine of the data stages: the processed-dataset contract (grmodel/features.py)
computed with Spark DataFrames, for logs too large for one process's memory.

Row-level work (reading, rule checks, splits, joins, label columns, writing) runs in Spark;
entity-level work (encoders, buckets: one value per user or video, or per distinct value)
runs on the driver through the pandas path's own functions, so each rule lives in one place.
``pyspark`` is the optional ``spark`` extra and needs Java 17; nothing here is imported unless
the Spark engine is asked for.
"""
