"""GR training and prediction speed at the paper's sizes, on CPU threads or one GPU.

Prints training samples/s with CLEM + embedding mixup (batch 512, d_model 128, 3 layers), for
both CLEM pass-1 variants (the paper's, with gradient and dropout, and the detached one), and
prediction rows/s at batch 4096 with mixup decoding, measured in the same run, plus peak
memory: our decoder (key/value cache, rows leave at <eos>) against the same model decoding
without a cache, both with early exit and as the authors' decoder does (whole prefix re-run
for every one of max_decode_len + 1 steps). ``--json`` writes every figure to a file as well.
Targets (2 CPU threads): training with the paper's CLEM ≥ 1,300 samples/s (2x the
authors' code, 637 samples/s on the same machine); prediction ≥ 10,000 rows/s. Each is printed
beside its figure, with the load average (other processes on the cores slow torch's threads).

Decoding speed depends on how many steps rows take, so measure prediction with a trained model
on real inputs: ``--model-dir`` (a GR model directory) and ``--data`` (its processed dataset;
the test split is scored). Without them the briefly trained benchmark model is used, which
emits <eos> at once and says little about decoding.

    python bench/bench_gr.py --threads 2 --model-dir runs/main/latest/models/gr \
        --data runs/main/latest/processed
    python bench/bench_gr.py --device cuda --train-batches 200
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np
import torch

from grmodel.checkpoint import load_checkpoint
from grmodel.config import RunConfig
from grmodel.distributed import autocast, resolve_device
from grmodel.features import FeatureSchema, FieldSpec, read_split
from grmodel.models.gr import GRModel
from grmodel.training.epochs import make_optimizer


def kuairec_like(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature ids shaped like the KuaiRec features and watch times (s) with its tail."""
    schema = bench_schema()
    ids = np.stack([rng.integers(2, f.cardinality, n) for f in schema.fields], axis=1)
    mask = np.ones(ids.shape, dtype=np.float32)
    seconds = np.exp(rng.normal(np.log(7.0), 0.9, n))
    seconds[rng.random(n) < 0.02] = 0.0
    seconds[rng.random(n) < 0.01] *= 20
    return ids, mask, np.round(seconds, 3)


def bench_schema() -> FeatureSchema:
    user = [FieldSpec("user_id", "user", 7178)] + [
        FieldSpec(f"onehot_feat{i}", "user", c + 2)
        for i, c in enumerate([2, 8, 30, 1076, 12, 10, 3, 47, 340, 7, 5, 3, 2, 2, 2, 2, 2, 2])
    ]
    item = [FieldSpec("video_id", "item", 10730), FieldSpec("item_duration_bucket", "item", 52)] + [
        FieldSpec(f"item_tag_{i}", "item", 33, table="item_tag") for i in range(4)
    ]
    return FeatureSchema(tuple(user + item))


TRAIN_TARGET = 1_300  # samples/s, 2 CPU threads, the paper's CLEM
PREDICT_TARGET = 10_000  # rows/s, 2 CPU threads
# train.clem_pass1 -> what it means (config.py); both are measured in one run.
CLEM_PASS1 = {"grad": "with gradient and dropout, the paper's", "detached": "detached"}


def training_rate(model: GRModel, config: RunConfig, ids: np.ndarray, mask: np.ndarray,
                  labels: np.ndarray, batch_size: int, device: torch.device
                  ) -> tuple[float, float]:
    """Training samples per second of wall time and per CPU-second of this process, over the
    batches after 3 untimed warm-up ones. With other processes on the cores the wall figure
    drops (torch's threads wait for each other); the CPU figure much less."""
    tokens = torch.as_tensor(model.targets(labels)["tokens"])
    optimizer = make_optimizer(model, config)
    model.train()
    total = len(labels) // batch_size
    timed = cpu = 0.0
    for b in range(total):
        rows = slice(b * batch_size, (b + 1) * batch_size)
        batch = {
            "ids": torch.as_tensor(ids[rows], device=device),
            "mask": torch.as_tensor(mask[rows], device=device),
            "label": torch.as_tensor(labels[rows], dtype=torch.float32, device=device),
            "tokens": tokens[rows].to(device),
        }
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        # Mid-run step: p ≈ 0.5, so both CLEM passes and the mixture run.
        with autocast(device):
            loss, _ = model.loss(batch, step=total // 2, total_steps=total)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if b >= 3:  # warm-up batches excluded
            timed += time.perf_counter() - t0
            cpu += time.process_time() - c0
    return batch_size * (total - 3) / timed, batch_size * (total - 3) / cpu


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train-batches", type=int, default=30, help="3 of them warm up, untimed")
    parser.add_argument("--batch-size", type=int, default=512, help="training batch (the paper's 512)")
    parser.add_argument("--predict-rows", type=int, default=16384)
    parser.add_argument("--mixup", default="window", choices=["window", "full", "none"])
    parser.add_argument("--model-dir", default=None, help="trained GR model for the prediction part")
    parser.add_argument("--data", default=None, help="processed dataset whose test split is scored")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    if args.train_batches < 4:
        parser.error("--train-batches must be at least 4 (3 warm up)")
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rng = np.random.default_rng(0)
    batch_size = args.batch_size
    ids, mask, labels = kuairec_like(batch_size * args.train_batches, rng)
    train_sps, per_cpu = {}, {}
    for variant in CLEM_PASS1:
        config = RunConfig().with_overrides([f"train.mixup={args.mixup}",
                                             f"train.clem_pass1={variant}"])
        torch.manual_seed(0)
        model = GRModel(bench_schema(), config, GRModel.fit_label_state(labels, config)).to(device)
        if not train_sps:
            lengths = model.label_state["length_stats"]
            print(f"device {device}, threads {args.threads}; vocabulary {model.vocab.size} tokens,"
                  f" max decode length {model.max_decode_len}, mean length {lengths['mean']:.2f}")
        train_sps[variant], per_cpu[variant] = training_rate(model, config, ids, mask, labels,
                                                              batch_size, device)
        print(f"training (CLEM pass 1 {CLEM_PASS1[variant]}, {args.mixup} mixup, batch"
              f" {batch_size}): {train_sps[variant]:,.0f} samples/s"
              f" ({per_cpu[variant]:,.0f} per CPU-second); peak RSS {peak_rss_mb():,.0f} MB")

    if args.model_dir:
        model, _ = load_checkpoint(args.model_dir, device)
        test = read_split(args.data, "test", max_rows=args.predict_rows)
        pids, pmask = model.schema.arrays(test)
        source = f"{args.model_dir} on {len(pids):,} test rows of {args.data}"
    else:
        pids, pmask, _ = kuairec_like(args.predict_rows, rng)
        source = f"the benchmark model on {len(pids):,} generated rows"
    model.eval()
    modes = {"ours (cache, early exit)": (True, True), "no cache, early exit": (False, True),
             "authors' (no cache, all steps)": (False, False)}
    rates, steps = {}, []
    for name, (use_cache, early_exit) in modes.items():
        t0 = time.perf_counter()
        for start in range(0, len(pids), 4096):
            i = torch.as_tensor(pids[start : start + 4096], device=device)
            m = torch.as_tensor(pmask[start : start + 4096], device=device)
            with autocast(device):
                _, tokens = model.generate(i, m, use_cache=use_cache, early_exit=early_exit,
                                           return_tokens=True)
            if (use_cache, early_exit) == (True, True):  # steps each row takes to its <eos>
                steps.extend((tokens != 0).sum(dim=1).tolist())
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates[name] = len(pids) / (time.perf_counter() - t0)
    ours = rates["ours (cache, early exit)"]
    print(f"prediction (batch 4096, {model.mixup} mixup, {source}; "
          f"{np.mean(steps):.2f} decode steps per row):")
    for name, rate in rates.items():
        print(f"  {name}: {rate:,.0f} rows/s; ours is {ours / rate:.2f}x this")
    print(f"peak RSS {peak_rss_mb():,.0f} MB; load average {os.getloadavg()[0]:.1f}")
    paper = train_sps["grad"]
    print(f"targets: training with the paper's CLEM {paper:,.0f} samples/s against"
          f" {TRAIN_TARGET:,} ({'met' if paper >= TRAIN_TARGET else 'NOT met'}); prediction"
          f" {ours:,.0f} rows/s against {PREDICT_TARGET:,}"
          f" ({'met' if ours >= PREDICT_TARGET else 'NOT met'})")
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    if peak_gpu is not None:
        print(f"peak GPU memory {peak_gpu:,.0f} MB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({
                "device": str(device), "threads": args.threads, "mixup": args.mixup,
                "batch_size": batch_size, "train_batches": args.train_batches,
                "model": vars(model.config.model), "load_average": os.getloadavg(),
                "train_samples_per_second": train_sps, "train_samples_per_cpu_second": per_cpu,
                "predict_batch_size": 4096,
                "predict_source": source, "decode_steps_per_row": float(np.mean(steps)),
                "predict_rows_per_second": rates, "peak_rss_mb": peak_rss_mb(),
                "peak_gpu_memory_mb": peak_gpu,
            }, f, indent=2)


if __name__ == "__main__":
    main()
