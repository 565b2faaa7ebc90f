"""GR training samples/s through the real trainer on one GPU: bf16 autocast, pinned-memory input.

    python bench/bench_train_gpu.py --device cuda --preset default --steps 400
    python bench/bench_train_gpu.py --device cuda --streaming --workers 4 --batch-size 2048
    python bench/bench_train_gpu.py --device cpu --preset tiny --steps 20 --batch-size 128  # anywhere

Unlike ``bench_gr.py`` (the model's step alone, on tensors already on the device), this runs
``grmodel.training.loop.train_model`` end to end on generated KuaiRec-shaped data (cached): batches are
gathered on the host, copied through pinned memory with ``non_blocking`` transfers (in-memory
input) or by a DataLoader with ``pin_memory`` (streaming input), and the step runs under bf16
autocast on CUDA. It runs ``--steps`` optimiser steps (over as many epochs as that takes; a
validation pass ends each epoch). Samples/s is the trainer's own figure (training steps only,
warm-up included); peak GPU memory and host RSS are printed beside it, and ``--json`` writes
every figure to a file as well.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from _bench_data import processed_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", default="default", choices=("tiny", "default", "full"))
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--streaming", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="streaming: DataLoader workers")
    parser.add_argument("--threads", type=int, default=None, help="CPU intra-op threads")
    parser.add_argument("--no-amp", action="store_true", help="fp32 instead of bf16 autocast")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--model-out", type=Path, default=None,
                        help="keep the trained model in this new directory (default: discarded)")
    parser.add_argument("overrides", nargs="*", help="extra section.key=value overrides")
    args = parser.parse_args()

    import torch

    from grmodel.config import RunConfig
    from grmodel.training.loop import train_model

    data = processed_dataset(args.preset, args.seed)
    overrides = [
        f"data.processed_dir={data}", f"train.device={args.device}",
        f"train.epochs={args.steps}", f"train.patience={args.steps}",
        f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}",
        "train.progress=false", "data.max_eval_rows=4096", f"train.amp_bf16={not args.no_amp}",
        f"train.streaming={args.streaming}", f"train.loader_workers={args.workers}",
        *([f"train.num_threads={args.threads}"] if args.threads else []),
        # A speed benchmark of a few steps: a model that has not learnt yet is kept, marked, and
        # its verdict printed and recorded, instead of ending the run before the figures.
        "train.on_collapse=warn", *args.overrides,
    ]
    config = RunConfig().with_overrides(overrides)
    with tempfile.TemporaryDirectory(prefix="bench-train-gpu-") as tmp:
        start = time.perf_counter()
        result = train_model(config, args.model_out or Path(tmp) / "model")
        wall = time.perf_counter() - start
    cuda = args.device.startswith("cuda")
    name = torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)"
    amp = "bf16 autocast" if cuda and not args.no_amp else "fp32"
    source = (f"streaming, {args.workers} loader workers" if args.streaming else "in-memory") + (
        ", pinned memory" if cuda else "")
    print(f"GR training on {name}: {amp}, batch {args.batch_size}, {source}, {args.preset} data")
    steps = result.history[-1]["step"]
    print(f"  {result.samples_per_second:,.0f} samples/s over {steps} steps in {len(result.history)}"
          f" epochs ({result.train_seconds:.1f} s training, {wall:.1f} s wall with setup and"
          " validation)")
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    peak_gpu = torch.cuda.max_memory_allocated() / 1024**3 if cuda else None
    gpu = f"; peak GPU memory {peak_gpu:.2f} GB" if cuda else ""
    load = os.getloadavg()[0]
    print(f"  peak host RSS {peak_rss:.2f} GB{gpu}; load average {load:.1f}")
    if result.collapse and result.collapse.get("collapsed"):
        print(f"  the model collapsed (not a quality figure): {result.collapse.get('reason')}")
    if args.json:
        args.json.write_text(json.dumps({
            "device": name, "precision": amp, "batch_size": args.batch_size, "input": source,
            "preset": args.preset, "steps": steps, "epochs": len(result.history),
            "samples_per_second": result.samples_per_second, "train_seconds": result.train_seconds,
            "wall_seconds": wall, "peak_host_rss_gb": peak_rss, "peak_gpu_memory_gb": peak_gpu,
            "load_average": load, "collapse": result.collapse, "model": vars(config.model),
            "data": str(data),
            "model_dir": str(args.model_out) if args.model_out else None,
        }, indent=2))


if __name__ == "__main__":
    main()
