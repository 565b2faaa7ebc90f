"""Train / valid / test assignment of rows, as an int8 code per row.

Random splits draw exact numbers of held-out rows with a seeded generator (the default
``permutation`` draw, which needs every row in one array) or place each row by a seeded hash of
its index (``hash_split``: binomial sizes, computed per chunk or partition); time-based ones
cut the rows' time order by fractions. Rows that cannot be placed are ``DROPPED``.
``rows_by_split`` turns the codes into the row indices each split file is written from.
"""

from __future__ import annotations

import numpy as np

from grmodel.data.io import DataSpecError

TRAIN, VALID, TEST, DROPPED = 0, 1, 2, -1
SPLIT_CODES = {"train": TRAIN, "valid": VALID, "test": TEST}
# Other names a split column may use for a split (compared lower-case).
SPLIT_ALIASES = {"validation": "valid", "val": "valid"}
# How a seeded random split is drawn: ``permutation`` (exact sizes, one array of all rows) or
# ``hash`` (hash_split: binomial sizes, any chunk of rows on its own).
SPLIT_DRAWS = ("permutation", "hash")

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment


def check_fractions(valid_fraction: float, test_fraction: float) -> None:
    if not (0 < valid_fraction < 1 and 0 <= test_fraction < 1
            and valid_fraction + test_fraction < 1):
        raise DataSpecError(
            f"split fractions valid={valid_fraction}, test={test_fraction}: need 0 < valid,"
            " 0 <= test and valid + test < 1"
        )


def held_out(n: int, valid_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(valid rows, test rows) of ``n`` rows: each fraction of ``n``, rounded."""
    return round(n * valid_fraction), round(n * test_fraction)


def cut(order: np.ndarray, n_rows: int, valid_fraction: float, test_fraction: float
        ) -> np.ndarray:
    """Codes for ``n_rows`` rows: ``order``'s first part train, then valid, then test."""
    n = len(order)
    n_valid, n_test = held_out(n, valid_fraction, test_fraction)
    codes = np.full(n_rows, DROPPED, dtype=np.int8)
    codes[order[: n - n_valid - n_test]] = TRAIN
    codes[order[n - n_valid - n_test: n - n_test]] = VALID
    codes[order[n - n_test:]] = TEST
    return codes


def _draw(candidates: np.ndarray, n_rows: int, valid_fraction: float, test_fraction: float,
          seed: int) -> np.ndarray:
    """Exactly round(fraction * n) random candidates valid and test, the others train."""
    n = len(candidates)
    n_valid, n_test = held_out(n, valid_fraction, test_fraction)
    # Drawing the held-out rows only is several times faster than permuting every row.
    picked = candidates[np.random.default_rng(seed).choice(n, n_valid + n_test, replace=False)]
    codes = np.full(n_rows, DROPPED, dtype=np.int8)
    codes[candidates] = TRAIN
    codes[picked[:n_valid]] = VALID
    codes[picked[n_valid:]] = TEST
    return codes


def random_split(n_rows: int, valid_fraction: float, test_fraction: float, seed: int
                 ) -> np.ndarray:
    """Exact fractions of seeded random rows."""
    check_fractions(valid_fraction, test_fraction)
    return _draw(np.arange(n_rows), n_rows, valid_fraction, test_fraction, seed)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 values (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hash_uniform(row_index: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per row from a 64-bit hash of (seed, the row's global
    0-based index): splitmix64's finaliser of ``mix(seed) + index * golden``, top 53 bits.
    Depends on nothing else, so any chunk or partition of rows gets the same numbers."""
    index = np.asarray(row_index)
    if index.size and index.min() < 0:
        raise ValueError("hash_uniform: row indices must be >= 0")
    key = np.uint64(int(_mix64(np.array([seed & _MASK64], dtype=np.uint64))[0]))
    with np.errstate(over="ignore"):
        mixed = _mix64(index.astype(np.uint64) * np.uint64(_GOLDEN) + key)
    return (mixed >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def hash_split(row_index: np.ndarray, valid_fraction: float, test_fraction: float, seed: int
               ) -> np.ndarray:
    """Codes for the rows ``row_index`` (global 0-based indices): each row's
    ``hash_uniform`` u puts it in TEST when u < test_fraction, else in VALID when
    u < test_fraction + valid_fraction, else in TRAIN.

    Each row is placed independently, so the split sizes are binomial (valid ~
    Binomial(n, valid_fraction)), not the exact rounded counts of ``random_split``. In return
    a row's code depends only on its index and the seed: computed in one array, in chunks or
    in Spark partitions, every row gets the same code, and no array of all rows is needed.
    """
    check_fractions(valid_fraction, test_fraction)
    u = hash_uniform(row_index, seed)
    codes = np.full(u.shape, TRAIN, dtype=np.int8)
    codes[u < test_fraction + valid_fraction] = VALID
    codes[u < test_fraction] = TEST
    return codes


def time_order(timestamps: np.ndarray) -> np.ndarray:
    """Indices of the rows with a timestamp, oldest first (ties keep row order)."""
    timed = np.flatnonzero(np.isfinite(timestamps))
    return timed[np.argsort(timestamps[timed], kind="stable")]


def chronological_split(timestamps: np.ndarray, valid_fraction: float, test_fraction: float
                        ) -> np.ndarray:
    """Oldest rows train, then valid, then the newest test; rows without a time are dropped."""
    check_fractions(valid_fraction, test_fraction)
    return cut(time_order(timestamps), len(timestamps), valid_fraction, test_fraction)


def holdout_split(is_test: np.ndarray, timestamps: np.ndarray, valid_fraction: float,
                  valid_mode: str, seed: int) -> np.ndarray:
    """Rows flagged ``is_test`` are the test split; valid is carved from the others.

    ``valid_mode="random"``: a seeded random ``valid_fraction`` of them; ``"last"``: the
    newest ``valid_fraction`` of those with a timestamp (rows without a time stay in train).
    """
    check_fractions(valid_fraction, 0.0)
    rest = np.flatnonzero(~is_test)
    if valid_mode == "random":
        codes = _draw(rest, len(is_test), valid_fraction, 0.0, seed)
    elif valid_mode == "last":
        timed = time_order(np.where(is_test, np.nan, timestamps))
        untimed = np.setdiff1d(rest, timed, assume_unique=True)
        n_valid = min(held_out(len(rest), valid_fraction, 0.0)[0], len(timed))
        codes = np.full(len(is_test), DROPPED, dtype=np.int8)
        codes[untimed] = TRAIN
        codes[timed[: len(timed) - n_valid]] = TRAIN
        codes[timed[len(timed) - n_valid:]] = VALID
    else:
        raise DataSpecError(f"valid_mode {valid_mode!r}: expected 'random' or 'last'")
    codes[is_test] = TEST
    return codes


def rows_by_split(codes: np.ndarray, timestamps: np.ndarray | None = None
                  ) -> dict[str, np.ndarray]:
    """Row indices per split, in row order, or in time order when ``timestamps`` is given."""
    out = {}
    for name, code in SPLIT_CODES.items():
        rows = np.flatnonzero(codes == code)
        if timestamps is not None:
            rows = rows[np.argsort(timestamps[rows], kind="stable")]
        out[name] = rows
    return out
