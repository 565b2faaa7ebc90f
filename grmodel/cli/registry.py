"""``grmodel registry``: register a run's model, run the promotion gate, show the history.

The tracking server comes from ``--tracking-uri`` or, as for every MLflow tool, the
``MLFLOW_TRACKING_URI`` environment variable; with neither, the command stops before MLflow
runs (which would create a stray ``./mlflow.db``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from grmodel.cli import required_tracking_uri
from grmodel.registry import (
    CHAMPION,
    PromotionPolicy,
    alias_version,
    format_history,
    gate,
    history,
    register_model,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("registry", help="MLflow model registry: register, promote, history")
    commands = group.add_subparsers(dest="registry_command", required=True)

    p = commands.add_parser("register", help="register a run's model as a new challenger version")
    _common(p)
    p.add_argument("--run-id", required=True, help="MLflow run that logged the model")
    p.add_argument("--artifact", default="gr", help="the logged model's name in that run")
    p.set_defaults(handler=_register)

    p = commands.add_parser(
        "promote", help="run the promotion gate: move 'champion' to a version if it passes"
    )
    _common(p)
    p.add_argument("--version", required=True, help="the challenger version")
    p.add_argument("--data", required=True, help="processed dataset (its test split is used)")
    p.add_argument("--metrics", default=None,
                   help="this run's metrics JSON (`grmodel evaluate --out`) holding the baselines")
    p.add_argument("--min-mae-improvement", type=float, default=None,
                   help="relative MAE gain required over the champion (default 0.01)")
    p.add_argument("--max-xauc-drop", type=float, default=None,
                   help="largest XAUC loss tolerated (default 0.005)")
    p.add_argument("--baselines", default=None,
                   help="comma-separated baselines the challenger must beat (default cread,tpm;"
                        " '' for none)")
    p.set_defaults(handler=_promote)

    p = commands.add_parser("history", help="every gate decision: which version was champion when, why")
    _common(p)
    p.add_argument("--json", action="store_true", help="print the decisions as JSON")
    p.set_defaults(handler=_history)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="registered model name")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")


def _tracking_uri(args: argparse.Namespace) -> str:
    return required_tracking_uri(args.tracking_uri)


def _register(args: argparse.Namespace) -> int:
    version = register_model(args.name, args.run_id, args.artifact, _tracking_uri(args))
    print(f"{args.name} version {version.version} (run {args.run_id}) is the challenger")
    return 0


def _promote(args: argparse.Namespace) -> int:
    defaults = PromotionPolicy()
    policy = PromotionPolicy(
        min_mae_rel_improvement=(defaults.min_mae_rel_improvement if args.min_mae_improvement is None
                                 else args.min_mae_improvement),
        max_xauc_drop=defaults.max_xauc_drop if args.max_xauc_drop is None else args.max_xauc_drop,
        require_beats_baselines=(defaults.require_beats_baselines if args.baselines is None
                                 else tuple(b for b in args.baselines.split(",") if b)),
    )
    baselines = {}
    if args.metrics:
        path = Path(args.metrics)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: metrics file not found")
        baselines = json.loads(path.read_text())
    decision = gate(args.name, args.version, args.data, baselines=baselines, policy=policy,
                    tracking_uri=_tracking_uri(args))
    print(format_history([decision]))
    after = f"v{decision.champion_after}" if decision.champion_after else "none"
    print(f"\n{args.name} v{decision.challenger_version}: {decision.verdict}; champion: {after}")
    return 0


def _history(args: argparse.Namespace) -> int:
    uri = _tracking_uri(args)
    champion = alias_version(args.name, CHAMPION, uri)  # fails if no such model
    decisions = history(args.name, uri)
    if args.json:
        print(json.dumps([json.loads(d.to_json()) for d in decisions], indent=2))
        return 0
    print(format_history(decisions))
    print(f"\ncurrent champion: {'v' + champion if champion else 'none'}")
    return 0
