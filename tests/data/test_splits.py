from __future__ import annotations

import numpy as np
import pytest

from grmodel.data import splits
from grmodel.data.io import DataSpecError
from grmodel.data.splits import DROPPED, TEST, TRAIN, VALID


def test_random_split_has_exact_sizes_and_depends_only_on_the_seed() -> None:
    codes = splits.random_split(1000, 0.1, 0.2, seed=5)
    assert [(codes == c).sum() for c in (TRAIN, VALID, TEST)] == [700, 100, 200]
    np.testing.assert_array_equal(codes, splits.random_split(1000, 0.1, 0.2, seed=5))
    assert (codes != splits.random_split(1000, 0.1, 0.2, seed=6)).any()


def test_chronological_split_orders_by_time_and_drops_untimed_rows() -> None:
    rng = np.random.default_rng(0)
    ts = rng.random(200)
    ts[::10] = np.nan
    codes = splits.chronological_split(ts, 0.1, 0.1)
    assert (codes[np.isnan(ts)] == DROPPED).all()
    assert [(codes == c).sum() for c in (TRAIN, VALID, TEST)] == [144, 18, 18]
    assert ts[codes == TRAIN].max() <= ts[codes == VALID].min()
    assert ts[codes == VALID].max() <= ts[codes == TEST].min()
    rows = splits.rows_by_split(codes, ts)
    for name in ("train", "valid", "test"):
        assert np.all(np.diff(ts[rows[name]]) >= 0)


@pytest.mark.parametrize("mode", ["random", "last"])
def test_holdout_keeps_the_test_rows_and_carves_valid_from_the_rest(mode: str) -> None:
    is_test = np.zeros(100, bool)
    is_test[80:] = True
    ts = np.arange(100, dtype=float)
    ts[3] = np.nan
    codes = splits.holdout_split(is_test, ts, 0.1, mode, seed=1)
    assert (codes[80:] == TEST).all()
    assert (codes == VALID).sum() == 8 and (codes == DROPPED).sum() == 0
    if mode == "last":
        np.testing.assert_array_equal(np.flatnonzero(codes == VALID), np.arange(72, 80))
        assert codes[3] == TRAIN  # no time: stays in train


def test_bad_fractions() -> None:
    with pytest.raises(DataSpecError, match="fractions"):
        splits.random_split(10, 0.5, 0.5, seed=0)
    with pytest.raises(DataSpecError, match="valid_mode"):
        splits.holdout_split(np.zeros(3, bool), np.zeros(3), 0.1, "first", seed=0)


def test_hash_split_depends_only_on_the_row_index_and_the_seed() -> None:
    rows = np.arange(100_000)
    codes = splits.hash_split(rows, 0.1, 0.2, seed=7)
    assert codes.dtype == np.int8
    np.testing.assert_array_equal(codes, splits.hash_split(rows, 0.1, 0.2, seed=7))
    # Chunk-independent: two halves, or a shuffled subset, give each row the same code.
    halves = np.concatenate([splits.hash_split(rows[:37_123], 0.1, 0.2, seed=7),
                             splits.hash_split(rows[37_123:], 0.1, 0.2, seed=7)])
    np.testing.assert_array_equal(halves, codes)
    some = np.random.default_rng(0).permutation(rows)[:1000]
    np.testing.assert_array_equal(splits.hash_split(some, 0.1, 0.2, seed=7), codes[some])
    # Another seed moves about 1 - (0.7² + 0.1² + 0.2²) = 46% of the rows.
    moved = (codes != splits.hash_split(rows, 0.1, 0.2, seed=8)).mean()
    assert 0.44 < moved < 0.48


def test_hash_split_sizes_are_binomial() -> None:
    n = 100_000
    codes = splits.hash_split(np.arange(n), 0.1, 0.2, seed=2024)
    assert set(np.unique(codes)) == {TRAIN, VALID, TEST}
    for code, p in ((TRAIN, 0.7), (VALID, 0.1), (TEST, 0.2)):
        sd = np.sqrt(n * p * (1 - p))
        assert abs((codes == code).sum() - n * p) < 5 * sd
    # Rows far beyond 2**32 are placed too (the index is hashed as a 64-bit integer).
    far = splits.hash_split(np.arange(10**10, 10**10 + n), 0.1, 0.0, seed=1)
    assert abs((far == VALID).sum() - n * 0.1) < 5 * np.sqrt(n * 0.09)
    assert not (far == TEST).any()
    u = splits.hash_uniform(np.arange(n), seed=3)
    assert u.min() >= 0 and u.max() < 1
    # Uniform: each tenth of [0, 1) holds n/10 ± 5 sd.
    assert (np.abs(np.bincount((u * 10).astype(int), minlength=10) - n / 10)
            < 5 * np.sqrt(n * 0.09)).all()


def test_hash_split_checks_its_fractions() -> None:
    with pytest.raises(DataSpecError, match="fractions"):
        splits.hash_split(np.arange(10), 0.5, 0.5, seed=0)
