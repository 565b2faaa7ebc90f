"""Batch prediction through the registered MLflow pyfunc model: rows/s and peak memory.

Builds a GR model at the paper's sizes (untrained weights, vocabulary fitted on KuaiRec-like
watch times), logs and registers it in a throw-away sqlite tracking store, loads it back by
alias (``models:/NAME@challenger``, the path of ``grmodel predict --model models:/...`` and of
``mlflow models serve``) and scores a DataFrame of ``--rows`` KuaiRec-shaped rows in batches.
Prints the load time, rows/s and the process's peak RSS.

    python bench/bench_predict.py --rows 1000000 --threads 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_gr import bench_schema, kuairec_like, peak_rss_mb

from grmodel import registry, tracking
from grmodel.checkpoint import checkpoint_meta, save_checkpoint
from grmodel.config import RunConfig
from grmodel.models.gr import GRModel

NAME = "bench-gr"


def register_paper_size_model(root: Path, rng: np.random.Generator) -> str:
    """A paper-size GR checkpoint, logged and registered; returns the tracking URI."""
    config = RunConfig()
    _, _, labels = kuairec_like(200_000, rng)
    model = GRModel(bench_schema(), config, GRModel.fit_label_state(labels, config))
    meta = checkpoint_meta(model, epoch=0, step=0, metrics={}, history=[])
    save_checkpoint(root / "model", model, meta)
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
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        register_paper_size_model(Path(tmp), rng)
        ids, _, _ = kuairec_like(args.rows, rng)
        frame = pd.DataFrame(ids, columns=bench_schema().names)
        print(f"{args.rows:,} rows x {ids.shape[1]} feature columns; threads {args.threads}, "
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
