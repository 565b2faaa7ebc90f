"""Batch prediction through the registered MLflow model: rows/s and peak RSS, streamed from
Parquet (``grmodel predict``) against the in-memory DataFrame path, with the 2 GB target.

Builds a model on KuaiRec-shaped rows -- GR at the paper's sizes trained for
``--train-steps`` optimiser steps (speed, not accuracy; ``--train-steps 0`` keeps random
weights, which never emit ``<eos>``: the worst case), or ``--model vr``, a cheap head that
shows the memory bound at sizes GR would need an hour for on 2 cores -- logs and registers it
in a throw-away sqlite tracking store, and writes ``--rows`` rows of feature ids to Parquet.
Then, each in a fresh process so that its peak RSS is its own:

* **streamed**: the model loaded by alias (``models:/NAME@challenger``, as ``grmodel predict
  --model models:/...`` does) and the file scored by ``grmodel.predict.predict_parquet``, one
  chunk at a time, into an output Parquet file;
* **in memory** (up to ``--in-memory-max-rows``): the whole file read into a DataFrame and
  scored by the pyfunc model (``mlflow.pyfunc.load_model(...).predict``).

Prints rows/s and peak RSS of each, the streamed peak against the 2 GB target, and whether the
two paths' predictions are identical.

    python bench/bench_predict.py --rows 1000000 --threads 2
    python bench/bench_predict.py --rows 10000000 --model vr --set model.emb_dim=4 \
        --set model.encoder_hidden=8
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
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from bench_gr import bench_schema, kuairec_like, peak_rss_mb

from grmodel import registry, tracking
from grmodel.checkpoint import checkpoint_meta, load_checkpoint, save_checkpoint
from grmodel.config import RunConfig
from grmodel.models import model_class
from grmodel.predict import CHUNK_ROWS, predict_parquet
from grmodel.training.batches import SplitArrays
from grmodel.training.loop import fit
from grmodel.vocab import PAD

NAME = "bench-model"
TARGET_MB = 2048
ROW_GROUP_ROWS = 65_536


def build_model(model_dir: Path, name: str, train_steps: int, threads: int,
                rng: np.random.Generator, overrides: list[str]) -> None:
    """GR at the default (paper) sizes trained for ``train_steps`` batches of 512, or an
    untrained model of another name; ``overrides`` change the config (e.g. model sizes)."""
    schema = bench_schema()
    config = RunConfig().with_overrides([
        f"model_name={name}", "train.epochs=1", f"train.max_steps={max(train_steps, 1)}",
        "train.progress=false", f"train.num_threads={threads}", "train.device=cpu",
        "train.on_collapse=warn", *overrides])  # a few steps teach little: measure it anyway
    ids, mask, labels = kuairec_like(512 * max(train_steps, 1) + 512, rng)
    train = SplitArrays(ids[:-512].astype(np.int32), mask[:-512], labels[:-512])
    valid = SplitArrays(ids[-512:].astype(np.int32), mask[-512:], labels[-512:])
    if train_steps > 0 and name == "gr":
        fit(config, schema, train, valid, model_dir)
        return
    cls = model_class(name)
    model = cls(schema, config, cls.fit_label_state(train.label, config))
    save_checkpoint(model_dir, model, checkpoint_meta(model, epoch=0, step=0, metrics={}, history=[]))


def decode_lengths(model_dir: Path, rng: np.random.Generator) -> str:
    """For GR: mean decode steps per row on 4,096 rows against the labels' mean token count."""
    model, meta = load_checkpoint(model_dir)
    if meta["model_name"] != "gr":
        return ""
    ids, mask, _ = kuairec_like(4096, rng)
    _, tokens = model.generate(torch.as_tensor(ids), torch.as_tensor(mask), return_tokens=True)
    steps = float((tokens != PAD).sum(dim=1).float().mean())
    label_tokens = meta["label_state"]["length_stats"]["mean"]
    return (f"; decoding takes {steps:.2f} steps per row (with <eos>), the labels average"
            f" {label_tokens:.2f} tokens + <eos>")


def write_input(path: Path, rows: int, rng: np.random.Generator) -> None:
    """``rows`` rows of feature ids (int64), written a million at a time."""
    names = bench_schema().names
    with pq.ParquetWriter(path, pa.schema([(n, pa.int64()) for n in names])) as writer:
        for start in range(0, rows, 1_000_000):
            ids = kuairec_like(min(1_000_000, rows - start), rng)[0]
            table = pa.table({n: ids[:, j] for j, n in enumerate(names)})
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)


def build(root: Path, name: str, train_steps: int, threads: int, rows: int,
          overrides: list[str]) -> tuple[str, str]:
    """Model, registration and the input file: (tracking URI, a line about the model)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    torch.set_num_threads(threads)
    build_model(root / "model", name, train_steps, threads, rng, overrides)
    uri = register(root)
    about = decode_lengths(root / "model", rng)
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_input(root / "input.parquet", rows, np.random.default_rng(1))
    mb = (root / "input.parquet").stat().st_size / 2**20
    sizes = f" ({' '.join(overrides)})" if overrides else ""
    return uri, (f"model {name}{sizes}, {train_steps if name == 'gr' else 0} training steps, logged and"
                 f" registered in {built:.0f} s{about}; input {rows:,} rows ({mb:,.0f} MB"
                 f" Parquet) written in {time.perf_counter() - t0:.0f} s")


def register(root: Path) -> str:
    """Log and register ``root/model``; returns the tracking URI."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with tracking.pipeline_run(uri, pipeline_run_id="bench", data_version="bench",
                               artifact_root=root / "artifacts") as parent:
        with tracking.stage_run(uri, parent, "train") as run_id:
            registry.log_model(root / "model", name="model")
        registry.register_model(NAME, run_id, artifact="model", tracking_uri=uri)
    return uri


def streamed(root: Path, uri: str, batch_size: int, chunk_rows: int, threads: int
             ) -> tuple[float, float, float]:
    """``grmodel predict``'s path: (load s, predict s, peak RSS MB of this process)."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model_dir = registry.resolve_model_uri(f"models:/{NAME}@challenger", uri,
                                           dst_dir=root / "download")
    model, _ = load_checkpoint(model_dir)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    predict_parquet(model, root / "input.parquet", root / "output.parquet", batch_size=batch_size,
                    chunk_rows=chunk_rows)
    return load_s, time.perf_counter() - t0, peak_rss_mb()


def in_memory(root: Path, uri: str, batch_size: int, threads: int) -> tuple[float, float, float]:
    """The pyfunc path on the whole file as one DataFrame: (load s, predict s, peak RSS MB)."""
    import mlflow

    torch.set_num_threads(threads)
    tracking.connect(uri)
    t0 = time.perf_counter()
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@challenger")
    load_s = time.perf_counter() - t0
    frame = pd.read_parquet(root / "input.parquet")
    t0 = time.perf_counter()
    pred = model.predict(frame, params={"batch_size": batch_size})
    predict_s = time.perf_counter() - t0
    np.save(root / "in_memory.npy", np.asarray(pred))
    return load_s, predict_s, peak_rss_mb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--model", default="gr", help="gr (paper sizes) or another zoo model")
    parser.add_argument("--batch-size", type=int, default=registry.DEFAULT_BATCH_SIZE)
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. model.emb_dim=8 (a cheaper model)")
    parser.add_argument("--in-memory-max-rows", type=int, default=2_000_000,
                        help="run the in-memory comparison only up to this many rows")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    spawn = multiprocessing.get_context("spawn")

    def child(fn, *fn_args):  # a fresh process per measurement: its peak RSS is its own
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            return pool.submit(fn, *fn_args).result()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        uri, about = child(build, root, args.model, args.train_steps, args.threads, args.rows,
                           args.set)
        print(about)
        print(f"threads {args.threads}, batch {args.batch_size}, chunk {args.chunk_rows:,} rows")
        load_s, predict_s, rss = child(streamed, root, uri, args.batch_size, args.chunk_rows,
                                       args.threads)
        verdict = "within" if rss <= TARGET_MB else "OVER"
        print(f"streamed  (grmodel predict): load {load_s:.1f} s; {args.rows:,} rows in"
              f" {predict_s:.1f} s = {args.rows / predict_s:,.0f} rows/s; peak RSS {rss:,.0f} MB"
              f" ({verdict} the {TARGET_MB:,} MB target)")
        if args.rows > args.in_memory_max_rows:
            print(f"in memory: skipped above {args.in_memory_max_rows:,} rows"
                  " (--in-memory-max-rows)")
            return
        load_s, predict_s, rss_memory = child(in_memory, root, uri, args.batch_size,
                                              args.threads)
        print(f"in memory (pyfunc, one DataFrame): load {load_s:.1f} s; {args.rows:,} rows in"
              f" {predict_s:.1f} s = {args.rows / predict_s:,.0f} rows/s; peak RSS"
              f" {rss_memory:,.0f} MB")
        out = pq.read_table(root / "output.parquet", columns=["prediction"])
        same = np.array_equal(out.column(0).to_numpy(), np.load(root / "in_memory.npy"))
        print(f"streamed peak RSS = {rss / rss_memory:.2f} x in memory; predictions identical:"
              f" {same}")


if __name__ == "__main__":
    main()
