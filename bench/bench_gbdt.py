"""The GBDT baseline's training and prediction time beside GR's, in the same run on one dataset.

    python bench/bench_gbdt.py                                    # the main job's data and budget
    python bench/bench_gbdt.py --data runs/main/latest/processed --gr-epochs 3
    python bench/bench_gbdt.py --preset tiny --gr-epochs 1        # seconds

Both models train through ``grmodel.training.loop.train_model`` with the settings the main job
would give them (the library defaults, the models' named defaults, ``train.epochs=3
train.patience=2`` for GR unless ``--gr-epochs``), into a temporary directory, then score the
test split. Each figure is printed as wall seconds and as CPU seconds of this process (user +
system): on a machine shared with other work the wall time is whatever the scheduler gave,
the CPU time is the work itself. The comparison (GR ÷ GBDT) is printed for both.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def timed(fn):  # noqa: ANN001, ANN201 - a tiny helper of a script
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="processed dataset (default: generate --preset)")
    parser.add_argument("--preset", default="default", help="synth preset when --data is not given")
    parser.add_argument("--gr-epochs", type=int, default=3, help="GR's epochs (the main job's 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for GR")
    parser.add_argument("overrides", nargs="*", help="[MODEL:]key=value overrides of either model")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    from _bench_data import processed_dataset

    from grmodel.checkpoint import load_checkpoint
    from grmodel.comparison.plan import model_comparison, plan_comparison
    from grmodel.features import label_array, read_split
    from grmodel.metrics import mae
    from grmodel.predict import predict_frame
    from grmodel.training.loop import train_model

    data = Path(args.data) if args.data else processed_dataset(args.preset)
    overrides = [f"train.epochs={args.gr_epochs}", "train.patience=2", "train.progress=false",
                 f"train.num_threads={args.threads}", "train.on_collapse=warn", *args.overrides]
    plan = plan_comparison(model_comparison("bench", "GBDT beside GR", ["gbdt", "gr"], "gr"), data,
                           overrides=overrides)
    test = read_split(data, "test")
    y = label_array(test, "label")
    figures = {}
    with tempfile.TemporaryDirectory(prefix="bench-gbdt-") as tmp:
        for row, _seed, config in plan.runs:
            result, wall, cpu = timed(lambda c=config, r=row: train_model(c, Path(tmp) / r.name))
            model, _ = load_checkpoint(result.model_dir)
            pred, p_wall, p_cpu = timed(lambda m=model: predict_frame(m, test, batch_size=4096))
            figures[row.name] = {"train_wall": wall, "train_cpu": cpu, "predict_wall": p_wall,
                                 "predict_cpu": p_cpu, "mae": mae(y, pred),
                                 "steps": result.history[-1]["epoch"] + 1,
                                 "kept": result.best_epoch + 1}
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"data: {data} ({len(y)} test rows); {os.cpu_count()} CPUs, load average {load}")
    print("| model | train wall s | train CPU s | predict wall s | predict CPU s |"
          " test rows/CPU-s | test MAE |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, f in figures.items():
        print(f"| {name} | {f['train_wall']:.1f} | {f['train_cpu']:.1f} | {f['predict_wall']:.2f} |"
              f" {f['predict_cpu']:.2f} | {len(y) / max(f['predict_cpu'], 1e-9):,.0f} |"
              f" {f['mae']:.4f} |")
    gr, gbdt = figures["gr"], figures["gbdt"]
    print(f"GR / GBDT: training {gr['train_cpu'] / max(gbdt['train_cpu'], 1e-9):.1f}x the CPU"
          f" ({gr['train_wall'] / max(gbdt['train_wall'], 1e-9):.1f}x the wall), prediction"
          f" {gr['predict_cpu'] / max(gbdt['predict_cpu'], 1e-9):.1f}x the CPU; the GBDT kept"
          f" round {gbdt['kept']} of {gbdt['steps']}, GR epoch {gr['kept']} of {gr['steps']}")


if __name__ == "__main__":
    main()
