"""Batch prediction through the registered MLflow pyfunc model: rows/s and peak memory.

Builds a GR model at the paper's sizes on KuaiRec-like rows, trained for ``--train-steps``
optimiser steps: speed, not accuracy; a few steps teach it to end sequences with ``<eos>`` at
realistic lengths (``--train-steps 0`` keeps random weights, which never emit ``<eos>`` and
decode every row to the maximum length: the worst case). Logs and registers it in a throw-away
sqlite tracking store, loads it back by alias (``models:/NAME@challenger``, the path of
``grmodel predict --model models:/...`` and ``mlflow models serve``) and scores a DataFrame of
``--rows`` KuaiRec-shaped rows in batches. Prints the load time, rows/s and peak RSS.

    python bench/bench_predict.py --rows 1000000 --threads 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_gr import bench_schema, kuairec_like, peak_rss_mb

from grmodel import registry, tracking
from grmodel.checkpoint import checkpoint_meta, load_checkpoint, save_checkpoint
from grmodel.config import RunConfig
from grmodel.models.gr import GRModel
from grmodel.training.batches import SplitArrays
from grmodel.training.loop import fit
from grmodel.vocab import PAD

NAME = "bench-gr"


def paper_size_model(model_dir: Path, train_steps: int, threads: int, rng: np.random.Generator) -> None:
    """A GR checkpoint at the default (paper) sizes, trained for ``train_steps`` batches of 512."""
    schema = bench_schema()
    config = RunConfig().with_overrides([
        "train.epochs=1", f"train.max_steps={max(train_steps, 1)}", "train.progress=false",
        f"train.num_threads={threads}", "train.device=cpu"])
    ids, mask, labels = kuairec_like(512 * max(train_steps, 1) + 512, rng)
    train = SplitArrays(ids[:-512].astype(np.int32), mask[:-512], labels[:-512])
    valid = SplitArrays(ids[-512:].astype(np.int32), mask[-512:], labels[-512:])
    if train_steps > 0:
        fit(config, schema, train, valid, model_dir)
        return
    model = GRModel(schema, config, GRModel.fit_label_state(train.label, config))
    save_checkpoint(model_dir, model, checkpoint_meta(model, epoch=0, step=0, metrics={}, history=[]))


def decode_lengths(model_dir: Path, rng: np.random.Generator) -> tuple[float, float]:
    """Mean decode steps per row on 4,096 rows, and the labels' mean token count."""
    model, meta = load_checkpoint(model_dir)
    ids, mask, _ = kuairec_like(4096, rng)
    _, tokens = model.generate(torch.as_tensor(ids), torch.as_tensor(mask), return_tokens=True)
    return float((tokens != PAD).sum(dim=1).float().mean()), meta["label_state"]["length_stats"]["mean"]


def build(root: Path, train_steps: int, threads: int) -> tuple[str, float, float, float]:
    """Model, registration and decode lengths: (tracking URI, seconds, steps, label tokens)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    paper_size_model(root / "model", train_steps, threads, rng)
    uri = register(root)
    return uri, time.perf_counter() - t0, *decode_lengths(root / "model", rng)


def register(root: Path) -> str:
    """Log and register ``root/model``; returns the tracking URI."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with tracking.pipeline_run(uri, pipeline_run_id="bench", data_version="bench",
                               artifact_root=root / "artifacts") as parent:
        with tracking.stage_run(uri, parent, "train_gr") as run_id:
            registry.log_model(root / "model")
        registry.register_model(NAME, run_id, tracking_uri=uri)
    return uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=registry.DEFAULT_BATCH_SIZE)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=40)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(1)

    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        # Built in a child process, so this process's peak RSS is the prediction path's alone.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            uri, build_s, steps, label_tokens = pool.submit(build, Path(tmp), args.train_steps,
                                                            args.threads).result()
        print(f"model: {args.train_steps} training steps, logged and registered in {build_s:.0f} s; "
              f"decoding takes {steps:.2f} steps per row (with <eos>), the labels average "
              f"{label_tokens:.2f} tokens + <eos>")
        tracking.connect(uri)
        frame = pd.DataFrame(kuairec_like(args.rows, rng)[0], columns=bench_schema().names)
        print(f"{args.rows:,} rows x {frame.shape[1]} feature columns; threads {args.threads}, "
              f"batch {args.batch_size}; peak RSS before loading {peak_rss_mb():,.0f} MB")
        t0 = time.perf_counter()
        model = mlflow.pyfunc.load_model(f"models:/{NAME}@challenger")
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred = model.predict(frame, params={"batch_size": args.batch_size})
        predict_s = time.perf_counter() - t0
    assert len(pred) == args.rows and np.isfinite(pred).all()
    print(f"load by alias {load_s:.1f} s; predict {predict_s:.1f} s = {args.rows / predict_s:,.0f} rows/s; "
          f"peak RSS {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
