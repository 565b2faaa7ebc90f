"""Vocabulary building and label encoding speed on KuaiRec-like watch times.

Prints the dynamic-quantile build time, seconds per million labels for ``LabelCodec.encode``
(first call, which builds the lookup table, and the best of the repeats) and ``decode`` for
every vocabulary kind, the paper's per-label greedy loop (docs/method.md, Greedy label
encoding) timed on a sample for comparison, and peak memory. Target: encode <= 0.2 s per
million labels on 2 CPU cores.

    python bench/bench_codec.py --n 1000000
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from grmodel.codec import LabelCodec
from grmodel.config import VocabConfig
from grmodel.vocab import build_vocabulary


def kuairec_like_seconds(n: int, seed: int) -> np.ndarray:
    """Watch times in seconds at millisecond resolution: median ~7 s, long tail, 2% zeros."""
    rng = np.random.default_rng(seed)
    seconds = np.exp(rng.normal(np.log(7.0), 0.9, n))
    seconds[rng.random(n) < 0.02] = 0.0
    seconds[rng.random(n) < 0.01] *= 20
    return np.round(seconds, 3)


def timed(fn, *args, **kwargs):
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start_wall, time.process_time() - start_cpu


def python_loop_encode(scaled: np.ndarray, values: np.ndarray) -> list[list[int]]:
    """The greedy loop, one label at a time (the authors' approach; docs/method.md)."""
    sequences = []
    for label in scaled.tolist():
        remainder, tokens = label, []
        for value in values.tolist():
            while remainder >= value:
                remainder -= value
                tokens.append(value)
        sequences.append(tokens)
    return sequences


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="labels to encode")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-sample", type=int, default=50_000, help="labels for the loop")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    labels = kuairec_like_seconds(args.n, args.seed)
    per_million = 1e6 / args.n
    print(f"labels: {args.n:,} KuaiRec-like watch times (s), max {labels.max():.1f} s")

    for kind in ("dynamic_quantile", "manual", "binary"):
        vocab, wall, cpu = timed(build_vocabulary, labels, VocabConfig(kind=kind))
        extra = ""
        if kind == "dynamic_quantile":
            extra = f", {vocab.params['n_iterations']} iterations ({vocab.params['stop_reason']})"
        print(f"\n[{kind}] {len(vocab.values)} tokens, built in {wall:.3f} s (cpu {cpu:.3f}){extra}")
        codec = LabelCodec(vocab)
        encoded, first_wall, first_cpu = timed(codec.encode, labels)
        runs = [timed(codec.encode, labels)[1:] for _ in range(args.repeats)]
        best_wall, best_cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        print(
            f"  encode: first call {first_wall * per_million:.3f} s/M (cpu {first_cpu * per_million:.3f}), "
            f"best of {args.repeats} {best_wall * per_million:.3f} s/M (cpu {best_cpu * per_million:.3f}); "
            f"sequences {encoded.sequences.shape}, mean length {encoded.lengths.mean():.2f}"
        )
        _, wall, cpu = timed(codec.decode, encoded.sequences)
        print(f"  decode: {wall * per_million:.3f} s/M (cpu {cpu * per_million:.3f})")
        sample = vocab.scale(labels[: args.loop_sample])
        loop, wall, _ = timed(python_loop_encode, sample, vocab.values)
        assert sum(map(len, loop)) == encoded.lengths[: args.loop_sample].sum()
        print(f"  per-label Python loop on {sample.size:,} labels: {wall * 1e6 / sample.size:.2f} s/M")
    print(f"\npeak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
