"""``grmodel registry``: register a run's model, run the promotion gate, roll the champion back,
show the history.

The tracking server comes from ``--tracking-uri`` or, as for every MLflow tool, the
``MLFLOW_TRACKING_URI`` environment variable; with neither, the command stops before MLflow
runs (which would create a stray ``./mlflow.db``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from grmodel.cli import EXIT_ERROR, required_tracking_uri, whole_number
from grmodel.registry import (
    CHALLENGER,
    CHAMPION,
    PromotionPolicy,
    alias_moves,
    alias_version,
    check_metrics,
    decay_line,
    format_alias_moves,
    format_history,
    gate,
    history,
    register_model,
    rollback,
    unjudged_versions,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser(
        "registry", help="MLflow model registry: register, promote, rollback, history")
    commands = group.add_subparsers(dest="registry_command", required=True)

    p = commands.add_parser("register", help="register a run's model as a new challenger version")
    _common(p)
    p.add_argument("--run-id", required=True, help="MLflow run that logged the model")
    p.add_argument("--artifact", default="gr", help="the logged model's name in that run")
    p.set_defaults(handler=_register)

    p = commands.add_parser(
        "promote", help="run the promotion gate: move 'champion' to a version if it passes"
                        " (exit 1 when rejected)"
    )
    _common(p)
    p.add_argument("--version", required=True, type=_version_number("--version"),
                   help="the challenger version")
    p.add_argument("--data", required=True, help="processed dataset (its test split is used)")
    p.add_argument("--metrics", default=None,
                   help="this run's metrics JSON (`grmodel evaluate --out`) holding the baselines")
    defaults = PromotionPolicy()
    p.add_argument("--min-mae-improvement", type=float, default=None,
                   help="relative MAE gain required over the champion (default"
                        f" {defaults.min_mae_rel_improvement:g})")
    p.add_argument("--max-xauc-drop", type=float, default=None,
                   help=f"largest XAUC loss tolerated (default {defaults.max_xauc_drop:g})")
    p.add_argument("--max-champion-decay", type=float, default=None,
                   help="flag the champion when its MAE exceeds its MAE at promotion by more than"
                        f" this, relative (default {defaults.max_champion_decay:g}; never decides)")
    p.add_argument("--baselines", default=None,
                   help="comma-separated baselines the challenger must beat (default"
                        f" {','.join(defaults.require_beats_baselines)}; '' for none)")
    p.set_defaults(handler=_promote)

    p = commands.add_parser(
        "rollback", help="move 'champion' back to a former champion, saying why")
    _common(p)
    p.add_argument("--to", required=True, metavar="VERSION", type=_version_number("--to"),
                   help="the former champion's version")
    p.add_argument("--reason", required=True, help="why (recorded with who and when)")
    p.set_defaults(handler=_rollback)

    p = commands.add_parser("history", help="every gate decision, unjudged version and alias move:"
                                            " which version was champion when, who moved it, why")
    _common(p)
    p.add_argument("--json", action="store_true", help="print the history as JSON")
    p.set_defaults(handler=_history)


def _version_number(what: str) -> Callable[[str], str]:
    """An argparse ``type``: a registered model version, a whole number >= 1 (as MLflow's
    text), refused before MLflow is reached."""
    number = whole_number(1, what=f"{what} (a model version)")
    return lambda text: str(number(text))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="registered model name")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")


def _tracking_uri(args: argparse.Namespace) -> str:
    return required_tracking_uri(args.tracking_uri)


def _register(args: argparse.Namespace) -> int:
    version = register_model(args.name, args.run_id, args.artifact, _tracking_uri(args))
    print(f"{args.name} version {version.version} (run {args.run_id}, logged model"
          f" {args.artifact!r}) is the challenger")
    return 0


def _promote(args: argparse.Namespace) -> int:
    defaults = PromotionPolicy()

    def given(value: float | None, default: float) -> float:
        return default if value is None else value

    policy = PromotionPolicy(
        min_mae_rel_improvement=given(args.min_mae_improvement, defaults.min_mae_rel_improvement),
        max_xauc_drop=given(args.max_xauc_drop, defaults.max_xauc_drop),
        require_beats_baselines=(defaults.require_beats_baselines if args.baselines is None
                                 else tuple(b.strip() for b in args.baselines.split(",") if b.strip())),
        max_champion_decay=given(args.max_champion_decay, defaults.max_champion_decay),
    )
    baselines = read_metrics(args.metrics) if args.metrics else {}
    decision = gate(args.name, args.version, args.data, baselines=baselines, policy=policy,
                    tracking_uri=_tracking_uri(args))
    print(format_history([decision]))
    if decision.champion_decay:
        print(f"\n{decay_line(decision)}")
    after = f"v{decision.champion_after}" if decision.champion_after else "none"
    again = f" (decision {decision.number})" if decision.number > 1 else ""
    print(f"\n{args.name} v{decision.challenger_version}: {decision.verdict}{again}; champion: {after}")
    return 0 if decision.promoted else EXIT_ERROR


def read_metrics(path_text: str) -> dict:
    """A metrics file: a JSON object of baseline rows (grmodel.registry.check_metrics)."""
    path = Path(path_text)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metrics file not found")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}) (rule: the metrics file is JSON, as"
                         " `grmodel evaluate --out` writes)") from None
    return check_metrics(rows, str(path))


def _rollback(args: argparse.Namespace) -> int:
    move = rollback(args.name, args.to, args.reason, _tracking_uri(args))
    print(format_alias_moves([move]))
    print(f"\n{args.name}: champion v{move.from_version} → v{move.to_version} (rolled back by"
          f" {move.by})")
    return 0


def _history(args: argparse.Namespace) -> int:
    uri = _tracking_uri(args)
    champion = alias_version(args.name, CHAMPION, uri)  # fails if no such model
    challenger = alias_version(args.name, CHALLENGER, uri)
    decisions = history(args.name, uri)
    unjudged = unjudged_versions(args.name, uri)
    moves = alias_moves(args.name, uri)
    if args.json:
        print(json.dumps({
            "model": args.name, "champion": champion, "challenger": challenger,
            "decisions": [json.loads(d.to_json()) for d in decisions],
            "unjudged": unjudged,
            "alias_moves": [json.loads(m.to_json()) for m in moves],
        }, indent=2))
        return 0
    print(format_history(decisions, unjudged))
    print("\nalias moves:\n")
    print(format_alias_moves(moves) if moves else "(none recorded)")
    print(f"\ncurrent champion: {'v' + champion if champion else 'none'};"
          f" challenger: {'v' + challenger if challenger else 'none'}")
    return 0
