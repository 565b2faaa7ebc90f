"""Peak memory of training on the full-size generated KuaiRec: streaming input against in-memory.

    python bench/bench_train_memory.py --preset full          # ~11M train rows; ~3 GB on disk
    python bench/bench_train_memory.py --preset default --steps 20

The data is generated and ingested once (cached, shared with bench_ingest.py). Each input mode
then trains GR (paper sizes, batch 512) for ``--steps`` steps in a fresh subprocess, whose peak
RSS (``ru_maxrss``) is that mode's own: label-state fitting, the train input, the validation
split (capped at ``--eval-rows`` rows: exact XAUC holds every prediction, and decoding a
million validation rows would dominate the time) and the model. The streaming trainer holds one
row group plus the shuffle buffer of the train split; the in-memory one holds all of it, plus
every row's GR token targets.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench_data import processed_dataset


def _phase(args: argparse.Namespace) -> None:
    """Train once in this process; print the figures as one JSON line."""
    import torch

    from grmodel.config import RunConfig
    from grmodel.training.loop import train_model

    torch.set_num_threads(args.threads)
    config = RunConfig().with_overrides([
        f"data.processed_dir={args.data}", "train.epochs=1", f"train.max_steps={args.steps}",
        "train.progress=false", f"data.max_eval_rows={args.eval_rows}", "train.device=cpu",
        f"train.streaming={args.mode == 'streaming'}", f"train.num_threads={args.threads}",
    ])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-train-memory-") as tmp:
        result = train_model(config, Path(tmp) / "model")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_gb": usage.ru_maxrss / 1024**2,
                      "samples_per_second": result.samples_per_second,
                      "load_average": os.getloadavg()[0]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="full", choices=("tiny", "default", "full"))
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--eval-rows", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["streaming", "in-memory"],
                        choices=("streaming", "in-memory"))
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        _phase(args)
        return

    data = processed_dataset(args.preset, args.seed)
    manifest = json.loads((data / "manifest.json").read_text())
    rows = manifest["splits"]["rows"] if "rows" in manifest["splits"] else manifest["splits"]
    size_gb = sum(f.stat().st_size for f in data.glob("*.parquet")) / 1024**3
    print(f"{args.preset} data: {rows} rows, {size_gb:.2f} GB of Parquet in {data}")
    for mode in args.modes:
        command = [sys.executable, __file__, "--mode", mode, "--data", str(data),
                   "--steps", str(args.steps), "--eval-rows", str(args.eval_rows),
                   "--threads", str(args.threads)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            sys.exit(f"{mode} failed:\n{result.stderr[-4000:]}")
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"  {mode:9}: peak RSS {figures['peak_rss_gb']:.2f} GB, {figures['seconds']:.0f} s"
              f" for {args.steps} steps + setup + validation on {args.eval_rows:,} rows"
              f" ({figures['samples_per_second']:,.0f} samples/s; load average"
              f" {figures['load_average']:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
