"""Benchmark: the drift check's false-alarm and detection rates on generated days.

    python bench/bench_drift.py --preset default --seeds 3 --days 8 --window 7

For each seed a generated KuaiRec world is cut into days by its ``date`` column. For each
as-of day d the champion's reference is the profile of yesterday's run (trained on the window
ending d - 2) and today's run is ingested from the window ending d - 1 with day d as its test
rows (a chronological split whose test share is day d's rows), each with its own vocabulary.
Today's run is checked in five forms:

* ``none``: as generated (every flag is a false alarm);
* ``label_day``: plays x1.5 on day d (the test rows);
* ``label_all``: plays x1.5 on every day of today's run (a copy of the data with longer plays);
* ``mix_day``: on day d, 80% of the rows of users of the most common activity degree dropped;
* ``new_items_day``: on day d, 30% of the rows moved to videos no run has seen.

``--champion-age k`` takes the reference from the run of k days before (default 1: the
windows overlap in all days but one; 8 with a 7-day window: no day in common).

Prints, per scenario, the share of runs flagged and which split and columns were flagged, the
seconds per check, and, for comparison, the same runs judged without the noise widening (the
floors alone: KL <= max_kl, each quantile within the tolerance of the reference's).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SCENARIOS = ("none", "label_day", "label_all", "mix_day", "new_items_day")
SIDE_FILES = ("user_features.csv", "item_categories.csv")


def _days(raw: Path) -> tuple[pd.DataFrame, list[int]]:
    rows = pd.concat([pd.read_csv(raw / name) for name in ("big_matrix.csv", "small_matrix.csv")])
    rows = rows[rows["timestamp"].notna()].astype({"date": np.int64})
    return rows, sorted(int(d) for d in rows["date"].unique())


def _run(raw: Path, rows: pd.DataFrame, days: list[int], as_of: int, window: int, out: Path,
         plant: str = "none") -> Path:
    """A processed dataset: train on the ``window`` days before ``as_of``, test on ``as_of``."""
    from grmodel.data.kuairec.ingest import IngestConfig, ingest_kuairec

    k = days.index(as_of)
    part = rows[rows["date"].isin(days[k - window: k + 1])].copy()
    today = part["date"] == as_of
    rng = np.random.default_rng(as_of)
    if plant in ("label_day", "label_all"):
        scaled = today if plant == "label_day" else np.ones(len(part), bool)
        part.loc[scaled, "play_duration"] = (part.loc[scaled, "play_duration"] * 1.5).round()
        part["watch_ratio"] = part["play_duration"] / part["video_duration"]
    elif plant == "mix_day":
        users = pd.read_csv(raw / "user_features.csv", usecols=["user_id", "user_active_degree"])
        common = users["user_active_degree"].mode()[0]
        of_common = part["user_id"].isin(users.loc[users["user_active_degree"] == common,
                                                   "user_id"])
        part = part[~(today & of_common & (rng.random(len(part)) < 0.8)).to_numpy()]
    elif plant == "new_items_day":
        moved = today & (rng.random(len(part)) < 0.3)
        part.loc[moved, "video_id"] += 10_000_000
    raw_dir = out / "raw"
    raw_dir.mkdir(parents=True)
    for name in SIDE_FILES:
        shutil.copy2(raw / name, raw_dir / name)
    # Both matrices are pooled by time; the reader wants rows in each.
    part.iloc[1:].to_csv(raw_dir / "big_matrix.csv", index=False)
    part.iloc[:1].to_csv(raw_dir / "small_matrix.csv", index=False)
    test_share = float((part["date"] == as_of).mean())
    ingest_kuairec(raw_dir, out / "processed",
                   IngestConfig(split="chronological", valid_fraction=0.05,
                                test_fraction=test_share))
    return out / "processed"


def _flagged_by_floors(report, reference: dict, bounds) -> bool:
    """Whether the report's observed values break the floors alone (no noise widening)."""
    from grmodel.validation.drift import KL, QUANTILES, UNSEEN

    levels = np.linspace(0, 1, 101)
    for check in report.checks:
        value = check.observed_value
        if check.status == "skipped" or value is None:
            continue
        if check.expectation in (KL, UNSEEN):
            limit = bounds.max_kl if check.expectation == KL else bounds.max_unseen
            if value > limit:
                return True
        elif check.expectation == QUANTILES:
            quantiles = reference["columns"][check.column]["quantiles"]
            slack = bounds.quantile_tolerance * (np.interp(0.9, levels, quantiles)
                                                 - np.interp(0.1, levels, quantiles))
            for p, got in zip(value["quantiles"], value["values"]):
                if abs(got - np.interp(p, levels, quantiles)) > slack:
                    return True
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", choices=["tiny", "default", "full"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--days", type=int, default=8, help="as-of days per seed")
    parser.add_argument("--window", type=int, default=7)
    parser.add_argument("--champion-age", type=int, default=1)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()

    from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec
    from grmodel.data.profile import profile_split
    from grmodel.validation.drift import DriftBounds, check_drift

    bounds = DriftBounds()
    scenarios = args.scenarios.split(",")
    flagged: dict[str, collections.Counter] = {s: collections.Counter() for s in scenarios}
    columns: dict[str, collections.Counter] = {s: collections.Counter() for s in scenarios}
    runs: collections.Counter = collections.Counter()
    seconds: list[float] = []
    rows_per_day: list[int] = []
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        for seed in range(args.seeds):
            raw = Path(tmp) / f"world{seed}"
            generate_kuairec(raw, SynthConfig.preset(args.preset, seed=seed))
            rows, days = _days(raw)
            # As-of days from the middle of the period, where every window is full.
            middle = max(len(days) // 2, args.window + args.champion_age + 1)
            for as_of in days[middle: middle + args.days]:
                k = days.index(as_of)
                rows_per_day.append(int((rows["date"] == as_of).sum()))
                base = Path(tmp) / f"s{seed}-{as_of}"
                reference = profile_split(_run(raw, rows, days, days[k - args.champion_age],
                                               args.window, base / "champion"))
                for plant in scenarios:
                    new = _run(raw, rows, days, as_of, args.window, base / plant, plant)
                    runs[plant] += 1
                    started = time.perf_counter()
                    report = check_drift(new, reference, bounds)
                    seconds.append(time.perf_counter() - started)
                    drifted = report.drifted()
                    if drifted:
                        flagged[plant]["bounds"] += 1
                        for split, cols in drifted.items():
                            flagged[plant][split] += 1
                            columns[plant].update(f"{split} {c}" for c in cols)
                    flagged[plant]["floors"] += _flagged_by_floors(report, reference, bounds)
                    shutil.rmtree(base / plant)
                print(f"seed {seed} day {as_of}: done", flush=True)

    print(f"\npreset {args.preset}, window {args.window} days, champion {args.champion_age}"
          f" day(s) old, {args.seeds} worlds x {args.days} as-of days; rows per day: median"
          f" {int(np.median(rows_per_day))} (min {min(rows_per_day)}, max {max(rows_per_day)})")
    print(f"bounds: max_kl {bounds.max_kl}, quantile_tolerance {bounds.quantile_tolerance},"
          f" max_unseen {bounds.max_unseen}, false_alarm {bounds.false_alarm}")
    print(f"\n{'scenario':<15} {'flagged':>9} {'train':>7} {'valid':>7} {'test':>7}"
          f"   {'floors only':>11}")
    for plant in scenarios:
        n, f = runs[plant], flagged[plant]
        print(f"{plant:<15} {f['bounds']:>3}/{n:<5} {f['train.parquet']:>7}"
              f" {f['valid.parquet']:>7} {f['test.parquet']:>7}   {f['floors']:>5}/{n:<5}")
    for plant in scenarios:
        top = ", ".join(f"{c} x{k}" for c, k in columns[plant].most_common(6))
        print(f"  {plant}: {top or '-'}")
    print(f"\ncheck_drift: median {np.median(seconds):.2f} s per run (max {max(seconds):.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
