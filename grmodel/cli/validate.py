"""``grmodel validate raw|processed|tokens``: run a suite, write the reports, gate on failure.

Exit status 0 when every error-severity check passed (warnings are printed), 1 on a failed
check, with the one-paragraph summary naming the worst failures on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import typing
from pathlib import Path
from typing import Any

from grmodel.cli import CommandError, whole_number
from grmodel.codec import LabelCodec
from grmodel.config import VocabConfig
from grmodel.features import LABEL_COLUMN, DatasetError, label_array, read_split
from grmodel.locate import dataset_dir
from grmodel.outputs import check_output, claim_directory, output_lock
from grmodel.validation import (
    ProcessedBounds,
    RawBounds,
    TokenBounds,
    validate_processed,
    validate_raw_kuairec,
    validate_tokens,
)
from grmodel.vocab import Vocabulary, build_vocabulary


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate", help="validate raw KuaiRec files, a processed dataset or tokenised labels"
    )
    targets = parser.add_subparsers(dest="target", required=True)

    def target(name: str, help_text: str, input_help: str) -> argparse.ArgumentParser:
        p = targets.add_parser(name, help=help_text)
        p.add_argument("--input", required=True, help=input_help)
        p.add_argument("--out", required=True, help="directory for validation.{json,md,html}")
        p.add_argument("--overwrite", action="store_true",
                       help="replace the reports of an earlier validation in --out")
        p.add_argument(
            "--set", action="append", default=[], metavar="NAME=VALUE", dest="settings",
            help="change a bound of the suite, e.g. big_rows=[100,200] (JSON values)",
        )
        return p

    p = target("raw", "the raw KuaiRec CSV files", "raw directory (big_matrix.csv, ...)")
    p.set_defaults(handler=_raw)
    p = target("processed", "a processed dataset", "processed dataset directory")
    p.set_defaults(handler=_processed)
    p = target("tokens", "tokenised labels of a processed split", "processed dataset directory")
    p.add_argument("--split", default="train", help="split whose labels are checked")
    p.add_argument("--vocab", default=None,
                   help="vocabulary JSON (default: built from the train labels, default config)")
    p.add_argument("--max-len", type=whole_number(1, what="the decode length"), default=None,
                   help="maximum decode length in value tokens (default: the longest train"
                        " sequence, as the model derives it)")
    p.set_defaults(handler=_tokens)


def _bounds(cls: type, settings: list[str]) -> Any:
    """A bounds dataclass with ``name=value`` changes (values are JSON; lists become tuples),
    each checked against its field's type before any work."""
    names = {f.name for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    changes = {}
    for item in settings:
        name, sep, text = item.partition("=")
        if not sep or name not in names:
            raise CommandError(f"--set {item!r}: expected NAME=VALUE with NAME in {sorted(names)}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        changes[name] = _bound(name, hints[name], value)
    return cls(**changes)


def _bound(name: str, hint: Any, value: Any) -> Any:
    """``value`` as a bound of type ``hint``: numbers finite and >= 0, a (low, high) pair of two
    numbers with low <= high, a tuple of its item type, or text."""
    def number(x: Any, kind: type) -> bool:
        return (isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
                and x >= 0 and (kind is float or float(x).is_integer()))

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and len(args) == 2 and args[1] is not Ellipsis:
        if (not isinstance(value, list) or len(value) != 2
                or not all(number(x, args[0]) for x in value) or value[0] > value[1]):
            raise CommandError(f"--set {name}={json.dumps(value)}: expected [low, high] (rule: two"
                               f" finite {args[0].__name__}s >= 0, low <= high)")
        return tuple(args[0](x) for x in value)
    if origin is tuple:
        if not isinstance(value, list) or not all(
                isinstance(x, args[0]) and not isinstance(x, bool) for x in value):
            raise CommandError(f"--set {name}={json.dumps(value)}: expected a JSON list of"
                               f" {args[0].__name__} (rule: the bound's type)")
        return tuple(value)
    if hint in (int, float):
        if not number(value, hint):
            raise CommandError(f"--set {name}={json.dumps(value)}: expected a finite"
                               f" {hint.__name__} >= 0 (rule: the bound's type)")
        return hint(value)
    if not isinstance(value, str):
        raise CommandError(f"--set {name}={json.dumps(value)}: expected text (rule: the bound's"
                           " type)")
    return value


def _inputs(args: argparse.Namespace) -> list[str | None]:
    return [args.input, getattr(args, "vocab", None)]


def _check(args: argparse.Namespace) -> None:
    """Before any work: --out may not hold files grmodel did not write, nor overlap the input.
    Nothing is created yet, so a run that fails before its reports leaves no --out behind."""
    check_output(args.out, inputs=_inputs(args), overwrite=args.overwrite, replaces=False)


def _finish(report: Any, args: argparse.Namespace) -> int:
    claim_directory(args.out, inputs=_inputs(args), overwrite=args.overwrite)
    paths = report.write(args.out)
    stream = sys.stdout if report.success else sys.stderr
    print(report.summary(), file=stream)
    print(f"reports: {paths['json']}, {paths['md']}, {paths['html']}", file=sys.stdout)
    return 0 if report.success else 1


def _raw(args: argparse.Namespace) -> int:
    bounds = _bounds(RawBounds, args.settings)
    with output_lock(args.out):
        _check(args)
        return _finish(validate_raw_kuairec(args.input, bounds), args)


def _processed(args: argparse.Namespace) -> int:
    bounds = _bounds(ProcessedBounds, args.settings)
    with output_lock(args.out):
        _check(args)
        return _finish(validate_processed(dataset_dir(args.input), bounds), args)


def _labels(processed_dir: str, split: str) -> Any:
    """A split's label column as float64, unchecked (the token suite checks the values)."""
    frame = read_split(processed_dir, split)
    if LABEL_COLUMN not in frame.columns:
        raise DatasetError(f"{processed_dir}/{split}.parquet: no {LABEL_COLUMN!r} column")
    return frame[LABEL_COLUMN].to_numpy(dtype="float64")


def _tokens(args: argparse.Namespace) -> int:
    bounds = _bounds(TokenBounds, args.settings)
    with output_lock(args.out):
        _check(args)
        return _finish(_token_report(args, bounds), args)


def _token_report(args: argparse.Namespace, bounds: TokenBounds) -> Any:
    train_source = f"{args.input}/train.parquet"
    train = label_array(read_split(args.input, "train"), source=train_source)
    vocab = Vocabulary.load(args.vocab) if args.vocab else build_vocabulary(train, VocabConfig())
    max_len = args.max_len or LabelCodec(vocab).max_decode_len(train)
    return validate_tokens(
        _labels(args.input, args.split), vocab, max_len, bounds=bounds,
        source=str(Path(args.input) / f"{args.split}.parquet"),
    )
