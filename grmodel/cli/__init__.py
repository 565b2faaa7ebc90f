"""grmodel: train, evaluate and ship Generative Regression (GR) watch-time models.

``COMMANDS`` is the command table: each top-level command, the module of its command group and
its one-line help. A group module defines ``register(subparsers)``, which adds its commands.
Only the module of the command being run is imported (the others appear in ``--help`` by their
one-line help), so a module imports what its handlers need at the top and ``grmodel --help``
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from grmodel import __version__


class CommandError(RuntimeError):
    """An expected failure: printed as one clear message, exit status 1 (no traceback)."""


# Libraries whose INFO lines are chatter to a user ("Skipping registering function ...",
# "Creating initial MLflow database tables"); their warnings still show, everything with -v.
QUIET_LOGGERS = ("great_expectations", "alembic", "kfp", "mlflow")


# command: (module of its group, help), in the order --help lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("grmodel.cli.train", "train a model on a processed dataset"),
    "predict": ("grmodel.cli.train", "score a Parquet file with a trained model"),
    "evaluate": ("grmodel.cli.train", "score model directories on the test split"),
    "data": ("grmodel.cli.data", "generate, ingest, build and version datasets"),
    "validate": ("grmodel.cli.validate",
                 "validate raw KuaiRec files, a processed dataset or tokenised labels"),
    "experiment": ("grmodel.cli.experiment",
                   "train, evaluate and report one of the paper's tables or the robustness suite"),
    "registry": ("grmodel.cli.registry", "MLflow model registry: register, promote, history"),
    "reproduce": ("grmodel.cli.reproduce",
                  "re-run a recorded run on its data version and compare every metric"),
    "pipeline": ("grmodel.cli.pipeline", "the Kubeflow pipeline: compile, run, submit, schedule"),
    "main": ("grmodel.cli.pipeline",
             "the main job: the whole pipeline locally (kfp.local) on the embedded default"),
}


def _quiet(record: logging.LogRecord) -> bool:
    # A handler filter, not logger levels: some libraries set their loggers' levels on import.
    return record.levelno >= logging.WARNING or record.name.split(".")[0] not in QUIET_LOGGERS


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser. With ``command`` (the word after ``grmodel``), only that command's group is
    imported and registered, the others are listed by their help; without, all are."""
    parser = argparse.ArgumentParser(prog="grmodel", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"grmodel {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    groups = {module for module, _ in COMMANDS.values()}
    if command is not None:
        groups = {COMMANDS[command][0]} if command in COMMANDS else set()
    for name, (module, help_text) in COMMANDS.items():
        if name in subparsers.choices:
            continue
        if module in groups:
            importlib.import_module(module).register(subparsers)
        else:
            subparsers.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((arg for arg in argv if not arg.startswith("-")), "")
    parser = build_parser(command)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_quiet)
    try:
        return int(args.handler(args) or 0)
    except (CommandError, ValueError, FileNotFoundError) as exc:
        # Library errors (DatasetError, ConfigError, ...) are ValueErrors with a full message;
        # --verbose keeps the traceback for debugging.
        if args.verbose:
            raise
        print(f"grmodel {args.command}: error: {exc}", file=sys.stderr)
        return 1
