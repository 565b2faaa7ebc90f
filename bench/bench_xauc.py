"""Exact XAUC speed (both variants) and the sampled estimate, at millions of rows.

Labels are KuaiRec-like watch times (millisecond resolution, many ties); predictions are
continuous float64 (the hardest case for the sort: near-equal values) or, with --rounded,
rounded to 0.1 s (many prediction ties). Prints wall and CPU seconds per call and peak memory.
Targets on 2 CPU cores: <= 0.5 s at 1M rows, <= 3 s at 5M.

    python bench/bench_xauc.py --n 1000000 5000000
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from grmodel.metrics import xauc, xauc_sampled


def timed(fn, *args, **kwargs):
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start_wall, time.process_time() - start_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rounded", action="store_true", help="round predictions to 0.1 s")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for n in args.n:
        labels = np.round(np.exp(rng.normal(np.log(7.0), 0.9, n)), 3)
        predictions = labels * np.exp(rng.normal(0, 0.5, n))
        if args.rounded:
            predictions = np.round(predictions, 1)
        print(f"n = {n:,}")
        for variant in ("reference", "tie_aware"):
            runs = [timed(xauc, labels, predictions, variant) for _ in range(args.repeats)]
            value = runs[0][0]
            wall = min(r[1] for r in runs)
            cpu = min(r[2] for r in runs)
            print(f"  {variant:>9}: {value:.6f}  best of {args.repeats}: {wall:.3f} s (cpu {cpu:.3f} s)")
        value, wall, cpu = timed(xauc_sampled, labels, predictions, 1_000_000)
        print(f"  sampled (1M pairs): {value:.6f}  {wall:.3f} s (cpu {cpu:.3f} s)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MB")


if __name__ == "__main__":
    main()
