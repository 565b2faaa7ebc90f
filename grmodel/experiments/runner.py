"""Run an experiment (a table of the paper, grmodel/experiments/specs.py): train every (row,
seed), then score all on one test split and write the reports (grmodel/comparison/results.py).

Layout of ``out_dir``::

    data/raw, data/processed   only with ``generate=PRESET`` (generated and ingested once)
    runs/<row>/seed<k>/        one model directory per run, with ``training.json`` (its record)
    report.json, report.md     everything, and the readable summary
    figures/*.png              see grmodel/comparison/figures.py

A run is skipped when its directory already holds a finished model (``training.json`` is written
only after the trainer has published the model) trained with the same config on the same data
(same fingerprint), so an interrupted experiment resumes where it stopped. Evaluation and the
reports are always redone from the kept models.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grmodel.atomic import jsonable, through_json, write_text_atomic
from grmodel.comparison.plan import ComparisonPlan, plan_comparison
from grmodel.comparison.results import FIGURE_ROWS, run_entry, write_comparison_report
from grmodel.config import ConfigError, RunConfig
from grmodel.data.kuairec.ingest import IngestConfig, ingest_kuairec
from grmodel.data.kuairec.schema import SYNTH_FILE
from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec
from grmodel.experiments.specs import experiment_spec
from grmodel.reporting.paper import PAPER_ANCHORS
from grmodel.training.loop import train_or_resume
from grmodel.training.records import RESULT_NEUTRAL_KEYS, dataset_fingerprint, same_run
from grmodel.training.tuning import TuningBudget
from grmodel.training.tuning import tune as tune_model

log = logging.getLogger(__name__)

def plan_experiment(
    name: str,
    data_dir: str | Path,
    *,
    seeds: int = 1,
    rows: list[str] | None = None,
    base_config: RunConfig | None = None,
    overrides: list[str] | None = None,
) -> ComparisonPlan:
    """The runs of experiment ``name`` on ``data_dir``; a bad override fails here, at once."""
    # An experiment reports every row: a collapsed model is kept, and marked in the report.
    base = (base_config or RunConfig()).with_overrides(["train.on_collapse=warn"])
    return plan_comparison(experiment_spec(name, rows), data_dir, seeds=seeds, base_config=base,
                           overrides=overrides)


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
    (grmodel/training/tuning.py; once per row, on the first seed's config) and all its seeds train with
    the chosen settings; the report records every trial.

    The data is ``processed_dir``, or with ``generate`` the named synth preset, generated and
    ingested into ``out_dir/data`` (``data_seed`` seeds both). ``seeds`` runs per row start at
    the config's ``train.seed``; ``rows`` picks rows; ``overrides`` are ``[SCOPE:]key=value``
    items (grmodel/comparison/plan.py). Returns the report record (also ``report.json``).
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
        for row in plan.comparison.rows:
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
    return write_comparison_report(plan, runs, out, figure_rows=figure_rows, generated=generated,
                                   paper=PAPER_ANCHORS.get(name),
                                   started=started)


def tuned(config: RunConfig, work_dir: Path, fingerprint: str, budget: TuningBudget) -> dict[str, Any]:
    """The tuning record of ``config`` on this data: reused from ``work_dir/tuning.json`` when it
    was made for the same config, dataset and budget, else made now."""
    path = work_dir / "tuning.json"
    key = {"config": config.to_dict(), "dataset_fingerprint": fingerprint,
           "budget": dataclasses.asdict(budget)}
    if path.is_file():
        saved = json.loads(path.read_text())
        same = (saved.get("budget") == key["budget"] and "config" in saved
                and same_run(saved["config"], saved.get("dataset_fingerprint"), config, fingerprint,
                             RESULT_NEUTRAL_KEYS))
        if same:
            log.info("reusing the tuning record in %s", path)
            return saved["tuning"]
    record = tune_model(config, work_dir, budget)
    write_text_atomic(path, json.dumps(jsonable({**key, "tuning": record}), indent=2))
    return record


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


def _with_defaults(recorded: Any, wanted: Any) -> Any:
    """``recorded`` with the options it lacks set to ``wanted``'s defaults (also in nested
    dataclasses): an option added after the data was made (e.g. IngestConfig.split_draw,
    a tabular spec's split.draw) is absent from its record, and the data was made as that
    option's default makes it."""
    if not (dataclasses.is_dataclass(wanted) and isinstance(recorded, dict)):
        return recorded
    filled = dict(recorded)
    for f in dataclasses.fields(wanted):
        if f.name in filled:
            filled[f.name] = _with_defaults(filled[f.name], getattr(wanted, f.name))
        elif f.default is not dataclasses.MISSING:
            filled[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            filled[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(
                value := f.default_factory()) else value
    return filled


def _check_same(path: Path, recorded: dict[str, Any], wanted: Any) -> None:
    if through_json(_with_defaults(recorded, wanted)) != through_json(dataclasses.asdict(wanted)):
        raise ConfigError(f"{path}: the data there was made with other settings than"
                          f" {type(wanted).__name__} {dataclasses.asdict(wanted)}; use another --out"
                          f" or remove {path.parent.parent}")
