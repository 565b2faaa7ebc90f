"""Names the dead-code check (vulture, in `make lint` and `make test`) cannot see used: each is
read by a framework, by a file or by name, never through Python. One line each, with the reason.
Nothing imports or runs this file; vulture reads it with the code."""
# ruff: noqa: B018, F821

EXIT_OK, EXIT_USAGE  # grmodel/cli: the README's table of exit statuses names every status
_.xauc_tie_aware  # collapse.CollapseVerdict: a field of the record its to_dict writes
_.nfiles  # versioning.DataVersion: a field of what data.dvc records
_.msg  # redact.RedactingFilter: logging formats a LogRecord's msg
_.HASH_THRESHOLD  # validation/gx.py: great_expectations reads its pandas engine's setting
_.progress_bars  # validation/gx.py: great_expectations reads its context's setting
_.quiet  # versioning: DVC reads its scm context's setting
validate_processed_spark  # validation/spark.py, the at-scale check of docs/scale.md: no stage calls it yet
_one_thread  # tests/pipeline/test_local_run.py: an autouse fixture
sqlite_flow  # tests/registry/test_registry.py: a fixture requested by name (getfixturevalue)
