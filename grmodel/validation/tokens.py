"""The tokenised-label suite: every label encodes within ``max_len`` tokens of the vocabulary and
decodes back; ``token_frame`` builds the rows it checks and ``validate_tokens`` runs it."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from grmodel.codec import EncodedLabels, LabelCodec
from grmodel.validation.checks import (
    TableSuite,
    between,
    in_set,
    non_negative_finite,
    not_null,
)
from grmodel.validation.gx import make_report, run_suite
from grmodel.validation.report import ValidationReport
from grmodel.validation.tables import typed_table
from grmodel.vocab import EOS, SOS, Vocabulary


@dataclass(frozen=True)
class TokenBounds:
    """Bounds of the tokenised-label suite."""

    rtol: float = 1e-3  # decoded sequence vs the scaled label

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def tokens_suite(vocab_size: int, max_len: int, bounds: TokenBounds) -> TableSuite:
    """One row per label sequence: columns built by :func:`token_frame`."""
    samples = ("label", "decoded")
    checks = (
        not_null("label"),
        non_negative_finite("label"),
        between("length", 0, max_len, f"at most max_len={max_len} tokens per label", samples),
        between("min_token", 0, None, "token ids >= 0"),
        between("max_token", 0, vocab_size - 1,
                f"token ids within the vocabulary [0, {vocab_size})", ("label",)),
        in_set("first_token", (SOS,), "every sequence starts with <sos>"),
        in_set("eos_after_tokens", (1,), "<eos> follows the value tokens", ("label", "length")),
        between("relative_error", 0, bounds.rtol,
                f"decoded value within {bounds.rtol:.1%} of the scaled label", samples),
    )
    return TableSuite("tokens", {"label": "float"}, checks)



def token_frame(
    labels: np.ndarray, vocab: Vocabulary, encoded: EncodedLabels | None = None
) -> pd.DataFrame:
    """One row per label sequence with what the token checks look at.

    Without ``encoded`` the labels are encoded here, one row per distinct scaled label (the
    sequence depends only on it); with ``encoded`` (a ``grmodel.codec.EncodedLabels`` for
    these labels) those sequences are checked as given.
    """
    codec = LabelCodec(vocab)
    labels = np.asarray(labels, dtype=np.float64).ravel()
    valid = np.isfinite(labels) & (labels >= 0)
    if encoded is None:
        # Invalid labels cannot be encoded: they stay as rows for the label checks.
        _, first = np.unique(vocab.scale(labels[valid]), return_index=True)
        labels = np.concatenate([labels[valid][first], labels[~valid]])
        rows = np.arange(first.size)
        encoded = codec.encode(labels[rows])
        seq, length = np.asarray(encoded.sequences), np.asarray(encoded.lengths)
    else:
        if len(encoded.sequences) != labels.size or len(encoded.lengths) != labels.size:
            raise ValueError(
                f"encoded labels: {len(encoded.sequences)} sequences for {labels.size} labels"
            )
        rows = np.flatnonzero(valid)
        seq = np.asarray(encoded.sequences)[rows]
        length = np.asarray(encoded.lengths)[rows]
    width = seq.shape[1]
    in_vocab = (seq.min(axis=1) >= 0) & (seq.max(axis=1) < vocab.size)
    decoded = np.full(rows.size, np.nan)
    decoded[in_vocab] = codec.decode(seq[in_vocab])
    scaled = vocab.scale(labels[rows]).astype(np.float64)
    eos_at = np.clip(length + 1, 0, width - 1)

    def per_label(values: np.ndarray, integer: bool = False) -> Any:
        out = np.full(labels.size, np.nan)
        out[rows] = values
        return pd.array(out, dtype="Int64") if integer else out

    frame = pd.DataFrame({
        "label": labels,
        "length": per_label(length, integer=True),
        "min_token": per_label(seq.min(axis=1), integer=True),
        "max_token": per_label(seq.max(axis=1), integer=True),
        "first_token": per_label(seq[:, 0], integer=True),
        "eos_after_tokens": per_label(
            (length + 1 < width) & (seq[np.arange(rows.size), eos_at] == EOS), integer=True
        ),
        "decoded": per_label(decoded),
        "relative_error": per_label(
            np.abs(decoded * vocab.label_scale - scaled) / np.maximum(scaled, 1.0)
        ),
    })
    return frame


def validate_tokens(
    labels: np.ndarray,
    vocab: Vocabulary,
    max_len: int,
    encoded: EncodedLabels | None = None,
    bounds: TokenBounds | None = None,
    source: str = "<labels>",
) -> ValidationReport:
    """Check that labels tokenise within ``max_len`` tokens of ``vocab`` and decode back within
    ``bounds.rtol`` of their scaled value (``vocab`` is a ``grmodel.vocab.Vocabulary``)."""
    started = time.perf_counter()
    bounds = bounds or TokenBounds()
    suite = tokens_suite(vocab.size, max_len, bounds)
    table = typed_table(suite.name, None, token_frame(labels, vocab, encoded), suite.columns)
    results = run_suite(table, suite)
    params = {**bounds.to_dict(), "max_len": max_len, "vocab_size": vocab.size,
              "vocab_kind": vocab.kind, "label_scale": vocab.label_scale,
              "rows": "given sequences" if encoded is not None else "distinct scaled labels"}
    return make_report("tokens", source, params, [table.info()], results, started)

