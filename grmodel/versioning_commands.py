"""``grmodel data version | snapshot | ensure`` and ``grmodel reproduce RUN_ID``.

The ``data`` group belongs to grmodel/data/commands.py, which calls
:func:`add_version_commands` with its subparsers; ``reproduce`` registers itself through
:func:`register` like every top-level command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_version_commands(data_commands: argparse._SubParsersAction) -> None:
    p = data_commands.add_parser("version", help="print the data version in use (data.dvc)")
    _repo_argument(p)
    p.add_argument("--check", action="store_true",
                   help="also fail unless data/ is exactly that version")
    p.set_defaults(handler=_version)

    p = data_commands.add_parser(
        "snapshot", help="record data/ as a new data version (dvc add + push)")
    _repo_argument(p)
    p.add_argument("--no-push", action="store_true", help="add to the local DVC cache only")
    p.set_defaults(handler=_snapshot)

    p = data_commands.add_parser(
        "ensure", help="obtain the recorded data version: dvc pull, else regenerate and verify")
    _repo_argument(p)
    p.add_argument("--force", action="store_true",
                   help="discard changes in data/ that no data version records")
    p.set_defaults(handler=_ensure)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reproduce", help="re-run a recorded run on its data version and compare every metric")
    p.add_argument("run", metavar="RUN_ID", help="an MLflow run id, or a run_record.json file")
    _repo_argument(p)
    p.add_argument("--workdir", default=None,
                   help="where the re-run writes (default runs/reproduce/<RUN_ID>)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or MLflow's own)")
    p.set_defaults(handler=_reproduce)


def _repo_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default=".", help="repository root holding data.dvc")


def _version(args: argparse.Namespace) -> int:
    from grmodel import versioning

    version = (versioning.require_version(args.repo) if args.check
               else versioning.current_data_version(args.repo))
    print(version)
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    from grmodel import versioning

    version = versioning.snapshot(args.repo, push=not args.no_push)
    print(version)
    print(f"now commit it: git add {versioning.DVC_FILE} .gitignore && git commit -m"
          f" 'data: {version}'", file=sys.stderr)
    return 0


def _ensure(args: argparse.Namespace) -> int:
    from grmodel import versioning

    outcome = versioning.ensure_data(args.repo, force=args.force)
    print(f"{versioning.DATA_DIR}/ is data version {versioning.current_data_version(args.repo)}"
          f" ({outcome})")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from grmodel.reproduce import format_report, load_record, reproduce

    record = load_record(args.run, args.tracking_uri)
    workdir = Path(args.workdir or Path("runs") / "reproduce" / Path(args.run).stem)
    result = reproduce(record, args.repo, workdir)
    print(format_report(result))
    return 0 if result.all_match else 1
