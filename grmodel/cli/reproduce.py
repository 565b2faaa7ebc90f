"""``grmodel reproduce RUN_ID``: re-run a recorded run on its data version, compare every metric."""

from __future__ import annotations

import argparse
from pathlib import Path

from grmodel.cli import required_tracking_uri
from grmodel.reproduce import format_report, is_record_file, load_record, reproduce


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reproduce", help="re-run a recorded run on its data version and compare every metric")
    p.add_argument("run", metavar="RUN_ID", help="an MLflow run id, or a run_record.json file")
    p.add_argument("--repo", default=".", help="repository root holding data.dvc")
    p.add_argument("--workdir", default=None,
                   help="where the re-run writes (default runs/reproduce/<RUN_ID>)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI of a RUN_ID (default: $MLFLOW_TRACKING_URI)")
    p.set_defaults(handler=_reproduce)


def _reproduce(args: argparse.Namespace) -> int:
    # A run id is read from MLflow, whose default store would leave a ./mlflow.db behind.
    uri = None if is_record_file(args.run) else required_tracking_uri(args.tracking_uri)
    record = load_record(args.run, uri)
    workdir = Path(args.workdir or Path("runs") / "reproduce" / Path(args.run).stem)
    result = reproduce(record, args.repo, workdir)
    print(format_report(result))
    return 0 if result.all_match else 1
