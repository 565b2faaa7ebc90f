"""Data-parallel training throughput on CPU: one process against ``torchrun --nproc_per_node=N``.

    python bench/bench_ddp.py                          # default preset, GR at the paper's sizes
    python bench/bench_ddp.py --preset tiny --steps 20 --batch-size 128   # a quick look

Both runs are the real ``grmodel train`` (the N-process one under torchrun with gloo), on the
same generated KuaiRec-shaped data (cached), for ``--steps`` optimiser steps per process. The
single process gets all ``--cores`` as intra-op threads (``--single-threads`` changes that);
each of the N processes gets cores / N. Throughput is what the trainer reports: training
samples per second over all ranks, startup and validation excluded. On a machine with few
cores, N processes share the cores one process's threads would use, so expect little or no
gain: DDP pays off with a device (or machine) per process. Other work on the machine hurts
multi-threaded processes most (their threads wait for each other): report the load average.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench_data import processed_dataset

SPS = re.compile(r"([\d,.]+) samples/s; model in")


def run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(samples/s reported by grmodel train, wall seconds including startup)."""
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    match = SPS.search(result.stdout)
    if result.returncode != 0 or match is None:
        sys.exit(f"failed ({result.returncode}): {' '.join(command[:6])} ...\n"
                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return float(match.group(1).replace(",", "")), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", choices=("tiny", "default", "full"))
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps per process")
    parser.add_argument("--batch-size", type=int, default=512, help="per process")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--single-threads", type=int, default=None,
                        help="threads of the 1-process run (default: --cores)")
    parser.add_argument("--streaming", action="store_true", help="stream the train split")
    parser.add_argument("overrides", nargs="*", help="extra section.key=value overrides")
    args = parser.parse_args()
    data = processed_dataset(args.preset, args.seed)
    common = [f"train.batch_size={args.batch_size}", "train.epochs=1", f"train.max_steps={args.steps}",
              "train.progress=false", "data.max_eval_rows=4096",
              f"train.streaming={str(args.streaming).lower()}", *args.overrides]
    threads_each = max(1, args.cores // args.nproc)
    threads_one = args.single_threads or args.cores
    figures = {}
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        load_before = os.getloadavg()[0]
        single = [sys.executable, "-m", "grmodel.cli", "train", "--data", str(data),
                  "--out", str(Path(tmp) / "one"), *common, f"train.num_threads={threads_one}"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads_one)}
        figures[1] = run(single, env)
        multi = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={args.nproc}", "-m", "grmodel.cli", "train", "--data", str(data),
                 "--out", str(Path(tmp) / "ddp"), *common, f"train.num_threads={threads_each}"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads_each)}
        figures[args.nproc] = run(multi, env)
        load_after = os.getloadavg()[0]
    one, many = figures[1][0], figures[args.nproc][0]
    print(f"GR training on CPU, {args.preset} data, batch {args.batch_size} per process,"
          f" {args.steps} steps per process, {'streaming' if args.streaming else 'in-memory'} input")
    print(f"  1 process  x {threads_one} threads: {one:9,.0f} samples/s  (wall {figures[1][1]:.0f} s)")
    print(f"  {args.nproc} processes x {threads_each} threads: {many:9,.0f} samples/s"
          f"  (wall {figures[args.nproc][1]:.0f} s, torchrun + gloo)")
    print(f"  ratio {args.nproc}-process / 1-process: {many / one:.2f}x on {os.cpu_count()} cores"
          f" (load average {load_before:.1f} before, {load_after:.1f} after)")


if __name__ == "__main__":
    main()
