"""The pipeline's stages as plain functions on directories: what every component calls.

Each stage reads its inputs from directories, writes its output directory atomically (complete
or absent) and leaves a :class:`StageRecord` (``stage.json``) in it: the configs it ran with,
its metrics and curves, and the files worth keeping. The data stages and the trainings are pure
functions of the data version and the configs, so Kubeflow may cache them. Given a
``StageTracking``, a stage logs its own MLflow run while it runs (``grmodel.pipeline.live``);
:func:`track_and_register` at the end of a run nests those runs under the pipeline run's parent,
and logs from the records what ran untracked or came from Kubeflow's cache.

Stages in order: :func:`fetch_data` → :func:`validate_data` (raw) → :func:`ingest` →
:func:`validate_data` (processed) → :func:`build_vocab` → :func:`encode_labels` →
:func:`train` (GR, and each baseline) → :func:`evaluate` → :func:`track_and_register`;
:func:`close_tracking` runs last whatever happened.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grmodel.atomic import atomic_directory, through_json, write_json_atomic, write_text_atomic
from grmodel.comparison.plan import ComparisonPlan, model_comparison, plan_comparison
from grmodel.comparison.report import results_table
from grmodel.comparison.results import run_entry, write_comparison_report
from grmodel.pipeline.live import StageTracking, live_run
from grmodel.reporting.paper import PAPER_ANCHORS

log = logging.getLogger(__name__)

STAGE_RECORD = "stage.json"
VOCABULARY_FILE = "vocabulary.json"  # build_vocab's record: the label state and what it was built from
LABEL_STATE_FILE = "label_state.json"  # a model's label state alone (what --label-state reads)
TOKENS_FILE = "tokens.parquet"
GR = "gr"  # the model the pipeline ships; the others trained beside it are its baselines
COMPARISON = ("pipeline", "GR against the baselines")  # the evaluation report's name and title
DATA_SOURCES = ("dvc", "generate", "path")


class StageError(ValueError):
    """A stage that cannot run on the inputs it was given (names the input and the rule)."""


@dataclass
class StageRecord:
    """What a stage did, kept beside its output and logged to MLflow at the end of the run."""

    stage: str
    params: dict[str, Any] = field(default_factory=dict)  # configs, logged flattened as params
    metrics: dict[str, float] = field(default_factory=dict)
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # curves by prefix
    artifacts: list[str] = field(default_factory=list)  # paths relative to the stage directory
    started: float = 0.0  # Unix seconds
    ended: float = 0.0
    mlflow_run_id: str = ""  # the run the stage logged while it ran ("": not tracked live)

    def write(self, out_dir: Path) -> None:
        write_json_atomic(out_dir / STAGE_RECORD, dataclasses.asdict(self))

    @classmethod
    def read(cls, stage_dir: str | Path) -> StageRecord:
        path = Path(stage_dir) / STAGE_RECORD
        if not path.is_file():
            raise StageError(f"{path}: not found (rule: every stage output holds its {STAGE_RECORD})")
        return cls(**json.loads(path.read_text()))


# --------------------------------------------------------------------------------- data


def fetch_data(
    out_dir: str | Path,
    *,
    source: str = "dvc",
    data_version: str = "",
    data_repo: str = ".",
    preset: str = "default",
    data_seed: int = 2024,
    tracking: StageTracking | None = None,
) -> dict[str, Any]:
    """Write exactly one raw KuaiRec-format data version into ``out_dir``; return its version.

    ``dvc``: the version ``data.dvc`` records in the git + DVC repository ``data_repo`` (or,
    with ``data_version``, any version some commit of it records): the workspace's version is
    pulled or regenerated and verified, and refused when ``data/`` was edited after
    ``dvc add``; another version is read through the DVC API at the commit that recorded it.
    ``generate``: the synth ``preset`` with ``data_seed``. ``path``: the directory
    ``data_repo`` as it is (real KuaiRec). The version is DVC's directory hash in every case.
    """
    from grmodel import versioning
    from grmodel.redact import strip_credentials

    started = time.time()
    if source not in DATA_SOURCES:
        raise StageError(f"data source {source!r}: expected one of {list(DATA_SOURCES)}")
    out = Path(out_dir)
    git_rev = None  # a commit whose data.dvc records the version (dvc sources)
    with live_run(tracking, "fetch_data", started) as live, atomic_directory(out) as tmp:
        raw = tmp / "raw"
        if source == "dvc":
            repo = _checkout(data_repo, tmp / "repo")
            recorded = versioning.read_version(repo).md5
            version = data_version or recorded
            if version == recorded:
                how = versioning.ensure_data(repo)
                versioning.require_version(repo, version)
                shutil.copytree(repo / versioning.DATA_DIR, raw)
            else:
                versioning.export_version(repo, version, raw)
                how = "exported"
            git_rev = versioning.version_rev(repo, version)
        elif source == "generate":
            from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec

            generate_kuairec(raw, SynthConfig.preset(preset, seed=data_seed))
            how = "generated"
        else:
            given = Path(data_repo)
            if not given.is_dir():
                raise StageError(f"data source path: {given} is not a directory")
            shutil.copytree(given, raw)
            how = "copied"
        shutil.rmtree(tmp / "repo", ignore_errors=True)
        got = versioning.directory_hash(raw)
        if data_version and got != data_version:
            raise StageError(f"data version {data_version} was asked for, but the {source} data"
                             f" hashes to {got}")
        result = {"data_version": got, "obtained": how, "source": source, "git_rev": git_rev,
                  "files": sorted(p.name for p in raw.iterdir())}
        record = StageRecord(
            "fetch_data",
            params={"data": {"source": source, "data_version": got, "git_rev": git_rev,
                             "repo": strip_credentials(str(data_repo)), "preset": preset,
                             "data_seed": data_seed}},
            metrics={"raw_bytes": float(sum(p.stat().st_size for p in raw.rglob("*") if p.is_file()))},
            started=started, ended=time.time(), mlflow_run_id=live.run_id,
        )
        record.write(tmp)
        live.log_record(record, tmp)
    log.info("data version %s (%s) in %s", got, how, out)
    return result


def _checkout(data_repo: str, clone_dir: Path) -> Path:
    """The git + DVC repository: a local path as it is, a URL cloned (with its history, which
    maps data versions to commits) into ``clone_dir``."""
    import subprocess

    from grmodel.redact import redact

    if not data_repo:
        raise StageError("data source dvc: data_repo is empty (rule: name the git + DVC"
                         " repository, a path or a URL)")
    if data_repo.startswith("-"):
        raise StageError(f"data_repo {redact(data_repo)!r}: starts with '-' (rule: data_repo is a"
                         " path or a git URL, never a git option)")
    if not GIT_URL.match(data_repo):
        return Path(data_repo).resolve()
    try:
        # "--" ends git's options: the URL is never read as one.
        subprocess.run(["git", "clone", "--quiet", "--", data_repo, str(clone_dir)], check=True,
                       capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = " ".join(str(getattr(exc, "stderr", "") or exc).split())
        raise StageError(f"git clone of data_repo {redact(data_repo)} failed: {redact(detail)}"
                         " (rule: data_repo must be a reachable git + DVC repository)") from None
    return clone_dir


GIT_URL = re.compile(r"^(https?|ssh|git|file)://|^[\w.-]+@[\w.-]+:")


def raw_dir(fetched: str | Path) -> Path:
    """The raw files inside a :func:`fetch_data` output."""
    return Path(fetched) / "raw"


def validate_data(data_dir: str | Path, kind: str, out_dir: str | Path,
                  tracking: StageTracking | None = None) -> dict[str, Any]:
    """The great-expectations gate: ``kind`` is ``raw`` (a :func:`fetch_data` output) or
    ``processed`` (an :func:`ingest` output). Writes the reports, then raises
    ``ValidationFailed`` when a check failed, which stops the pipeline."""
    from grmodel.validation import validate_processed, validate_raw_kuairec

    started = time.time()
    if kind not in ("raw", "processed"):
        raise StageError(f"validation kind {kind!r}: expected 'raw' or 'processed'")
    with live_run(tracking, f"validate_{kind}", started) as live:
        if kind == "raw":
            report = validate_raw_kuairec(raw_dir(data_dir))
        else:
            report = validate_processed(Path(data_dir))
        out = Path(out_dir)
        # The report is kept even when the gate fails: it is what the user reads next.
        out.mkdir(parents=True, exist_ok=True)
        report.write(out)
        counts = report.counts()
        record = StageRecord(
            f"validate_{kind}",
            params={"validation": {"suite": report.suite, **report.params}},
            metrics={f"checks_{k}": float(v) for k, v in counts.items()},
            artifacts=["validation.json", "validation.md", "validation.html"],
            started=started, ended=time.time(), mlflow_run_id=live.run_id,
        )
        record.write(out)
        live.log_record(record, out)
        report.raise_for_failure()
    return {"success": report.success, "counts": counts, "summary": report.summary()}


def validation_gate(data_dir: str | Path, kind: str, data_version: str, report: Any,
                    html_path: str | Path, checks: Any,
                    tracking: StageTracking | None = None) -> str:
    """What the validate components do around :func:`validate_data`: the HTML report to
    ``html_path`` (for the Kubeflow UI, even when the gate fails), the counts as KFP metrics
    (``checks``) and the data version as ``report``'s metadata; returns the summary line."""
    try:
        result = validate_data(data_dir, kind, report.path, tracking)
    finally:  # the report is the one thing a failed gate must leave behind
        page = Path(report.path) / "validation.html"
        if page.is_file():
            shutil.copyfile(page, html_path)
    report.metadata.update({"kind": kind, "data_version": data_version})
    for status, count in result["counts"].items():
        checks.log_metric(f"{kind}_checks_{status}", count)
    return result["summary"]


def ingest(fetched_dir: str | Path, out_dir: str | Path, options: dict[str, Any] | None = None,
           tracking: StageTracking | None = None, engine: str = "pandas") -> dict[str, Any]:
    """Turn raw KuaiRec files into the processed train/valid/test tables (``options``:
    fields of ``IngestConfig``, such as ``split`` and ``label_mode``), with ``engine`` pandas
    (one process) or spark (grmodel/data/spark/, the same tables)."""
    from grmodel.data.io import DataSpecError
    from grmodel.data.kuairec.ingest import IngestConfig, ingest_kuairec
    from grmodel.features import read_manifest

    started = time.time()
    check_engine(engine)
    try:
        config = IngestConfig.from_dict(options or {})
    except DataSpecError as exc:
        raise StageError(f"ingest options: {exc}") from None
    with live_run(tracking, "ingest", started) as live, atomic_directory(out_dir) as tmp:
        if engine == "spark":
            from grmodel.data.spark.kuairec import ingest_kuairec_spark  # the optional extra

            ingest_kuairec_spark(raw_dir(fetched_dir), tmp, config)
        else:
            ingest_kuairec(raw_dir(fetched_dir), tmp, config)  # the output is the processed dataset
        manifest = read_manifest(tmp)
        rows = {f"{split}_rows": float(n) for split, n in manifest["splits"]["rows"].items()}
        record = StageRecord("ingest", params={"ingest": dataclasses.asdict(config), "engine": engine},
                             metrics=rows,
                             artifacts=["manifest.json"], started=started,
                             ended=time.time(), mlflow_run_id=live.run_id)
        record.write(tmp)
        live.log_record(record, tmp)
    return {"rows": rows, "label": manifest.get("label")}


# --------------------------------------------------------------------------- vocabulary


def build_vocab(processed: str | Path, out_dir: str | Path, overrides: list[str] | None = None,
                tracking: StageTracking | None = None, engine: str = "pandas") -> dict[str, Any]:
    """GR's vocabulary (its label state: token values, decode length) from the train labels;
    engine spark counts the labels by value in Spark and fits the same state from the counts."""
    from grmodel.features import read_labels
    from grmodel.models.gr import GRModel, label_state_from_counts
    from grmodel.training.records import dataset_fingerprint

    started = time.time()
    check_engine(engine)
    data = Path(processed)
    config = gr_config(data, overrides)
    with live_run(tracking, "build_vocab", started) as live, atomic_directory(out_dir) as tmp:
        if engine == "spark":
            from grmodel.data.spark.session import spark_session  # the optional extra
            from grmodel.data.spark.tokens import train_label_counts

            values, counts = train_label_counts(spark_session(), data, config.data.label_column,
                                                config.data.max_train_rows)
            state, train_rows = label_state_from_counts(values, counts, config), int(counts.sum())
        else:
            labels = read_labels(data, "train", config.data.label_column, config.data.max_train_rows)
            state, train_rows = GRModel.fit_label_state(labels, config), int(labels.size)
        record = {"label_state": state, "vocab_config": dataclasses.asdict(config.vocab),
                  "max_decode_len_config": config.model.max_decode_len,
                  "dataset_fingerprint": dataset_fingerprint(data), "train_rows": train_rows}
        write_json_atomic(tmp / VOCABULARY_FILE, record)
        stage = StageRecord(
            "build_vocab", params={"vocab": record["vocab_config"]},
            metrics={"vocab_size": float(len(state["vocab"]["values"])),
                     "max_decode_len": float(state["max_decode_len"])},
            artifacts=[VOCABULARY_FILE], started=started, ended=time.time(),
            mlflow_run_id=live.run_id,
        )
        stage.write(tmp)
        live.log_record(stage, tmp)
    return {"vocab_size": len(state["vocab"]["values"]), "max_decode_len": state["max_decode_len"]}


def read_vocabulary(vocab_dir: str | Path, config: Any, data: Path) -> dict[str, Any]:
    """The label state in ``vocab_dir``, checked against the config and data it will serve."""
    from grmodel.training.records import dataset_fingerprint

    path = Path(vocab_dir) / VOCABULARY_FILE
    if not path.is_file():
        raise StageError(f"{path}: not found (rule: build_vocab writes {VOCABULARY_FILE})")
    record = json.loads(path.read_text())
    if record["vocab_config"] != through_json(dataclasses.asdict(config.vocab)):
        raise StageError(f"{path}: built with vocab config {record['vocab_config']}, but this stage"
                         f" runs with {dataclasses.asdict(config.vocab)} (rule: one GR config per run)")
    if record["dataset_fingerprint"] != dataset_fingerprint(data):
        raise StageError(f"{path}: built on another dataset than {data}")
    return record["label_state"]


def encode_labels(processed: str | Path, vocab_dir: str | Path, out_dir: str | Path,
                  overrides: list[str] | None = None, tracking: StageTracking | None = None,
                  engine: str = "pandas") -> dict[str, Any]:
    """Greedy-encode every training label into its token sequence, gate the sequences with
    the token suite (every label encodes within the decode length and decodes back), and
    write them for training: ``tokens.parquet`` with one fixed-length list per train row.
    Engine spark encodes in a pandas UDF over the same codec and gates every distinct label
    (a sequence depends on the scaled label alone, so that covers every row)."""
    check_engine(engine)
    if engine == "spark":
        return _encode_labels_spark(Path(processed), vocab_dir, out_dir, overrides, tracking)
    import pyarrow as pa
    import pyarrow.parquet as pq

    from grmodel.codec import LabelCodec
    from grmodel.features import read_labels
    from grmodel.validation import validate_tokens
    from grmodel.vocab import Vocabulary

    started = time.time()
    data = Path(processed)
    config = gr_config(data, overrides)
    state = read_vocabulary(vocab_dir, config, data)
    vocab = Vocabulary.from_dict(state["vocab"])
    with live_run(tracking, "encode_labels", started) as live, atomic_directory(out_dir) as tmp:
        labels = read_labels(data, "train", config.data.label_column, config.data.max_train_rows)
        max_len = int(state["max_decode_len"])
        encoded = LabelCodec(vocab).encode(labels, max_len=max_len)
        report = validate_tokens(labels, vocab, max_len, encoded=encoded,
                                 source=str(data / "train.parquet"))
        report.write(tmp / "validation")
        report.raise_for_failure()  # nothing is written when a sequence is wrong
        width = encoded.sequences.shape[1]
        flat = pa.array(encoded.sequences.astype(np.int32).ravel())
        table = pa.table({
            "label": pa.array(labels),
            "length": pa.array(encoded.lengths.astype(np.int32)),
            "tokens": pa.FixedSizeListArray.from_arrays(flat, width),
        })
        pq.write_table(table, tmp / TOKENS_FILE)
        lengths = encoded.lengths
        record = StageRecord(
            "encode_labels", params={"tokens": {"max_decode_len": max_len, "rows": int(labels.size)}},
            metrics={"mean_length": float(lengths.mean()), "max_length": float(lengths.max()),
                     **{f"checks_{k}": float(v) for k, v in report.counts().items()}},
            artifacts=["validation"], started=started, ended=time.time(), mlflow_run_id=live.run_id,
        )
        record.write(tmp)
        live.log_record(record, tmp)
    return {"rows": int(labels.size), "mean_length": float(lengths.mean())}


def _encode_labels_spark(data: Path, vocab_dir: str | Path, out_dir: str | Path,
                         overrides: list[str] | None, tracking: StageTracking | None
                         ) -> dict[str, Any]:
    from grmodel.data.spark.session import spark_session  # the optional extra
    from grmodel.data.spark.tokens import train_label_counts, write_tokens
    from grmodel.validation import validate_tokens
    from grmodel.vocab import Vocabulary

    started = time.time()
    config = gr_config(data, overrides)
    state = read_vocabulary(vocab_dir, config, data)
    vocab = Vocabulary.from_dict(state["vocab"])
    max_len = int(state["max_decode_len"])
    spark = spark_session()
    column, max_rows = config.data.label_column, config.data.max_train_rows
    with live_run(tracking, "encode_labels", started) as live, atomic_directory(out_dir) as tmp:
        values, _ = train_label_counts(spark, data, column, max_rows)
        report = validate_tokens(values, vocab, max_len, source=str(data / "train.parquet"))
        report.write(tmp / "validation")
        report.raise_for_failure()  # nothing is written when a sequence is wrong
        written = write_tokens(spark, data, vocab, max_len, tmp / TOKENS_FILE, column, max_rows)
        record = StageRecord(
            "encode_labels", params={"tokens": {"max_decode_len": max_len, "rows": written["rows"]},
                                     "engine": "spark"},
            metrics={"mean_length": written["mean_length"], "max_length": float(written["max_length"]),
                     **{f"checks_{k}": float(v) for k, v in report.counts().items()}},
            artifacts=["validation"], started=started, ended=time.time(), mlflow_run_id=live.run_id,
        )
        record.write(tmp)
        live.log_record(record, tmp)
    return {"rows": written["rows"], "mean_length": written["mean_length"]}


ENGINES = ("pandas", "spark")


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise StageError(f"engine {engine!r}: expected one of {list(ENGINES)}")


def read_tokens(tokens_dir: str | Path, labels: np.ndarray) -> np.ndarray:
    """The token sequences of :func:`encode_labels`, checked row by row against ``labels``."""
    import pyarrow.parquet as pq

    path = Path(tokens_dir) / TOKENS_FILE
    if not path.is_file():
        raise StageError(f"{path}: not found (rule: encode_labels writes {TOKENS_FILE})")
    table = pq.read_table(path)
    column = table.column("tokens").combine_chunks()
    sequences = np.asarray(column.values).reshape(len(table), column.type.list_size).astype(np.int64)
    if len(table) != labels.size or not np.array_equal(table.column("label").to_numpy(), labels):
        raise StageError(f"{path}: its {len(table)} labels are not the {labels.size} training labels"
                         " of this dataset (rule: tokens are encoded from the same train split)")
    return sequences


# ----------------------------------------------------------------------------- training


def gr_config(data: Path, overrides: list[str] | None) -> Any:
    """GR's config for this run: the vocabulary and token stages use it too."""
    return model_plan(data, [GR], overrides, 1).runs[0][2]


def train(
    processed: str | Path,
    out_dir: str | Path,
    *,
    model: str,
    overrides: list[str] | None = None,
    seeds: int = 1,
    vocab_dir: str | Path | None = None,
    tokens_dir: str | Path | None = None,
    replicas: int = 1,
    pvc_claim: str = "",
    job_options: dict[str, Any] | None = None,
    tracking: StageTracking | None = None,
) -> dict[str, Any]:
    """Train ``model`` (``gr`` or a baseline) for each seed into
    ``out_dir/seed<k>``. GR uses the vocabulary and token sequences of the earlier stages.

    With ``replicas > 1`` GR trains as a Kubeflow PyTorchJob of that many pods sharing the
    ReadWriteMany claim ``pvc_claim`` (mounted here too); ``job_options`` go to
    ``grmodel.pytorchjob.run_pytorchjob`` (``api``, ``local_mount``, ``gpus_per_replica``...).
    """
    from grmodel.features import read_labels
    from grmodel.tracking import EPOCH_TIME
    from grmodel.training.loop import train_or_resume
    from grmodel.training.records import dataset_fingerprint

    started = time.time()
    data = Path(processed)
    plan = model_plan(data, [model], overrides, seeds)
    if replicas > 1 and (model != GR or not pvc_claim):
        raise StageError(f"train_replicas={replicas}: only GR trains as a PyTorchJob, and it needs a"
                         " ReadWriteMany claim shared with the job (compile with"
                         " `grmodel pipeline compile --train-pvc CLAIM`)")
    label_state = targets = None
    if model == GR:
        if vocab_dir is None or tokens_dir is None:
            raise StageError("training GR needs the build_vocab and encode_labels outputs")
        config = plan.runs[0][2]
        label_state = read_vocabulary(vocab_dir, config, data)
        labels = read_labels(data, "train", config.data.label_column, config.data.max_train_rows)
        targets = {"tokens": read_tokens(tokens_dir, labels)}
    fingerprint = dataset_fingerprint(data)
    metrics, histories, params = {}, {}, {model: plan.runs[0][2].to_dict()}
    with live_run(tracking, f"train_{model}", started) as live, atomic_directory(out_dir) as tmp:
        live.log_params(params)  # the config is on show while it trains
        for row, seed, config in plan.runs:
            log.info("training %s (%s), seed %d", row.name, row.model_name, seed)
            prefix, ended = f"seed{seed}.", {}

            def on_epoch(epoch: dict[str, Any], prefix: str = prefix, ended: dict = ended) -> None:
                ended[epoch["epoch"]] = time.time()
                live.log_epoch(epoch, prefix)

            if replicas > 1:
                record = _train_as_pytorchjob(config, data, tmp / f"seed{seed}", fingerprint,
                                              label_state, replicas, pvc_claim, job_options or {})
            else:
                record = train_or_resume(config, tmp / f"seed{seed}", fingerprint, label_state,
                                         targets, on_epoch=on_epoch)
            if not ended:  # trained elsewhere (a PyTorchJob) or reused: its curves now
                for epoch in record["history"]:
                    live.log_epoch(epoch, prefix)
            histories[prefix] = [{**h, **({EPOCH_TIME: ended[h["epoch"]]} if h["epoch"] in ended else {})}
                                 for h in record["history"]]
            metrics |= {f"{prefix}best_valid_{k}": float(v) for k, v in record["best_valid"].items()}
            metrics[f"{prefix}samples_per_second"] = float(record["samples_per_second"])
        stage = StageRecord(f"train_{model}", params=params, metrics=metrics, histories=histories,
                            started=started, ended=time.time(), mlflow_run_id=live.run_id)
        stage.write(tmp)
        live.log_record(stage, tmp)
    return {"model": model, "seeds": plan.seeds, **metrics}


def _train_as_pytorchjob(config: Any, data: Path, model_dir: Path, fingerprint: str,
                         label_state: dict[str, Any] | None, replicas: int, pvc_claim: str,
                         options: dict[str, Any]) -> dict[str, Any]:
    """Stage the data and vocabulary on the shared claim, run the PyTorchJob, and keep its model
    with the same run record an in-pod training writes."""
    from grmodel import pytorchjob
    from grmodel.checkpoint import META_FILE
    from grmodel.training.records import TrainResult, write_training_record

    options = dict(options)
    pod_mount = options.pop("mount_path", pytorchjob.DEFAULT_MOUNT)
    here = Path(options.pop("local_mount", None) or pod_mount)
    job_dir = f"grmodel/{fingerprint[:12]}-{pytorchjob.config_digest(config)[:12]}"
    shared = here / job_dir
    if not (shared / "processed").is_dir():
        shutil.copytree(data, shared / "processed")
    write_json_atomic(shared / LABEL_STATE_FILE, label_state)
    pod = f"{pod_mount}/{job_dir}"
    started = time.perf_counter()
    job_model = pytorchjob.run_pytorchjob(
        config, replicas=replicas, pvc_claim=pvc_claim, data_dir=f"{pod}/processed",
        out_dir=f"{pod}/model", label_state_path=f"{pod}/{LABEL_STATE_FILE}", local_mount=here,
        mount_path=pod_mount, namespace=options.pop("namespace", None) or _pod_namespace(),
        **options)
    shutil.copytree(job_model, model_dir)
    meta = json.loads((model_dir / META_FILE).read_text())
    seconds = time.perf_counter() - started
    speeds = [h["samples_per_second"] for h in meta["history"] if "samples_per_second" in h]
    result = TrainResult(model_dir, meta["epoch"], meta["best_valid"], meta["history"],
                         train_seconds=seconds,
                         samples_per_second=float(np.mean(speeds)) if speeds else 0.0)
    return write_training_record(result, config, fingerprint, seconds, replicas=replicas)


def _pod_namespace() -> str:
    """The namespace this pod runs in (the job goes beside it), else Kubeflow's default."""
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.is_file() else "kubeflow"


def model_plan(data: Path, models: list[str], overrides: list[str] | None, seeds: int
               ) -> ComparisonPlan:
    """Every (model, seed) run with its config: the library defaults, the models' named
    defaults (``grmodel.config.MODEL_DEFAULTS``), then the ``[MODEL:]key=value`` overrides."""
    comparison = model_comparison(*COMPARISON, models, reference=GR)
    return plan_comparison(comparison, data, seeds=seeds, overrides=overrides)


# --------------------------------------------------------------------------- evaluation


def evaluate(
    processed: str | Path,
    model_dirs: dict[str, str | Path],
    out_dir: str | Path,
    *,
    overrides: list[str] | None = None,
    seeds: int = 1,
    data_version: str = "",
    tracking: StageTracking | None = None,
) -> dict[str, Any]:
    """Score every trained model (``{model: train output}``) on the same test split beside the
    train median and the oracle; write the report, figures, ``metrics.json`` and
    ``report.html`` (figures inlined) into ``out_dir``."""
    from grmodel.reporting.html import render_report_html
    from grmodel.tracking import git_commit
    from grmodel.training.records import dataset_fingerprint, finished_run

    started = time.time()
    data = Path(processed)
    rows = list(model_dirs)
    plan = model_plan(data, rows, overrides, seeds)
    fingerprint = dataset_fingerprint(data)
    runs = []
    for row, seed, config in plan.runs:
        model_dir = Path(model_dirs[row.name]) / f"seed{seed}"
        record = finished_run(model_dir, config, fingerprint)
        if record is None:
            raise StageError(f"{model_dir}: no finished {row.name} run of this config on this data"
                             " (rule: evaluate gets the train outputs of the same pipeline run)")
        runs.append(run_entry(row, seed, model_dir.resolve(), {**record, "resumed": False}))
    with live_run(tracking, "evaluate", started) as live, atomic_directory(out_dir) as tmp:
        # GR against the baselines is the paper's Table 1 setting: its numbers go beside ours.
        report = write_comparison_report(plan, runs, tmp, paper=PAPER_ANCHORS["table1"])
        metrics = headline_metrics(report)
        write_json_atomic(tmp / "metrics.json", metrics)
        provenance = {"data version": data_version or "unknown", "git commit": git_commit()}
        write_text_atomic(tmp / "report.html",
                          render_report_html(report, tmp / "figures", provenance))
        record = StageRecord(
            "evaluate", params={"eval": report["eval_config"]},
            metrics={f"test.{row}.{k}": v for row, m in metrics.items() for k, v in m.items()},
            artifacts=["report.md", "report.json", "report.html", "figures"],
            started=started, ended=time.time(), mlflow_run_id=live.run_id,
        )
        record.write(tmp)
        live.log_record(record, tmp)
    return {"metrics": metrics, "table": results_table(report)}


def headline_metrics(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{model: {"mae", "xauc"}}``: mean over seeds, with the median and oracle rows."""
    from grmodel.tracking import metric_key

    return {metric_key(name): {"mae": float(s["mae"]["mean"]), "xauc": float(s["xauc"]["mean"])}
            for name, s in report["summary"].items()}
