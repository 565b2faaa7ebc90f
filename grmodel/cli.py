"""grmodel: train, evaluate and ship Generative Regression (GR) watch-time models.

Each command group lives beside the logic it drives and registers itself here through a
``register(subparsers)`` function; this module only assembles them. Heavy imports happen
inside the command handlers so that ``grmodel --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from grmodel import __version__

# Modules that define a ``register(subparsers)`` function, in the order --help lists them.
COMMAND_MODULES = (
    "grmodel.commands",
    "grmodel.data.commands",
    "grmodel.validation.commands",
    "grmodel.versioning_commands",
    "grmodel.experiment_commands",
    "grmodel.registry_commands",
    "grmodel.pipeline.commands",
)


class CommandError(RuntimeError):
    """An expected failure: printed as one clear message, exit status 1 (no traceback)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grmodel", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"grmodel {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except (CommandError, ValueError, FileNotFoundError) as exc:
        # Library errors (DatasetError, ConfigError, ...) are ValueErrors with a full message;
        # --verbose keeps the traceback for debugging.
        if args.verbose:
            raise
        print(f"grmodel {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
