"""Run an experiment: train every (row, seed), evaluate all on one test split, write the reports.

Layout of ``out_dir``::

    data/raw, data/processed   only with ``generate=PRESET`` (generated and ingested once)
    runs/<row>/seed<k>/        one model directory per run, with ``run.json`` (its record)
    report.json, report.md     everything, and the readable summary
    figures/*.png              see grmodel/experiments/figures.py

A run is skipped when its directory already holds a finished model (``run.json`` is written
only after the trainer has published the model) trained with the same config on the same data
(same fingerprint), so an interrupted experiment resumes where it stopped. Evaluation and the
reports are always redone from the kept models.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grmodel import __version__
from grmodel.atomic import jsonable, through_json, write_text_atomic
from grmodel.checkpoint import load_checkpoint
from grmodel.config import ConfigError, RunConfig
from grmodel.data.kuairec.ingest import IngestConfig, ingest_kuairec
from grmodel.data.kuairec.synth import SYNTH_FILE, SynthConfig, generate_kuairec
from grmodel.evaluate import ORACLE, TRAIN_MEDIAN, evaluate_models
from grmodel.experiments.figures import render_figures
from grmodel.experiments.report import (
    compare_rows,
    config_changes,
    summarize_constant,
    summarize_row,
    write_reports,
)
from grmodel.experiments.specs import Experiment, Overrides, Row, base_seed, experiment_spec, row_config
from grmodel.features import label_array, read_manifest, read_split
from grmodel.models import WatchTimeModel
from grmodel.models.gr import GRModel
from grmodel.predict import predict_arrays
from grmodel.training.loop import train_or_resume
from grmodel.training.records import dataset_fingerprint
from grmodel.tuning import TuningBudget
from grmodel.tuning import tune as tune_model
from grmodel.vocab import N_SPECIAL

log = logging.getLogger(__name__)

# Test rows drawn (seeded) for the distribution and generated-token figures.
FIGURE_ROWS = 20_000
DISTRIBUTION_BINS = 40


@dataclass
class ExperimentPlan:
    """Every (row, seed) run of an experiment with its full config, built before any training."""

    experiment: Experiment
    overrides: Overrides
    base: RunConfig
    data_dir: Path
    seeds: list[int]
    runs: list[tuple[Row, int, RunConfig]]

    @property
    def common(self) -> RunConfig:
        """The base config with the common overrides: evaluation settings and label column."""
        return self.base.with_overrides(list(self.overrides.common))

    def runs_of(self, row: str) -> list[tuple[Row, int, RunConfig]]:
        return [run for run in self.runs if run[0].name == row]


def plan_experiment(
    name: str,
    data_dir: str | Path,
    *,
    seeds: int = 1,
    rows: list[str] | None = None,
    base_config: RunConfig | None = None,
    overrides: list[str] | None = None,
) -> ExperimentPlan:
    """The runs of experiment ``name`` on ``data_dir``; a bad override fails here, at once."""
    experiment = experiment_spec(name, rows)
    # An experiment reports every row: a collapsed model is kept, and marked in the report.
    base = (base_config or RunConfig()).with_overrides(["train.on_collapse=warn"])
    scoped = Overrides.parse(list(overrides or []), experiment)
    if seeds < 1:
        raise ConfigError(f"seeds={seeds}: must be >= 1")
    first_seed = base_seed(base, scoped)
    seed_list = [first_seed + k for k in range(seeds)]
    runs = [(row, seed, row_config(base, row, scoped, str(data_dir), seed))
            for row in experiment.rows for seed in seed_list]
    return ExperimentPlan(experiment, scoped, base, Path(data_dir), seed_list, runs)


def run_experiment(
    name: str,
    out_dir: str | Path,
    processed_dir: str | Path | None = None,
    *,
    generate: str | None = None,
    data_seed: int = 2024,
    seeds: int = 1,
    rows: list[str] | None = None,
    base_config: RunConfig | None = None,
    overrides: list[str] | None = None,
    figure_rows: int = FIGURE_ROWS,
    tune: TuningBudget | None = None,
) -> dict[str, Any]:
    """Run experiment ``name`` (table1 | table3 | table4) and write its reports into ``out_dir``.

    With ``tune``, every row first spends the same tuning budget on the validation split
    (grmodel/tuning.py; once per row, on the first seed's config) and all its seeds train with
    the chosen settings; the report records every trial.

    The data is ``processed_dir``, or with ``generate`` the named synth preset, generated and
    ingested into ``out_dir/data`` (``data_seed`` seeds both). ``seeds`` runs per row start at
    the config's ``train.seed``; ``rows`` picks rows; ``overrides`` are ``[SCOPE:]key=value``
    items (grmodel/experiments/specs.py). Returns the report record (also ``report.json``).
    """
    started = time.perf_counter()
    if figure_rows < 1:
        raise ConfigError(f"figure_rows={figure_rows}: must be >= 1")
    if (processed_dir is None) == (generate is None):
        raise ConfigError("give exactly one of a processed dataset directory and a preset to generate")
    out = Path(out_dir)
    # Plan on a placeholder path first, so a bad override fails before any data is generated.
    plan_experiment(name, processed_dir or out / "data" / "processed", seeds=seeds, rows=rows,
                    base_config=base_config, overrides=overrides)
    data_dir = Path(processed_dir) if processed_dir is not None else prepare_generated(
        out / "data", generate, data_seed)
    plan = plan_experiment(name, data_dir, seeds=seeds, rows=rows, base_config=base_config,
                           overrides=overrides)
    fingerprint = dataset_fingerprint(data_dir)

    out.mkdir(parents=True, exist_ok=True)
    tuning = {}
    if tune is not None:
        for row in plan.experiment.rows:
            first = plan.runs_of(row.name)[0][2]
            tuning[row.name] = tuned(first, out / "runs" / row.name / "tuning", fingerprint, tune)
    runs = []
    for k, (row, seed, config) in enumerate(plan.runs, 1):
        if row.name in tuning:
            config = config.with_overrides(tuning[row.name]["chosen"])
        model_dir = out / "runs" / row.name / f"seed{seed}"
        log.info("[%d/%d] %s (%s), seed %d", k, len(plan.runs), row.name, row.model_name, seed)
        record = train_or_resume(config, model_dir, fingerprint)
        record = {**record, "tuning": tuning.get(row.name)}
        runs.append(run_entry(row, seed, model_dir.relative_to(out), record))
    generated = {"preset": generate, "seed": data_seed} if generate else None
    return write_experiment_report(plan, runs, out, figure_rows=figure_rows, generated=generated,
                                   started=started)


def tuned(config: RunConfig, work_dir: Path, fingerprint: str, budget: TuningBudget) -> dict[str, Any]:
    """The tuning record of ``config`` on this data: reused from ``work_dir/tuning.json`` when it
    was made for the same config, dataset and budget, else made now."""
    path = work_dir / "tuning.json"
    key = {"config": config.to_dict(), "dataset_fingerprint": fingerprint,
           "budget": dataclasses.asdict(budget)}
    if path.is_file():
        saved = json.loads(path.read_text())
        if all(saved.get(k) == v for k, v in jsonable(key).items()):
            log.info("reusing the tuning record in %s", path)
            return saved["tuning"]
    record = tune_model(config, work_dir, budget)
    write_text_atomic(path, json.dumps(jsonable({**key, "tuning": record}), indent=2))
    return record


def run_entry(row: Row, seed: int, model_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """One run as the report lists it (``model_dir`` relative to the report, or absolute)."""
    return {"row": row.name, "model_name": row.model_name, "seed": seed, "model_dir": str(model_dir),
            **record}


def write_experiment_report(
    plan: ExperimentPlan,
    runs: list[dict[str, Any]],
    out_dir: str | Path,
    *,
    figure_rows: int = FIGURE_ROWS,
    generated: dict[str, Any] | None = None,
    started: float | None = None,
) -> dict[str, Any]:
    """Evaluate the trained ``runs`` of ``plan`` on the test split; write report and figures."""
    started = time.perf_counter() if started is None else started
    out, data_dir, experiment, common = Path(out_dir), plan.data_dir, plan.experiment, plan.common
    manifest = read_manifest(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    log.info("evaluating %d runs on the test split", len(runs))
    keys = {f"{r['row']}/seed{r['seed']}": out / r["model_dir"] for r in runs}
    results = evaluate_models(data_dir, keys, common.eval, label_column=common.data.label_column)
    for r, key in zip(runs, keys):
        r["test"] = results[key]

    labels = results[TRAIN_MEDIAN]
    headline = labels["xauc_headline_variant"]
    summary = {row.name: summarize_row([r for r in runs if r["row"] == row.name])
               for row in experiment.rows}
    for constant in (TRAIN_MEDIAN, ORACLE):
        if constant in results:
            summary[constant] = summarize_constant(results[constant])
    report = {
        "experiment": experiment.name,
        "title": experiment.title,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "grmodel_version": __version__,
        "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "platform": platform.platform()},
        "dataset": {
            "path": str(data_dir),
            "fingerprint": dataset_fingerprint(data_dir),
            "label": manifest.get("label"),
            "test_rows": results[TRAIN_MEDIAN]["n"],
            "generated": generated,
            "manifest": manifest,
        },
        "seeds": plan.seeds,
        "reference_row": experiment.reference,
        "eval_config": dataclasses.asdict(common.eval),
        "overrides": {"common": list(plan.overrides.common),
                      "scoped": {k: list(v) for k, v in plan.overrides.scoped}},
        "rows": _row_records(experiment, plan.overrides, plan.runs),
        "runs": runs,
        "summary": summary,
        "labels_tie": labels["labels_tie"],
        "xauc_headline_variant": headline,
        "comparisons": compare_rows(runs, experiment.reference, headline),
        "reference_results": {k: results[k] for k in (TRAIN_MEDIAN, ORACLE) if k in results},
        "figure_data": figure_data(runs, results, out, data_dir, common, figure_rows),
        "train_wall_seconds": sum(r["wall_seconds"] for r in runs),
    }
    report["figures"] = render_figures(report, out / "figures")
    report["wall_seconds"] = time.perf_counter() - started
    json_path, md_path = write_reports(report, out)
    log.info("wrote %s and %s (%.1f s)", md_path, json_path, report["wall_seconds"])
    return report


def _row_records(experiment: Experiment, overrides: Overrides,
                 plan: list[tuple[Any, int, RunConfig]]) -> dict[str, Any]:
    first = {}
    for row, _, config in plan:
        first.setdefault(row.name, config.to_dict())
    return {
        row.name: {"model_name": row.model_name, "defining_overrides": list(row.overrides),
                   "overrides": overrides.row_items(row), "config_changes": config_changes(first[row.name]),
                   "config": first[row.name]}
        for row in experiment.rows
    }


# -- data ---------------------------------------------------------------------------------
def prepare_generated(data_dir: Path, preset: str, seed: int) -> Path:
    """Generate and ingest the synth ``preset`` under ``data_dir`` unless already there."""
    return prepare_kuairec_format(data_dir, SynthConfig.preset(preset, seed=seed), generate_kuairec,
                                  seed)


def prepare_kuairec_format(data_dir: Path, config: Any, generate: Callable[[Path, Any], Any],
                           seed: int) -> Path:
    """``generate(data_dir / "raw", config)`` (KuaiRec-format raw files with ``synth.json``)
    and the KuaiRec ingest into ``data_dir / "processed"``, each unless already there."""
    raw, processed = data_dir / "raw", data_dir / "processed"
    ingest = IngestConfig(seed=seed)
    made_once(raw, config, SYNTH_FILE, lambda: generate(raw, config))
    made_once(processed, ingest, "manifest.json", lambda: ingest_kuairec(raw, processed, ingest))
    return processed


def made_once(directory: Path, settings: Any, record_file: str, make: Callable[[], Any]) -> None:
    """Make ``directory`` with ``make()`` unless it exists; an existing one must have been made
    with the same ``settings`` (as ``record_file`` there records them, under ``config`` or
    ``options``)."""
    if not directory.exists():
        log.info("making %s", directory)
        make()
        return
    record = json.loads((directory / record_file).read_text())
    _check_same(directory / record_file, record.get("config", record.get("options")), settings)


def _check_same(path: Path, recorded: dict[str, Any], wanted: Any) -> None:
    if recorded != through_json(dataclasses.asdict(wanted)):
        raise ConfigError(f"{path}: the data there was made with other settings than"
                          f" {type(wanted).__name__} {dataclasses.asdict(wanted)}; use another --out"
                          f" or remove {path.parent.parent}")


# -- figure data --------------------------------------------------------------------------
def figure_data(runs: list[dict[str, Any]], results: dict[str, dict[str, Any]], out: Path,
                data_dir: Path, common: RunConfig, figure_rows: int) -> dict[str, Any]:
    """Histograms (Fig. 5b-d) and token counts (Fig. 4) from each row's first seed.

    Histograms use a seeded sample of at most ``figure_rows`` test rows on shared bins from 0
    to the sample's label p99 (larger values land in the last bin); the means and variances
    shown beside them are those of the whole test split.
    """
    label_column = common.data.label_column
    test = read_split(data_dir, "test")
    if len(test) > figure_rows:
        rows = np.sort(np.random.default_rng(0).choice(len(test), figure_rows, replace=False))
        test = test.iloc[rows].reset_index(drop=True)
    y = label_array(test, label_column)
    top = float(np.quantile(y, 0.99))
    edges = np.linspace(0.0, top if top > 0 else max(float(y.max()), 1.0), DISTRIBUTION_BINS + 1)

    def histogram(values: np.ndarray) -> list[int]:
        return np.histogram(np.clip(values, 0.0, edges[-1]), bins=edges)[0].tolist()

    def entry(values: np.ndarray, metrics: dict[str, Any], seed: int | None) -> dict[str, Any]:
        dist = metrics["distribution"]
        return {"seed": seed, "rows": len(y), "edges": edges.tolist(), "true": histogram(y),
                "pred": histogram(values), "true_mean": dist["true"]["mean"],
                "true_var": dist["true"]["var"], "pred_mean": dist["pred"]["mean"],
                "pred_var": dist["pred"]["var"]}

    distributions, tokens = {}, {}
    train_labels = None
    for r in runs:
        if r["row"] in distributions:
            continue  # first seed only
        model, _ = load_checkpoint(out / r["model_dir"])
        ids, mask = model.schema.arrays(test)
        pred, generated = sample_predictions(model, ids, mask, common.eval.batch_size)
        distributions[r["row"]] = entry(pred, r["test"], r["seed"])
        if isinstance(model, GRModel):
            if train_labels is None:
                frame = read_split(data_dir, "train", common.data.max_train_rows)
                train_labels = label_array(frame, label_column)
            tokens[r["row"]] = token_frequency(model, train_labels, generated)
    if ORACLE in results and "oracle_median" in test.columns:
        distributions[ORACLE] = entry(test["oracle_median"].to_numpy(np.float64), results[ORACLE], None)
    return {"distributions": distributions, "token_frequency": tokens,
            "sample_rows": len(y), "histogram_top": float(edges[-1])}


def sample_predictions(model: WatchTimeModel, ids: np.ndarray, mask: np.ndarray, batch_size: int
                       ) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions, and for GR the generated token ids of the same decoding pass."""
    if not isinstance(model, GRModel):
        return predict_arrays(model, ids, mask, batch_size=batch_size), None
    preds, tokens = [], []
    for start in range(0, len(ids), batch_size):
        pred, chosen = model.generate(torch.as_tensor(ids[start:start + batch_size]),
                                      torch.as_tensor(mask[start:start + batch_size]),
                                      return_tokens=True)
        preds.append(pred.double().numpy())
        tokens.append(chosen.numpy())
    return np.concatenate(preds), np.concatenate(tokens)


def token_frequency(model: GRModel, train_labels: np.ndarray, generated: np.ndarray | None
                    ) -> dict[str, Any]:
    """Count of each value token in the training label encodings and in generated sequences."""
    size = model.vocab.size
    encoded, _ = model.codec.token_sequences(train_labels)
    record = {
        "vocab_kind": model.vocab.kind,
        "values": model.vocab.values.tolist(),
        "train": np.bincount(encoded.ravel(), minlength=size)[N_SPECIAL:].tolist(),
        "generated": None,
        "generated_rows": 0,
    }
    if generated is not None:
        record["generated"] = np.bincount(generated.ravel(), minlength=size)[N_SPECIAL:].tolist()
        record["generated_rows"] = len(generated)
    return record
