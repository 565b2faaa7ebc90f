"""``grmodel validate raw|processed|tokens``: run a suite, write the reports, gate on failure.

Exit status 0 when every error-severity check passed (warnings are printed), 1 on a failed
check, with the one-paragraph summary naming the worst failures on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from grmodel.cli import CommandError
from grmodel.codec import LabelCodec
from grmodel.config import VocabConfig
from grmodel.features import LABEL_COLUMN, DatasetError, label_array, read_split
from grmodel.locate import dataset_dir
from grmodel.outputs import claim_directory
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
    p.add_argument("--max-len", type=int, default=None,
                   help="maximum decode length in value tokens (default: the longest train"
                        " sequence, as the model derives it)")
    p.set_defaults(handler=_tokens)


def _bounds(cls: type, settings: list[str]) -> Any:
    """A bounds dataclass with ``name=value`` changes (values are JSON; lists become tuples)."""
    names = {f.name for f in dataclasses.fields(cls)}
    changes = {}
    for item in settings:
        name, sep, text = item.partition("=")
        if not sep or name not in names:
            raise CommandError(f"--set {item!r}: expected NAME=VALUE with NAME in {sorted(names)}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        changes[name] = tuple(value) if isinstance(value, list) else value
    return cls(**changes)


def _claim(args: argparse.Namespace) -> None:
    """--out may not hold files grmodel did not write, nor overlap the input."""
    claim_directory(args.out, inputs=[args.input, getattr(args, "vocab", None)],
                    overwrite=args.overwrite)


def _finish(report: Any, out: str) -> int:
    paths = report.write(out)
    stream = sys.stdout if report.success else sys.stderr
    print(report.summary(), file=stream)
    print(f"reports: {paths['json']}, {paths['md']}, {paths['html']}", file=sys.stdout)
    return 0 if report.success else 1


def _raw(args: argparse.Namespace) -> int:
    _claim(args)
    return _finish(validate_raw_kuairec(args.input, _bounds(RawBounds, args.settings)), args.out)


def _processed(args: argparse.Namespace) -> int:
    _claim(args)
    bounds = _bounds(ProcessedBounds, args.settings)
    return _finish(validate_processed(dataset_dir(args.input), bounds), args.out)


def _labels(processed_dir: str, split: str) -> Any:
    """A split's label column as float64, unchecked (the token suite checks the values)."""
    frame = read_split(processed_dir, split)
    if LABEL_COLUMN not in frame.columns:
        raise DatasetError(f"{processed_dir}/{split}.parquet: no {LABEL_COLUMN!r} column")
    return frame[LABEL_COLUMN].to_numpy(dtype="float64")


def _tokens(args: argparse.Namespace) -> int:
    _claim(args)
    train_source = f"{args.input}/train.parquet"
    train = label_array(read_split(args.input, "train"), source=train_source)
    vocab = Vocabulary.load(args.vocab) if args.vocab else build_vocabulary(train, VocabConfig())
    max_len = args.max_len or LabelCodec(vocab).max_decode_len(train)
    report = validate_tokens(
        _labels(args.input, args.split), vocab, max_len,
        bounds=_bounds(TokenBounds, args.settings),
        source=str(Path(args.input) / f"{args.split}.parquet"),
    )
    return _finish(report, args.out)
