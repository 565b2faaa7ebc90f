"""Label encoding: watch time <-> token sequences (docs/method.md, Greedy label encoding).

A label is scaled to integer units and decomposed greedily, largest token first, a token
repeating as often as it fits; the target sequence is ``<sos> tokens... <eos> <pad>...``.
Because every vocabulary built by ``grmodel.vocab`` contains the value 1, the token values of a
label sum to its scaled value exactly; the only loss is the truncation in scaling (less than
one unit, i.e. relative error <= 0.1% for labels of at least 1000 units). A label that scales to
0 has an empty token sequence and decodes to 0.

Encoding is vectorised over labels. The greedy step "largest token <= remainder" is a lookup in
a table over every scaled value up to the largest token (one byte per value, built once), so a
label costs one table read per emitted token; past ``TABLE_LIMIT`` the same step uses a binary
search.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from grmodel.vocab import EOS, N_SPECIAL, PAD, SOS, Vocabulary

# Largest token value for which the greedy lookup table is built (16 MiB with one-byte ids).
TABLE_LIMIT = 1 << 24
# Labels (or sequences) handled per block: the block's working arrays stay in cache.
CHUNK_ROWS = 1 << 16


@dataclass(eq=False)  # holds arrays: compare fields explicitly
class EncodedLabels:
    """Decoder targets: ``<sos>``, token ids (non-increasing values), ``<eos>``, ``<pad>``..."""

    sequences: np.ndarray  # int64 [N, max_len + 2]
    lengths: np.ndarray  # int64 [N], value tokens per label (without <sos>/<eos>)


class LabelCodec:
    """Greedy largest-first encoding of labels into a vocabulary's tokens, and decoding back."""

    def __init__(self, vocab: Vocabulary, table_limit: int = TABLE_LIMIT):
        self.vocab = vocab
        self.table_limit = table_limit
        self._ascending = vocab.values[::-1].copy()
        # Value of each token id in scaled units; specials are 0.
        self._step = np.concatenate([np.zeros(N_SPECIAL, np.int64), vocab.values])
        self._id_dtype = np.min_scalar_type(vocab.size - 1)
        self._table: np.ndarray | None = None  # next token id for remainders 0..largest

    def token_sequences(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Value-token ids ``[N, longest]`` padded with ``<pad>``, and lengths ``[N]``."""
        ids, lengths = self._greedy_ids(labels)
        return ids.astype(np.int64), lengths

    def encode(self, labels: np.ndarray, max_len: int | None = None) -> EncodedLabels:
        """Decoder targets with room for ``max_len`` value tokens (default: the longest label)."""
        ids, lengths = self._greedy_ids(labels)
        longest = ids.shape[1]
        if max_len is None:
            max_len = longest
        elif longest > max_len:
            too_long = int((lengths > max_len).sum())
            raise ValueError(
                f"{too_long} labels need more than max_len={max_len} tokens "
                f"(the longest needs {longest})"
            )
        # Assembled in the compact id dtype, then widened in one pass.
        sequences = np.zeros((lengths.size, max_len + 2), ids.dtype)
        sequences[:, 0] = SOS
        sequences[:, 1 : longest + 1] = ids
        sequences[np.arange(lengths.size), lengths + 1] = EOS
        return EncodedLabels(sequences=sequences.astype(np.int64), lengths=lengths)

    def decode(self, token_ids: np.ndarray) -> np.ndarray:
        """Labels in original units: sum of token values up to each row's first ``<eos>``.

        ``<pad>`` and ``<sos>`` count 0, so both targets and generated sequences decode.
        """
        ids = np.asarray(token_ids)
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"token ids: need a 2-D integer array, got {ids.dtype} {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab.size):
            raise ValueError(f"token ids: must lie in [0, {self.vocab.size}) for this vocabulary")
        scaled = np.empty(ids.shape[0], np.int64)
        for start in range(0, ids.shape[0], CHUNK_ROWS):
            block = ids[start : start + CHUNK_ROWS]
            is_eos = block == EOS
            stop = np.where(is_eos.any(axis=1), is_eos.argmax(axis=1), block.shape[1])
            before_eos = np.arange(block.shape[1]) < stop[:, None]
            values = np.take(self._step, np.where(before_eos, block, PAD))
            scaled[start : start + CHUNK_ROWS] = values.sum(axis=1)
        return scaled / self.vocab.label_scale

    def length_stats(self, labels: np.ndarray) -> dict:
        """Distribution of sequence lengths (value tokens only) of the given labels."""
        _, lengths = self._greedy_ids(labels)
        if lengths.size == 0:
            raise ValueError("length_stats: need at least one label")
        counts = np.bincount(lengths)
        p50, p90, p99 = np.quantile(lengths, [0.5, 0.9, 0.99])
        return {
            "n": int(lengths.size),
            "min": int(lengths.min()),
            "mean": float(lengths.mean()),
            "p50": float(p50),
            "p90": float(p90),
            "p99": float(p99),
            "max": int(lengths.max()),
            "histogram": {int(k): int(c) for k, c in enumerate(counts) if c},
        }

    def max_decode_len(self, train_labels: np.ndarray, coverage: float = 1.0) -> int:
        """Decode steps that cover ``coverage`` of the training sequences (1.0: the longest)."""
        if not 0 < coverage <= 1:
            raise ValueError(f"coverage={coverage}: must be in (0, 1]")
        _, lengths = self._greedy_ids(train_labels)
        if lengths.size == 0:
            raise ValueError("max_decode_len: need at least one training label")
        covered = np.quantile(lengths, coverage, method="inverted_cdf")
        return max(int(covered), 1)

    def _greedy_ids(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Greedy decomposition: token ids ``[N, longest]`` (compact dtype, ``<pad>``-padded).

        Labels go through in blocks of ``CHUNK_ROWS`` so that the working arrays stay in cache.
        """
        scaled = self.vocab.scale(np.asarray(labels).ravel())
        starts = range(0, scaled.size, CHUNK_ROWS)
        blocks = [self._greedy_block(scaled[start : start + CHUNK_ROWS]) for start in starts]
        ids = np.zeros((scaled.size, max((b.shape[1] for b, _ in blocks), default=0)), self._id_dtype)
        for start, (block_ids, _) in zip(starts, blocks):
            ids[start : start + block_ids.shape[0], : block_ids.shape[1]] = block_ids
        lengths = [block_lengths for _, block_lengths in blocks]
        return ids, np.concatenate(lengths) if lengths else np.zeros(0, np.int64)

    def _greedy_block(self, remainder: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Greedy decomposition of scaled labels (``remainder`` is consumed).

        Every row takes its largest fitting token at each step; a row whose remainder is 0 (or
        below the smallest token) gets ``<pad>`` and keeps its remainder, so it stays ended.
        Once at most half the rows are still going, later steps only visit those rows (the
        long tail of a few very long labels then costs little).
        """
        n = remainder.size
        lengths = np.zeros(n, np.int64)
        dense: list[np.ndarray] = []  # steps taken by every row: one full column each
        sparse: list[tuple[np.ndarray, np.ndarray]] = []  # later steps: (rows, ids)
        rows = None  # None: all rows still visited
        next_token = self._next_token_lookup()
        while remainder.size:
            ids = next_token(remainder)
            active = ids != PAD
            n_active = int(np.count_nonzero(active))
            if n_active == 0:
                break
            remainder -= np.take(self._step, ids)
            if rows is None:
                dense.append(ids)
                lengths += active
            else:
                sparse.append((rows, ids))
                lengths[rows] += active
            if n_active <= remainder.size // 2:
                keep = np.flatnonzero(active)
                rows = keep if rows is None else rows[keep]
                remainder = remainder[keep]
        ids = np.zeros((n, len(dense) + len(sparse)), self._id_dtype)
        for step, step_ids in enumerate(dense):
            ids[:, step] = step_ids
        for step, (step_rows, step_ids) in enumerate(sparse, start=len(dense)):
            ids[step_rows, step] = step_ids
        return ids, lengths

    def _next_token_lookup(self) -> Callable[[np.ndarray], np.ndarray]:
        """``remainder -> id of the largest token <= remainder`` (``<pad>`` if none fits)."""
        largest = int(self.vocab.values[0])
        if largest >= self.table_limit:
            return self._next_token_search
        if self._table is None:
            # Remainders in [a_k, a_k+1) take the token of value a_k; below the smallest: <pad>.
            ascending_ids = N_SPECIAL + np.arange(self._ascending.size)[::-1]
            spans = np.diff(np.r_[0, self._ascending, largest + 1])
            self._table = np.repeat(np.r_[PAD, ascending_ids], spans).astype(self._id_dtype)
        # Clipping sends every remainder above the largest token to the largest token's entry.
        return partial(np.take, self._table, mode="clip")

    def _next_token_search(self, remainder: np.ndarray) -> np.ndarray:
        n_fitting = np.searchsorted(self._ascending, remainder, side="right")
        return np.where(n_fitting > 0, N_SPECIAL + self._ascending.size - n_fitting, PAD)
