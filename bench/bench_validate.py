"""Benchmark: validate a generated KuaiRec raw directory (all four files) end to end.

    python bench/bench_validate.py --preset full      # KuaiRec sizes: 12.5M + 4.7M rows

The raw files are generated once with ``grmodel.data.kuairec.synth`` into ``--cache`` and reused.
Prints the seconds of each phase, the rows validated and the peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", choices=["tiny", "default", "full"])
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--cache", default="runs/bench", help="where generated data is kept")
    parser.add_argument("--out", default=None, help="also write the reports here")
    args = parser.parse_args()

    from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec

    raw_dir = Path(args.cache) / f"kuairec-{args.preset}-seed{args.seed}"
    if not raw_dir.exists():
        started = time.perf_counter()
        generate_kuairec(raw_dir, SynthConfig.preset(args.preset, seed=args.seed))
        print(f"generated {raw_dir} in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    import great_expectations  # noqa: F401  (timed apart: a fixed cost of every run)

    from grmodel.validation import validate_raw_kuairec

    import_s = time.perf_counter() - started
    started = time.perf_counter()
    report = validate_raw_kuairec(raw_dir)
    validate_s = time.perf_counter() - started
    if args.out:
        report.write(args.out)
    rows = {t["name"]: t["rows"] for t in report.tables}
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"preset {args.preset}: rows {rows}")
    print(f"checks: {report.counts()}")
    print(f"import great_expectations: {import_s:.1f} s")
    print(f"validate_raw_kuairec: {validate_s:.1f} s (total with import {import_s + validate_s:.1f} s)")
    print(f"peak RSS: {peak_mib:.0f} MiB")
    if not report.success:
        print(report.summary(), file=sys.stderr)
    return 0 if report.success else 1


if __name__ == "__main__":
    sys.exit(main())
