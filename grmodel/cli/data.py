"""``grmodel data synth | days | ingest | tabular | version | snapshot | ensure``: the datasets
layer and its versions (DVC) on the command line.

Every option of a config is reachable: the common ones as flags, any other with
``--set field=value`` (repeatable; values parse as JSON when they can, so ``--set
user_fields='["user_active_degree"]'`` or ``--set dedupe=true`` work).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from typing import Any

from grmodel import versioning
from grmodel.cli import seed_number, whole_number
from grmodel.counted import APPROX_RELATIVE_ERROR, MAX_DISTINCT
from grmodel.data.io import DataSpecError
from grmodel.data.kuairec.ingest import IngestConfig, ingest_kuairec
from grmodel.data.kuairec.synth import DaysConfig, SynthConfig, generate_days, generate_kuairec
from grmodel.data.kuairec.synth.days import drift_days
from grmodel.data.storage import is_uri
from grmodel.data.tabular import TabularSpec, build_tabular
from grmodel.outputs import check_output


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="generate, ingest or build datasets")
    commands = data.add_subparsers(dest="data_command", required=True)

    p = commands.add_parser("synth", help="write KuaiRec-shaped raw files with an oracle")
    p.add_argument("out", help="raw directory to write (see --overwrite)")
    p.add_argument("--preset", default="default", choices=("tiny", "default", "full"))
    p.add_argument("--seed", type=seed_number, default=None)
    p.add_argument("--side-dir", default=None,
                   help="folder with the real user_features.csv and item_categories.csv")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any SynthConfig field")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing grmodel output (never a directory grmodel did not write)")
    p.set_defaults(handler=_synth)

    p = commands.add_parser("days", help="write consecutive days of KuaiRec-format logs (date="
                            "YYYY-MM-DD partitions) from one world, with planted drift")
    p.add_argument("out", help="log directory to write (see --overwrite)")
    p.add_argument("--preset", default="tiny", choices=("tiny", "default", "full"),
                   help="the world's size (users, videos) and rows per day (its big_rows / 20)")
    p.add_argument("--seed", type=seed_number, default=None)
    p.add_argument("--days", type=whole_number(1, what="--days"), default=None,
                   help="how many days (default 5)")
    p.add_argument("--first-day", default=None, help="YYYY-MM-DD (default 2020-09-06)")
    p.add_argument("--drift", action="append", default=[], metavar="KIND@DAY",
                   help="plant a drift from day DAY (0-based) on: label_shift, feature_mix or"
                        " new_category (repeatable; sizes with --set, e.g. label_shift=2.0)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any SynthConfig or DaysConfig field")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing grmodel output (never a directory grmodel did not write)")
    p.set_defaults(handler=_days)

    p = commands.add_parser("ingest", help="KuaiRec 2.0 raw files -> processed dataset")
    p.add_argument("raw", help="directory with big_matrix.csv, small_matrix.csv, ...; with"
                               " --engine spark also an object-storage URI (s3a://bucket/kuairec/)")
    p.add_argument("out", help="processed directory to write (see --overwrite)")
    p.add_argument("--label-mode", choices=("watch_time", "watch_ratio", "norm_ratio"))
    p.add_argument("--split", choices=("authors", "random", "chronological", "forward"))
    p.add_argument("--as-of", default=None, metavar="YYYY-MM-DD",
                   help="split forward: the test day (default the newest day of the data)")
    p.add_argument("--window-days", type=whole_number(0, what="--window-days"), default=None,
                   metavar="N",
                   help="split forward: train on the N days before --as-of, the last of them the"
                        " valid split (default every earlier day)")
    p.add_argument("--valid-mode", choices=("random", "last"))
    p.add_argument("--dedupe", action="store_true", default=None,
                   help="drop exact duplicate rows")
    p.add_argument("--seed", type=seed_number, default=None)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any IngestConfig field")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing grmodel output (never a directory grmodel did not write)")
    _engine_arguments(p)
    p.set_defaults(handler=_ingest)

    p = commands.add_parser("tabular", help="a YAML dataset spec -> processed dataset")
    p.add_argument("spec", help="dataset spec (YAML); see grmodel/data/tabular.py")
    p.add_argument("out", help="processed directory to write (see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing grmodel output (never a directory grmodel did not write)")
    _engine_arguments(p)
    p.set_defaults(handler=_tabular)

    p = commands.add_parser("version", help="print the data version in use (data.dvc)")
    _repo_argument(p)
    p.add_argument("--check", action="store_true",
                   help="also fail unless data/ is exactly that version")
    p.set_defaults(handler=_version)

    p = commands.add_parser("snapshot", help="record data/ as a new data version (dvc add + push)")
    _repo_argument(p)
    p.add_argument("--no-push", action="store_true", help="add to the local DVC cache only")
    p.set_defaults(handler=_snapshot)

    p = commands.add_parser(
        "ensure", help="obtain the recorded data version: dvc pull, else regenerate and verify")
    _repo_argument(p)
    p.add_argument("--force", action="store_true",
                   help="discard changes in data/ that no data version records")
    p.set_defaults(handler=_ensure)


def _engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=("pandas", "spark"), default="pandas",
                        help="pandas: one process (default); spark: Spark DataFrames, local mode"
                        " unless spark-submit started this (needs the spark extra and Java 17)")
    parser.add_argument("--spark-master", default=None, metavar="URL",
                        help="engine spark: the master (default local[<cores>])")
    parser.add_argument("--spark-driver-memory", default="2g", metavar="SIZE",
                        help="engine spark: the driver's heap (default 2g)")
    parser.add_argument("--layout", choices=("file", "parts"), default="file",
                        help="engine spark: one Parquet file per split (default; what every"
                        " stage reads) or a directory of part files (the streaming trainer reads it)")
    parser.add_argument("--exact-distinct-max", type=whole_number(0, what="--exact-distinct-max"),
                        default=MAX_DISTINCT, metavar="N",
                        help="engine spark: quantiles of a column (label statistics, numeric"
                        " buckets) are exact while its distinct training values, which the driver"
                        f" collects, number at most N (default {MAX_DISTINCT:,}); past it,"
                        f" approxQuantile with relative rank error {APPROX_RELATIVE_ERROR:g}, as"
                        " the manifest records")


def _spark(args: argparse.Namespace) -> Any:
    """The SparkSession the ``--engine spark`` flags ask for (the optional extra)."""
    # lazy: pyspark is the optional extra `spark`
    from grmodel.data.spark.session import spark_session

    return spark_session(args.spark_master, driver_memory=args.spark_driver_memory)


def _repo_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default=".", help="repository root holding data.dvc")


def _synth(args: argparse.Namespace) -> int:
    check_output(args.out, inputs=[args.side_dir], overwrite=args.overwrite)
    overrides = _parse_overrides(SynthConfig, args.set)
    for name, value in (("seed", args.seed), ("side_dir", args.side_dir)):
        if value is not None:
            overrides[name] = value
    summary = generate_kuairec(args.out, SynthConfig.preset(args.preset, **overrides))
    print(json.dumps({"out": args.out, "rows": summary["rows"],
                      "watch_ratio": summary["watch_ratio"]}, indent=2))
    return 0


def _days(args: argparse.Namespace) -> int:
    check_output(args.out, overwrite=args.overwrite)
    synth_fields = {f.name for f in dataclasses.fields(SynthConfig)}
    world = [item for item in args.set if item.partition("=")[0].strip() in synth_fields]
    days = _parse_overrides(DaysConfig, [item for item in args.set if item not in world])
    synth = _parse_overrides(SynthConfig, world)
    days.update(drift_days(args.drift))
    for name, value in (("days", args.days), ("first_day", args.first_day)):
        if value is not None:
            days[name] = value
    if args.seed is not None:
        synth["seed"] = args.seed
    summary = generate_days(args.out, SynthConfig.preset(args.preset, **synth), DaysConfig(**days))
    print(json.dumps({"out": args.out, "days": summary["partitions"]}, indent=2))
    return 0


def _ingest(args: argparse.Namespace) -> int:
    check_output(args.out, inputs=[] if is_uri(args.raw) else [args.raw], overwrite=args.overwrite)
    overrides = _parse_overrides(IngestConfig, args.set)
    flags = {"label_mode": args.label_mode, "split": args.split, "valid_mode": args.valid_mode,
             "dedupe": args.dedupe, "seed": args.seed, "as_of": args.as_of,
             "window_days": args.window_days}
    overrides.update({k: v for k, v in flags.items() if v is not None})
    config = IngestConfig(**overrides)
    if args.engine == "spark":
        config.validate()  # before the JVM starts
        # lazy: pyspark is the optional extra `spark`
        from grmodel.data.spark.kuairec import ingest_kuairec_spark

        manifest = ingest_kuairec_spark(args.raw, args.out, config, _spark(args), args.layout,
                                        args.exact_distinct_max)
    else:
        manifest = ingest_kuairec(args.raw, args.out, config)
    _print_summary(args.out, manifest)
    return 0


def _tabular(args: argparse.Namespace) -> int:
    spec = TabularSpec.from_yaml(args.spec)
    # A URI source cannot overlap a local output; only local inputs are compared.
    inputs = [p for p in (args.spec, spec.source_path) if not is_uri(p)]
    check_output(args.out, inputs=inputs, overwrite=args.overwrite)
    if args.engine == "spark":
        # lazy: pyspark is the optional extra `spark`
        from grmodel.data.spark.tabular import build_tabular_spark

        _print_summary(args.out, build_tabular_spark(spec, args.out, _spark(args), args.layout,
                                                     args.exact_distinct_max))
    else:
        _print_summary(args.out, build_tabular(spec, args.out))
    return 0


def _version(args: argparse.Namespace) -> int:
    version = (versioning.require_version(args.repo) if args.check
               else versioning.current_data_version(args.repo))
    print(version)
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    version = versioning.snapshot(args.repo, push=not args.no_push)
    print(version)
    print(f"now commit it: git add {versioning.DVC_FILE} .gitignore && git commit -m"
          f" 'data: {version}'", file=sys.stderr)
    return 0


def _ensure(args: argparse.Namespace) -> int:
    outcome = versioning.ensure_data(args.repo, force=args.force)
    print(f"{versioning.DATA_DIR}/ is data version {versioning.current_data_version(args.repo)}"
          f" ({outcome})")
    return 0


def _print_summary(out: str, manifest: dict[str, Any]) -> None:
    summary = {"out": out, "rows": manifest["splits"]["rows"],
               "label": {k: manifest["label"][k] for k in ("mode", "unit")},
               "fields": len(manifest["features"]["fields"]),
               "oracle": manifest["oracle"]["present"]}
    if manifest["splits"].get("dropped_rows"):  # never silently: the count, as the manifest has it
        summary["dropped_rows"] = manifest["splits"]["dropped_rows"]
    print(json.dumps(summary, indent=2))


def _parse_overrides(config_type: type, items: list[str]) -> dict[str, Any]:
    """``field=value`` strings -> a dict of typed values for ``config_type``'s fields."""
    hints = typing.get_type_hints(config_type)
    names = {f.name for f in dataclasses.fields(config_type)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in names:
            raise DataSpecError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of"
                                f" {sorted(names)}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out[key] = _coerce(key, hints[key], value)
    return out


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Check a parsed value against a field's annotation (int, float, bool, str, tuples of
    str, literals, optionals)."""
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if (origin is typing.Literal and value in args
            or hint is int and number and isinstance(value, int)
            or hint is bool and isinstance(value, bool)):
        return value
    if origin is typing.Literal:
        raise DataSpecError(f"--set {key}={value!r}: expected one of {list(args)}")
    if hint is float and number:
        return float(value)
    if hint is str and not isinstance(value, list | dict):
        return str(value)
    if origin is tuple and isinstance(value, list | str):
        items = value.split(",") if isinstance(value, str) else value
        return tuple(str(v).strip() for v in items)
    raise DataSpecError(f"--set {key}={value!r}: expected {getattr(hint, '__name__', hint)}")
