"""Token vocabularies for Generative Regression: dynamic quantile (Algorithm 1), manual, binary.

A vocabulary is a strictly descending list of positive integer token values in *scaled* label
units (labels are multiplied by ``label_scale`` and truncated, e.g. seconds -> milliseconds).
Token ids 0, 1, 2 are the specials ``<pad>``, ``<sos>``, ``<eos>`` (value 0); id ``i >= 3``
stands for ``values[i - 3]``. Every vocabulary built here contains the value 1, so every
scaled integer label is an exact sum of tokens (see ``_complete``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grmodel.atomic import write_json_atomic
from grmodel.config import VocabConfig, VocabKind
from grmodel.counted import median

PAD, SOS, EOS = 0, 1, 2
N_SPECIAL = 3
VOCAB_KINDS = typing.get_args(VocabKind)
FORMAT_VERSION = 1
# Scaled labels must stay exactly representable in float64 (and far from int64 overflow).
MAX_SCALED_LABEL = 2**52
# Relative slack of the truncation in ``scale``: 1.001 s * 1000 is 1000.9999999999999 in
# float64 and must still become 1001 ms, while real fractions of a unit are truncated.
_SCALE_REL_TOL = 1e-12
# auto_label_scale: one scaled unit <= median positive label / 10**4, as a power of ten in
# [1e-6, 1e6].
AUTO_RESOLUTION_DIGITS = 1e4
AUTO_MIN_EXPONENT, AUTO_MAX_EXPONENT = -6, 6


class VocabularyError(ValueError):
    """A vocabulary that cannot be built, loaded or applied (names the rule that failed)."""


@dataclass(eq=False)  # holds arrays: compare fields explicitly
class Vocabulary:
    """Token values (scaled units, strictly descending) plus how they were made."""

    values: np.ndarray
    kind: str
    label_scale: float
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in VOCAB_KINDS:
            raise VocabularyError(f"vocabulary kind {self.kind!r}: must be one of {VOCAB_KINDS}")
        if not (math.isfinite(self.label_scale) and self.label_scale > 0):
            raise VocabularyError(f"label_scale={self.label_scale}: must be finite and > 0")
        values = np.asarray(self.values)
        if values.ndim != 1 or values.size == 0:
            raise VocabularyError("vocabulary values: need a non-empty 1-D list")
        if not np.issubdtype(values.dtype, np.number) or not np.all(np.isfinite(values)):
            raise VocabularyError("vocabulary values: must be finite numbers")
        if np.any(values != np.floor(values)) or values.min() < 1:
            raise VocabularyError("vocabulary values: must be positive integers (scaled units)")
        if np.any(np.diff(values) >= 0):
            raise VocabularyError("vocabulary values: must be strictly descending")
        self.values = values.astype(np.int64)
        self.label_scale = float(self.label_scale)

    @property
    def size(self) -> int:
        """Number of token ids, specials included."""
        return len(self.values) + N_SPECIAL

    def token_values(self) -> np.ndarray:
        """Value of every token id in scaled units (float64, specials are 0)."""
        return np.concatenate([np.zeros(N_SPECIAL), self.values.astype(np.float64)])

    def scale(self, labels: np.ndarray) -> np.ndarray:
        """Labels in original units -> int64 scaled units (see ``scale_labels``)."""
        return scale_labels(labels, self.label_scale)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "label_scale": self.label_scale,
            "values": [int(v) for v in self.values],
            "params": self.params,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Vocabulary:
        if not isinstance(raw, dict):
            raise VocabularyError("vocabulary record must be a mapping")
        missing = {"kind", "label_scale", "values"} - set(raw)
        if missing:
            raise VocabularyError(f"vocabulary record: missing keys {sorted(missing)}")
        version = raw.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise VocabularyError(f"vocabulary format_version {version}: expected {FORMAT_VERSION}")
        return cls(
            values=np.asarray(raw["values"]),
            kind=raw["kind"],
            label_scale=raw["label_scale"],
            params=dict(raw.get("params", {})),
        )

    def save(self, path: str | Path) -> None:
        """Write JSON atomically (temp file in the same directory, then rename)."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise VocabularyError(f"vocabulary file {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise VocabularyError(f"vocabulary file {path}: invalid JSON ({exc})") from None
        try:
            return cls.from_dict(raw)
        except VocabularyError as exc:
            raise VocabularyError(f"vocabulary file {path}: {exc}") from None


def scale_labels(labels: np.ndarray, label_scale: float) -> np.ndarray:
    """``floor(label * label_scale)`` as int64, for finite non-negative labels."""
    labels = np.asarray(labels, dtype=np.float64)
    bad = ~np.isfinite(labels)
    if bad.any():
        raise VocabularyError(f"labels must be finite: found {int(bad.sum())} NaN/inf values")
    if labels.size and labels.min() < 0:
        raise VocabularyError(
            f"labels must be non-negative: found {int((labels < 0).sum())} negative values "
            f"(min {labels.min():g})"
        )
    scaled = labels * label_scale
    if scaled.size and scaled.max() >= MAX_SCALED_LABEL:
        raise VocabularyError(
            f"labels must scale below 2**52 (label_scale={label_scale:g}): "
            f"max label {labels.max():g}"
        )
    return np.floor(scaled * (1.0 + _SCALE_REL_TOL)).astype(np.int64)


def auto_label_scale(train_labels: np.ndarray, counts: np.ndarray | None = None) -> float:
    """The label scale fitted on the training labels: a power of ten, so tokens stay readable.

    Fine enough that one scaled unit is at most 1e-4 of the median positive label (a relative
    resolution far below any MAE of interest), and no finer than the labels' own decimal
    precision (integer milliseconds get 1, dollars with cents 100, seconds with millisecond
    precision 1000: the paper's x1000 on KuaiRec). Fractions in [0, 1] get 1e5 or so.
    ``counts``: ``train_labels`` are distinct values, each standing for that many labels.
    """
    labels = np.asarray(train_labels, dtype=np.float64).ravel()
    counts = np.ones(labels.size, np.int64) if counts is None else np.asarray(counts).ravel()
    keep = np.isfinite(labels) & (labels > 0)
    positive, weight = labels[keep], counts[keep]
    if positive.size == 0:
        raise VocabularyError(f"all {int(counts.sum())} training labels are 0 (or not finite): need"
                              " at least one positive label to fit the label scale")
    resolution = 10.0 ** math.ceil(math.log10(AUTO_RESOLUTION_DIGITS / median(positive, weight)))
    precision = next((10.0 ** k for k in range(AUTO_MIN_EXPONENT, AUTO_MAX_EXPONENT + 1)
                      if _integral(positive * 10.0 ** k)), 10.0 ** AUTO_MAX_EXPONENT)
    scale = min(resolution, precision)
    # Stay well inside float64's exact integers for the largest label.
    while scale > 10.0 ** AUTO_MIN_EXPONENT and positive.max() * scale >= MAX_SCALED_LABEL / 1024:
        scale /= 10.0
    return float(scale)


def _integral(values: np.ndarray) -> bool:
    """Positive values that are whole numbers (>= 1), up to float rounding."""
    rounded = np.round(values)
    return bool(np.all(rounded >= 1) and np.all(np.abs(values - rounded) <= 1e-9 * rounded))


def build_vocabulary(train_labels: np.ndarray, config: VocabConfig) -> Vocabulary:
    """Build the vocabulary named by ``config.kind`` from training labels (original units)."""
    _check_config(config)
    return build_vocabulary_from_counts(*count_labels(train_labels), config)


def count_labels(train_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training labels (original units) as distinct values, ascending, and how often each
    occurs: what the counts forms here and of GR's label state fit on. Raises
    ``VocabularyError`` for no labels, or labels that are negative or not finite."""
    labels = np.asarray(train_labels, dtype=np.float64).ravel()
    if labels.size == 0:
        raise VocabularyError("training labels are empty: need at least one label")
    if not np.isfinite(labels).all() or labels.min() < 0:
        scale_labels(labels, 1.0)  # raises, counting the bad labels themselves
    return np.unique(labels, return_counts=True)


def build_vocabulary_from_counts(values: np.ndarray, counts: np.ndarray, config: VocabConfig
                                 ) -> Vocabulary:
    """:func:`build_vocabulary` of the training labels given as distinct ``values`` and how
    often each occurs: the same vocabulary, from a table a distributed engine can count."""
    _check_config(config)
    values = np.asarray(values, dtype=np.float64).ravel()
    counts = np.asarray(counts, dtype=np.int64).ravel()
    n = int(counts.sum())
    if n == 0:
        raise VocabularyError("training labels are empty: need at least one label")
    label_scale = (config.label_scale if config.label_scale is not None
                   else auto_label_scale(values, counts))
    scaled_values, at = np.unique(scale_labels(values, label_scale), return_inverse=True)
    scaled_counts = np.bincount(at.ravel(), weights=counts, minlength=scaled_values.size
                                ).astype(np.int64)
    max_scaled = int(scaled_values.max())
    if max_scaled == 0:
        raise VocabularyError(
            f"all {n} training labels scale to 0 (label_scale={label_scale:g}): "
            "need at least one positive scaled label"
        )
    params: dict[str, Any] = {
        "config": dataclasses.asdict(config),
        "n_train_labels": n,
        "max_train_label": float(values.max()),
        "max_train_label_scaled": max_scaled,
        "label_scale_fitted": config.label_scale is None,
        "zero_share": float(scaled_counts[scaled_values == 0].sum() / n),
    }
    if config.kind == "dynamic_quantile":
        # Zero labels are the empty sequence <sos><eos> and take no token: Algorithm 1 runs on
        # the positive labels, so a zero-inflated table gets the same token granularity as its
        # positive part (on all labels, >= 10% zeros stop it at its first zero quantile).
        positive = scaled_values > 0
        tokens, info = _dynamic_quantile_tokens(scaled_values[positive], scaled_counts[positive],
                                                config)
        if not tokens:
            raise VocabularyError(
                f"dynamic quantile vocabulary: the q_start={config.q_start} quantile of the "
                f"training labels is 0 (more than {1 - config.q_start:.4%} of them scale to 0); "
                "lower q_start or use kind=manual/binary"
            )
        values, params["appended_unit_token"] = _complete(tokens)
        params.update(info)
    elif config.kind == "manual":
        values = _grid_until_past(max_scaled, (1, 3, 5), 10)
    else:
        values = _grid_until_past(max_scaled, (1,), 2)
    return Vocabulary(
        values=np.asarray(values), kind=config.kind, label_scale=label_scale, params=params
    )


def _check_config(config: VocabConfig) -> None:
    rules = [
        (config.kind in VOCAB_KINDS, f"kind={config.kind!r}: must be one of {VOCAB_KINDS}"),
        (
            config.label_scale is None
            or (math.isfinite(config.label_scale) and config.label_scale > 0),
            f"label_scale={config.label_scale}: must be finite and > 0 (or null: fitted)",
        ),
        (
            0 < config.q_end <= config.q_start <= 1,
            f"q_start={config.q_start}, q_end={config.q_end}: need 0 < q_end <= q_start <= 1",
        ),
        (0 < config.decay <= 1, f"decay={config.decay}: must be in (0, 1]"),
        (config.eps >= 0, f"eps={config.eps}: must be >= 0"),
        (config.max_iterations >= 1, f"max_iterations={config.max_iterations}: must be >= 1"),
    ]
    for ok, message in rules:
        if not ok:
            raise VocabularyError(f"vocab config {message}")


def _dynamic_quantile_tokens(
    label: np.ndarray, weight: np.ndarray, config: VocabConfig
) -> tuple[list[int], dict[str, Any]]:
    """Algorithm 1 of the paper, exactly, on the distinct label values weighted by their counts.

    Every copy of a label value has the same residual throughout, so the algorithm runs on the
    distinct values: the quantile becomes a weighted quantile and each iteration costs O(distinct
    values) instead of O(labels). The quantile is the inverted-CDF one (the ``ceil(n*q)``-th
    smallest residual, ``np.quantile(..., method="inverted_cdf")``): a real residual, so tokens
    stay integers.
    """
    # ``label``: the distinct scaled values, ascending; ``weight``: how many labels each is.
    residual = label.copy()
    # Zero labels have zero residuals; dividing those by 1 keeps them out of max(R / Y).
    denominator = np.maximum(label, 1)
    n = int(weight.sum())
    q, err, tokens = config.q_start, math.inf, []
    stop_reason = "error_below_eps"
    while err > config.eps:
        if len(tokens) == config.max_iterations:
            stop_reason = "max_iterations"
            break
        rank = min(max(math.ceil(n * q) - 1, 0), n - 1)
        o = int(residual[np.searchsorted(np.cumsum(weight), rank + 1)])
        if o == 0:
            stop_reason = "zero_quantile"
            break
        tokens.append(o)
        # Residuals are kept sorted: the ones >= o drop by o, giving two sorted runs that a
        # stable (merge-based) sort joins in linear time.
        cut = np.searchsorted(residual, o)
        residual[cut:] -= o
        order = np.argsort(residual, kind="stable")
        residual, weight, denominator = residual[order], weight[order], denominator[order]
        err = float(np.max(residual / denominator))
        q = max(q * config.decay, config.q_end)
    info = {
        "n_iterations": len(tokens),
        "stop_reason": stop_reason,
        "max_relative_residual": err if math.isfinite(err) else None,
        "n_distinct_train_labels": int(residual.size),
    }
    return tokens, info


def _complete(tokens: list[int]) -> tuple[list[int], bool]:
    """Deduplicate, sort descending and make sure the value 1 is a token.

    Algorithm 1 stops when the q_end-quantile of the residuals reaches 0, which can leave up to
    (1 - q_end) of the labels with a residual, and its smallest token need not be 1 (e.g. when
    every training label is a multiple of 1000). With 1 in the vocabulary, greedy encoding
    reproduces every scaled integer label exactly, including labels never seen in training;
    without it a label below the smallest token could not be represented at all. Greedy
    encoding only uses the unit token for what the larger tokens leave over.
    """
    values = sorted(set(tokens), reverse=True)
    appended = values[-1] != 1
    if appended:
        values.append(1)
    return values, appended


def _grid_until_past(max_scaled: int, mantissas: tuple[int, ...], base: int) -> list[int]:
    """``mantissas * base**k`` for k = 0, 1, ... up to the first value above the max, descending.

    Manual is (1, 3, 5) x 10**k and binary is 1 x 2**k (docs/method.md, Vocabularies; the
    paper's Table 3).
    """
    values: list[int] = []
    power = 1
    while not values or values[-1] <= max_scaled:
        values.extend(m * power for m in mantissas)
        power *= base
    first_past = next(i for i, v in enumerate(values) if v > max_scaled)
    return values[: first_past + 1][::-1]
