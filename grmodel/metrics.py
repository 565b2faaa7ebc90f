"""Evaluation metrics: MAE, exact XAUC in O(n log n), sampled XAUC, MAE per label interval, and
prediction-vs-label distributions (docs/method.md, Task and metrics; docs/baselines.md,
Evaluation protocol).

XAUC variants over all pairs of rows:
- ``reference`` (the default of the TPM and GR reference code): order rows by prediction,
  descending, ties keeping input order; XAUC = (pairs i < j in that order with
  label_i > label_j) / (n (n - 1) / 2). Label ties never count; prediction ties depend on input
  order.
- ``tie_aware``: pairs with equal labels are left out of numerator and denominator; a pair with
  distinct labels scores 1 if predictions order it like the labels, 1/2 if predictions tie.

Both count "descending pairs" of the label sequence read in prediction order with a bottom-up
merge sort, one vectorised sort per level (see ``_count_descending_pairs``).
"""

from __future__ import annotations

import math

import numpy as np

from grmodel.config import EvalConfig

XAUC_VARIANTS = ("reference", "tie_aware")
# How each variant is named wherever a figure is printed.
XAUC_NAMES = {"reference": "reference (label ties never count)",
              "tie_aware": "tie-aware (label-tied pairs left out, prediction ties count 1/2)"}
# Predictions are near-constant (a collapsed model) when their std is below this share of
# their mean, or when one value covers at least this share of the rows.
# Quantiles reported by ``distribution_summary``.
QUANTILE_LEVELS = (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)
# Smallest leaf of the merge sort (leaves hold 8 to 15 values, compared directly).
_MIN_LEAF = 8
_LEAVES_PER_CHUNK = 1 << 14
# Run width from which merging two sorted runs uses timsort rather than introsort.
_MERGE_SORT_WIDTH = 512


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error."""
    y_true, y_pred = _check_pair(y_true, y_pred, "mae", min_rows=1)
    return float(np.mean(np.abs(y_pred - y_true)))


def xauc(y_true: np.ndarray, y_pred: np.ndarray, variant: str = "reference") -> float:
    """Exact XAUC over all pairs (``variant``: "reference" or "tie_aware"; module docstring)."""
    y_true, y_pred = _check_pair(y_true, y_pred, "xauc", min_rows=2)
    return _xauc_variants(y_true, y_pred, (variant,))[variant]


def xauc_sampled(
    y_true: np.ndarray, y_pred: np.ndarray, n_pairs: int = 1_000_000, seed: int = 0
) -> float:
    """Tie-aware XAUC estimated on ``n_pairs`` uniformly drawn pairs of distinct rows.

    Pairs with equal labels are drawn but not scored, as in the exact tie-aware variant; NaN if
    every drawn pair has equal labels.
    """
    y_true, y_pred = _check_pair(y_true, y_pred, "xauc_sampled", min_rows=2)
    if n_pairs < 1:
        raise ValueError(f"xauc_sampled: n_pairs={n_pairs} must be >= 1")
    n = y_true.size
    rng = np.random.default_rng(seed)
    first = rng.integers(0, n, n_pairs)
    second = (first + rng.integers(1, n, n_pairs)) % n  # uniform over the other rows
    label_order = np.sign(y_true[first] - y_true[second])
    pred_order = np.sign(y_pred[first] - y_pred[second])
    scored = label_order != 0
    if not scored.any():
        return math.nan
    score = np.where(pred_order == 0, 0.5, (pred_order == label_order).astype(np.float64))
    return float(score[scored].mean())


def interval_mae(
    y_true: np.ndarray, y_pred: np.ndarray, width: float, n_intervals: int
) -> list[dict]:
    """MAE per label interval [0, w), [w, 2w), ..., the last one open: [(k-1) w, inf).

    Each entry: ``{"lo", "hi" (None for the open one), "count", "mae" (None when empty)}``.
    """
    y_true, y_pred = _check_pair(y_true, y_pred, "interval_mae", min_rows=1)
    if not (math.isfinite(width) and width > 0):
        raise ValueError(f"interval_mae: width={width} must be finite and > 0")
    if n_intervals < 1:
        raise ValueError(f"interval_mae: n_intervals={n_intervals} must be >= 1")
    if y_true.min() < 0:
        raise ValueError("interval_mae: y_true must be non-negative (intervals start at 0)")
    interval = np.minimum(np.floor(y_true / width), n_intervals - 1).astype(np.int64)
    counts = np.bincount(interval, minlength=n_intervals)
    error_sums = np.bincount(interval, weights=np.abs(y_pred - y_true), minlength=n_intervals)
    return [
        {
            "lo": k * width,
            "hi": (k + 1) * width if k < n_intervals - 1 else None,
            "count": int(counts[k]),
            "mae": float(error_sums[k] / counts[k]) if counts[k] else None,
        }
        for k in range(n_intervals)
    ]


def distribution_summary(y_true: np.ndarray, y_pred: np.ndarray, bins: int) -> dict:
    """Mean, variance, std and quantiles of labels and predictions, and histograms of both on
    shared bin edges spanning both."""
    y_true, y_pred = _check_pair(y_true, y_pred, "distribution_summary", min_rows=1)
    if bins < 1:
        raise ValueError(f"distribution_summary: bins={bins} must be >= 1")
    span = np.array([min(y_true.min(), y_pred.min()), max(y_true.max(), y_pred.max())])
    edges = np.histogram_bin_edges(span, bins=bins)
    return {
        "true": _describe(y_true),
        "pred": _describe(y_pred),
        "histogram": {
            "edges": edges.tolist(),
            "true": np.histogram(y_true, bins=edges)[0].tolist(),
            "pred": np.histogram(y_pred, bins=edges)[0].tolist(),
        },
    }


def evaluate_predictions(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    config: EvalConfig,
    oracle: np.ndarray | None = None,
) -> dict:
    """Every reported metric for one set of predictions.

    ``xauc`` uses ``config.xauc``; ``xauc_tie_aware`` is always the tie-aware variant;
    ``labels_tie`` says whether two labels are equal, and ``xauc_headline_variant`` is the
    variant a report leads with (tie-aware when labels tie, else ``config.xauc``). With
    ``oracle`` (e.g. the labels passed through the vocabulary, the best a decoder can do), its
    MAE and XAUC are added under ``"oracle"`` for reference.
    """
    y_true, y_pred = _check_pair(y_true, y_pred, "evaluate_predictions", min_rows=2)
    result = {
        "n": int(y_true.size),
        "mae": mae(y_true, y_pred),
        **_headline_xauc(y_true, y_pred, config.xauc),
        "intervals": interval_mae(y_true, y_pred, config.interval_width, config.n_intervals),
        "distribution": distribution_summary(y_true, y_pred, config.histogram_bins),
    }
    if oracle is not None:
        y_true, oracle = _check_pair(y_true, oracle, "evaluate_predictions oracle", min_rows=2)
        result["oracle"] = {"mae": mae(y_true, oracle), **_headline_xauc(y_true, oracle, config.xauc)}
    return result


def _headline_xauc(y_true: np.ndarray, y_pred: np.ndarray, variant: str) -> dict:
    both = _xauc_variants(y_true, y_pred, XAUC_VARIANTS)
    ties = labels_tie(y_true)
    return {"xauc": both[variant], "xauc_variant": variant, "xauc_tie_aware": both["tie_aware"],
            "labels_tie": ties, "xauc_headline_variant": headline_xauc_variant(variant, ties)}


def labels_tie(y_true: np.ndarray) -> bool:
    """Whether any two labels are equal (then only the tie-aware XAUC is a fair headline)."""
    return bool(np.unique(np.asarray(y_true)).size < np.asarray(y_true).size)


def headline_xauc_variant(configured: str, ties: bool) -> str:
    """The XAUC variant a report leads with: tie-aware whenever labels tie."""
    return "tie_aware" if ties else configured


def xauc_key(variant: str) -> str:
    """The key of ``variant`` in :func:`evaluate_predictions`' result when it is not the
    configured one (``xauc`` holds the configured variant)."""
    return "xauc_tie_aware" if variant == "tie_aware" else "xauc"


def _check_pair(
    y_true: np.ndarray, y_pred: np.ndarray, what: str, min_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(f"{what}: {name} must be 1-D, got shape {values.shape}")
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise ValueError(f"{what}: {name} has {bad} non-finite values (NaN or inf)")
        arrays.append(values)
    if arrays[0].size != arrays[1].size:
        raise ValueError(
            f"{what}: y_true has {arrays[0].size} rows but y_pred has {arrays[1].size}"
        )
    if arrays[0].size < min_rows:
        raise ValueError(f"{what}: needs at least {min_rows} rows, got {arrays[0].size}")
    return arrays[0], arrays[1]


def _describe(values: np.ndarray) -> dict:
    quantiles = np.quantile(values, QUANTILE_LEVELS)
    counts = np.unique(values, return_counts=True)[1]
    return {
        "mean": float(values.mean()),
        "var": float(values.var()),
        "std": float(values.std()),
        "mode_share": float(counts.max() / values.size),  # share of the most common value
        "quantiles": {f"p{round(q * 100):02d}": float(v) for q, v in zip(QUANTILE_LEVELS, quantiles)},
    }


def _xauc_variants(y_true: np.ndarray, y_pred: np.ndarray, variants: tuple[str, ...]) -> dict:
    """Exact XAUC for each requested variant, sharing the sorts between them."""
    unknown = set(variants) - set(XAUC_VARIANTS)
    if unknown:
        raise ValueError(f"xauc variant {sorted(unknown)}: must be one of {XAUC_VARIANTS}")
    ranks, label_group_sizes = _dense_ranks(y_true)
    order, run = _prediction_order(y_pred)
    sequence = ranks[order]
    result = {}
    if "reference" in variants:
        concordant = _count_descending_pairs(sequence, label_group_sizes.size)
        # Every label equal: no pair to rank, so no score (0 would read as a worst ranking).
        result["reference"] = (math.nan if label_group_sizes.size < 2 else
                               concordant / (sequence.size * (sequence.size - 1) // 2))
    if "tie_aware" in variants:
        result["tie_aware"] = _tie_aware_xauc(sequence, run, label_group_sizes)
    return result


def _tie_aware_xauc(
    ranks: np.ndarray, run: np.ndarray | None, label_group_sizes: np.ndarray
) -> float:
    """Tie-aware XAUC of label ranks listed by descending prediction (``run``: tie groups)."""
    all_pairs = ranks.size * (ranks.size - 1) // 2
    label_ties = _pairs_within(label_group_sizes)
    if label_ties == all_pairs:
        return math.nan  # every label equal: no pair to score
    n_ranks = label_group_sizes.size
    half_pairs = 0
    if run is not None:
        # Labels ascending inside each prediction tie: tied pairs add no descending pair, and
        # runs of equal (tie group, label) are the pairs tied in both prediction and label.
        keyed = run * n_ranks + ranks
        keyed.sort()
        both_tied = _pairs_within(_run_lengths(keyed))
        half_pairs = _pairs_within(np.bincount(run)) - both_tied
        ranks = keyed - run * n_ranks
    concordant = _count_descending_pairs(ranks, n_ranks)
    return (concordant + 0.5 * half_pairs) / (all_pairs - label_ties)


def _prediction_order(y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows by descending prediction, ties in input order, and the tie-group id of each
    position (None when no predictions tie)."""
    order, sorted_key = _stable_argsort(~_order_key(y_pred))
    new_group = _starts_of_equal_runs(sorted_key)
    if new_group.all():
        return order, None
    return order, np.cumsum(new_group) - 1


def _order_key(values: np.ndarray) -> np.ndarray:
    """int64 keys that sort like the float64 values (integer sorts are faster here)."""
    bits = (values + 0.0).view(np.int64)  # + 0.0 turns -0.0 into 0.0
    return np.where(bits < 0, bits ^ np.int64(0x7FFF_FFFF_FFFF_FFFF), bits)


def _stable_argsort(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.argsort(key, kind="stable")`` for int64 keys, and the sorted keys.

    Each key's low bits are replaced by its row index and the packed values are sorted (a
    vectorised value sort is several times faster than an index sort). That orders rows by
    the key's high bits, then by index; keys that differ only in the low bits (float keys
    within ~1e-9 relative of each other) come out of order and are re-sorted locally.
    """
    index_bits = max(int(key.size - 1).bit_length(), 1)
    index_mask = (1 << index_bits) - 1
    packed = (key & ~index_mask) | np.arange(key.size)
    packed.sort()
    order = packed & index_mask
    sorted_key = key[order]
    misplaced = np.flatnonzero(sorted_key[1:] < sorted_key[:-1])
    if misplaced.size:
        high = packed >> index_bits
        starts = np.flatnonzero(_starts_of_equal_runs(high))
        ends = np.r_[starts[1:], key.size]
        groups = np.unique(np.searchsorted(starts, misplaced, side="right") - 1)
        sizes = ends[groups] - starts[groups]
        group_of = np.repeat(np.arange(groups.size), sizes)
        positions = np.arange(sizes.sum()) + np.repeat(starts[groups] - np.cumsum(sizes) + sizes, sizes)
        rows = order[positions]
        order[positions] = rows[np.lexsort((rows, key[rows], group_of))]
        sorted_key[positions] = key[order[positions]]
    return order, sorted_key


def _starts_of_equal_runs(sorted_values: np.ndarray) -> np.ndarray:
    """True where a run of equal neighbours begins."""
    starts = np.empty(sorted_values.size, bool)
    starts[:1] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=starts[1:])
    return starts


def _run_lengths(sorted_values: np.ndarray) -> np.ndarray:
    """Lengths of the runs of equal neighbours."""
    return np.diff(np.flatnonzero(np.r_[_starts_of_equal_runs(sorted_values), True]))


def _dense_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each value among the distinct values (0 = smallest) and each rank's count."""
    order, sorted_key = _stable_argsort(_order_key(values))
    ranks = np.empty(values.size, np.int64)
    ranks[order] = np.cumsum(_starts_of_equal_runs(sorted_key)) - 1
    return ranks, _run_lengths(sorted_key)


def _pairs_within(group_sizes: np.ndarray) -> int:
    """Pairs inside groups of the given sizes."""
    sizes = group_sizes.astype(np.int64)
    return int((sizes * (sizes - 1) // 2).sum())


def _count_descending_pairs(values: np.ndarray, bound: int) -> int:
    """Number of pairs i < j with values[i] > values[j], for integer values in [0, bound).

    Bottom-up merge sort on int32: the values are padded (with ``bound``, above every value, at
    the end: no new descending pair) to ``leaf * 2**levels`` with a leaf of 8 to 15 values.
    Pairs inside a leaf are counted by direct comparison. Each level then merges neighbouring
    sorted runs of width w with one row-wise sort of the values tagged with their run (2 v for
    the left run, 2 v + 1 for the right), so equal values keep left before right. A left value
    that lands at merged position p after being i-th in its run has exactly p - i right values
    strictly below it, so a level adds sum(positions of left values) - rows * w (w - 1) / 2.
    """
    if bound >= 2**30:
        raise ValueError(f"xauc: {bound} distinct labels exceed the supported 2**30")
    levels = 0
    while -(-values.size >> levels) >= 2 * _MIN_LEAF:
        levels += 1
    leaf = -(-values.size >> levels)
    tagged = np.full(leaf << levels, 2 * bound, np.int32)
    np.multiply(values, 2, out=tagged[: values.size], casting="unsafe")
    leaves = tagged.reshape(-1, leaf)
    above_diagonal = np.triu(np.ones((leaf, leaf), bool), k=1)
    total = 0
    for start in range(0, leaves.shape[0], _LEAVES_PER_CHUNK):
        chunk = leaves[start : start + _LEAVES_PER_CHUNK]
        total += int(np.count_nonzero((chunk[:, :, None] > chunk[:, None, :]) & above_diagonal))
    leaves.sort(axis=1)
    for level in range(levels):
        width = leaf << level
        rows = tagged.reshape(-1, 2 * width)
        np.bitwise_and(rows, -2, out=rows)  # clear the previous level's tags
        np.bitwise_or(rows[:, width:], 1, out=rows[:, width:])
        # Short rows: introsort (SIMD) is fastest; long rows: timsort merges the two runs.
        rows.sort(axis=1, kind="quicksort" if width < _MERGE_SORT_WIDTH else "stable")
        positions = np.arange(2 * width)
        right_positions = int(np.einsum("ij,j->", rows & 1, positions, dtype=np.int64))
        left_positions = rows.shape[0] * int(positions.sum()) - right_positions
        total += left_positions - rows.shape[0] * (width * (width - 1) // 2)
    return total
