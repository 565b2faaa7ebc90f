"""The robustness suite: GR and its baselines on generated datasets of distinct label shapes.

Each dataset has an oracle (the label's conditional median given the features, the MAE floor)
and is generated, then ingested through the same code as the command line (``grmodel data
ingest`` for KuaiRec-format raw files, ``grmodel data tabular`` for a table and its spec).
Every dataset then runs as a ``table1`` experiment (grmodel/experiments/runner.py) with the
library's defaults and the common overrides, so finished runs are reused. One table gathers
them: per dataset and model the MAE, both XAUC variants, the MAE's ratio to the oracle's and
a collapse flag (the trainer's verdict, or near-constant test predictions: ``grmodel.collapse``), beside
the train-median and oracle rows.

Layout of ``out_dir``::

    data/<dataset>/...        generated sources and processed splits (made once)
    <dataset>/                the table1 experiment of that dataset (runs, report.md, figures)
    robustness.json, robustness.md
"""

from __future__ import annotations

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

from grmodel import __version__
from grmodel.atomic import jsonable, write_text_atomic
from grmodel.collapse import near_constant
from grmodel.config import ConfigError, RunConfig
from grmodel.data.generators.common import GENERATOR_FILE, SPEC_FILE
from grmodel.data.generators.completion import CompletionConfig, generate_completion
from grmodel.data.generators.customer_value import CustomerValueConfig, generate_customer_value
from grmodel.data.generators.drifting_zeros import DriftingZerosConfig, generate_drifting_zeros
from grmodel.data.generators.rewatch import RewatchConfig, generate_rewatch
from grmodel.data.generators.session_ms import SessionMsConfig, generate_session_ms
from grmodel.data.tabular import TabularSpec, build_tabular
from grmodel.evaluate import ORACLE, TRAIN_MEDIAN
from grmodel.experiments.runner import (
    FIGURE_ROWS,
    made_once,
    plan_experiment,
    prepare_generated,
    prepare_kuairec_format,
    run_experiment,
)
from grmodel.features import read_manifest
from grmodel.metrics import XAUC_NAMES
from grmodel.models.heads import DEFAULT_DURATION_FIELD
from grmodel.training.tuning import TuningBudget

log = logging.getLogger(__name__)

PRESETS = ("tiny", "default")
REFERENCE_ROW = "gr"  # the row every other must lose to
DEFAULT_ROWS = ("gr", "gbdt", "cread", "tpm", "d2q")
# D2Q needs the item duration-bucket field that the KuaiRec ingest writes.
DURATION_ROWS = ("d2q",)
JSON_FILE, MARKDOWN_FILE = "robustness.json", "robustness.md"


@dataclass(frozen=True)
class Dataset:
    name: str
    letter: str  # (a) .. (f), the order docs/robustness.md lists them in
    shape: str  # the label shape, in words
    unit: str
    prepare: Callable[[Path, str, int], Path]  # (data_dir, preset, seed) -> processed dir


def _rewatch(data_dir: Path, preset: str, seed: int) -> Path:
    return prepare_kuairec_format(data_dir, RewatchConfig.preset(preset, seed=seed),
                                  generate_rewatch, seed)


def _tabular(preset_config: Callable[..., Any], generate: Callable[[Path, Any], Any]
             ) -> Callable[[Path, str, int], Path]:
    """Prepare a tabular family: generate its table and spec, then ``build_tabular`` (the code
    behind ``grmodel data tabular``)."""

    def prepare(data_dir: Path, preset: str, seed: int) -> Path:
        config = preset_config(preset, seed=seed)
        source, processed = data_dir / "source", data_dir / "processed"
        made_once(source, config, GENERATOR_FILE, lambda: generate(source, config))
        spec = TabularSpec.from_yaml(source / SPEC_FILE)
        made_once(processed, spec, "manifest.json", lambda: build_tabular(spec, processed))
        return processed

    return prepare


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("kuairec_default", "a", "KuaiRec-shaped watch time (the default generator)", "s",
            prepare_generated),
    Dataset("customer_value", "b", "zero-inflated customer value, with cents", "dollars",
            _tabular(CustomerValueConfig.preset, generate_customer_value)),
    Dataset("rewatch", "c", "KuaiRec-format watch time: quick skips, lognormal body,"
            " re-watch tail", "s", _rewatch),
    Dataset("session_ms", "d", "session lengths, 1e3 to 1e7", "ms",
            _tabular(SessionMsConfig.preset, generate_session_ms)),
    Dataset("completion", "e", "completion fractions in [0, 1], masses at 0 and 1", "fraction",
            _tabular(CompletionConfig.preset, generate_completion)),
    Dataset("drifting_zeros", "f", "zero-inflated, weak features, a law drifting in time; split"
            " forward in time", "s", _tabular(DriftingZerosConfig.preset, generate_drifting_zeros)),
)}


def select_datasets(names: list[str] | None) -> list[Dataset]:
    """Datasets by name or letter, in the order given (all when ``names`` is empty)."""
    if not names:
        return list(DATASETS.values())
    by_key = {**DATASETS, **{d.letter: d for d in DATASETS.values()}}
    unknown = [n for n in names if n not in by_key]
    if unknown:
        raise ConfigError(f"robustness: unknown dataset(s) {unknown}; datasets:"
                          f" {[f'{d.letter}={d.name}' for d in DATASETS.values()]}")
    chosen = [by_key[n] for n in names]
    if len({d.name for d in chosen}) != len(chosen):
        raise ConfigError(f"robustness: datasets {names} name a dataset twice")
    return chosen


def has_duration_field(processed_dir: Path) -> bool:
    fields = read_manifest(processed_dir)["features"]["fields"]
    return any(f["name"] == DEFAULT_DURATION_FIELD for f in fields)


def check_request(
    *,
    preset: str,
    seeds: int,
    datasets: list[str] | None,
    rows: list[str] | None,
    base_config: RunConfig | None,
    overrides: list[str] | None,
) -> tuple[list[Dataset], list[str]]:
    """The datasets and rows of a suite request; a bad preset, dataset, row, seed count or
    override fails here, before anything is written (the command calls it before it claims
    its output directory)."""
    if preset not in PRESETS:
        raise ConfigError(f"robustness: preset {preset!r}: expected one of {list(PRESETS)}")
    chosen = select_datasets(datasets)
    rows = list(rows or DEFAULT_ROWS)
    # Plan on a placeholder path (nothing is read or written there).
    plan_experiment("table1", Path("data"), seeds=seeds, rows=rows, base_config=base_config,
                    overrides=overrides)
    return chosen, rows


def run_robustness(
    out_dir: str | Path,
    *,
    preset: str = "default",
    seeds: int = 1,
    datasets: list[str] | None = None,
    rows: list[str] | None = None,
    data_seed: int = 2024,
    base_config: RunConfig | None = None,
    overrides: list[str] | None = None,
    figure_rows: int | None = None,
    tune: TuningBudget | None = None,
) -> dict[str, Any]:
    """Prepare, train and evaluate every (dataset, row, seed); write the one table. Returns the
    record (also ``robustness.json``). ``figure_rows``: test rows of each dataset's figures
    (default the runner's); ``tune``: every model's tuning budget on each dataset."""
    started = time.perf_counter()
    chosen, rows = check_request(preset=preset, seeds=seeds, datasets=datasets, rows=rows,
                                 base_config=base_config, overrides=overrides)
    out = Path(out_dir)
    entries = {}
    for k, dataset in enumerate(chosen, 1):
        log.info("[dataset %d/%d] %s (%s)", k, len(chosen), dataset.name, dataset.shape)
        processed = dataset.prepare(out / "data" / dataset.name, preset, data_seed)
        skipped = {} if has_duration_field(processed) else {
            r: "no item duration field in this dataset" for r in rows if r in DURATION_ROWS}
        report = run_experiment("table1", out / dataset.name, processed, seeds=seeds,
                                rows=[r for r in rows if r not in skipped], base_config=base_config,
                                overrides=overrides, figure_rows=figure_rows or FIGURE_ROWS,
                                tune=tune)
        entries[dataset.name] = dataset_entry(dataset, report, skipped)
    record = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "grmodel_version": __version__,
        "preset": preset,
        "data_seed": data_seed,
        "seeds": seeds,
        "rows": rows,
        "overrides": list(overrides or []),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "load_average": list(os.getloadavg())},
        "datasets": entries,
        "wall_seconds": time.perf_counter() - started,
    }
    write_text_atomic(out / JSON_FILE, json.dumps(jsonable(record), indent=2) + "\n")
    write_text_atomic(out / MARKDOWN_FILE, render_markdown(record))
    log.info("wrote %s (%.1f s)", out / MARKDOWN_FILE, record["wall_seconds"])
    return record


def _near_constant(distribution: dict[str, Any]) -> str | None:
    return near_constant(distribution["pred"]["std"], distribution["true"]["std"])


def dataset_entry(dataset: Dataset, report: dict[str, Any], skipped: dict[str, str]
                  ) -> dict[str, Any]:
    """One dataset's lines of the table, from its table1 report."""
    oracle = report["summary"].get(ORACLE)
    oracle_mae = oracle["mae"]["mean"] if oracle else None
    results = report["reference_results"]
    lines = {}
    for name, s in report["summary"].items():
        if name in (TRAIN_MEDIAN, ORACLE):
            flags = [_near_constant(results[name]["distribution"])]
            seeds = None
        else:
            runs = [r for r in report["runs"] if r["row"] == name]
            # The trainer's verdict on the validation split, else the same rule on the test split.
            flags = [((r.get("collapse") or {}).get("reason") or _near_constant(r["test"]["distribution"]))
                     for r in runs]
            seeds = [r["seed"] for r in runs]
        mae = s["mae"]["mean"]
        collapsed = [f for f in flags if f]
        lines[name] = {
            "model_name": s["model_name"], "seeds": seeds,
            "mae": s["mae"], "xauc_tie_aware": s["xauc_tie_aware"], "xauc": s["xauc"],
            "mae_to_oracle": mae / oracle_mae if oracle_mae else None,
            # A constant by design (the train median) is not a collapsed model.
            "collapsed": None if name == TRAIN_MEDIAN or not collapsed else
            f"{len(collapsed)}/{len(flags)} seeds: {collapsed[0]}",
        }
        if seeds is not None and name != REFERENCE_ROW:
            lines[name]["left_out"] = left_out(
                [r for r in report["runs"] if r["row"] == name], collapsed, len(flags))
    reference = lines.get(REFERENCE_ROW)
    for line in lines.values():
        if "left_out" in line and reference is not None:
            line["reference_leads"] = {
                "mae": reference["mae"]["mean"] < line["mae"]["mean"],
                "xauc_tie_aware": reference["xauc_tie_aware"]["mean"] > line["xauc_tie_aware"]["mean"],
            }
    label = report["dataset"]["label"] or {}
    return {
        "letter": dataset.letter,
        "shape": dataset.shape,
        "report": f"{dataset.name}/report.md",
        "label_unit": dataset.unit,
        "test_rows": report["dataset"]["test_rows"],
        "labels_tie": report["labels_tie"],
        "xauc_configured": report["eval_config"]["xauc"],
        "train_label_stats": label.get("train_stats"),
        "skipped_rows": skipped,
        "lines": lines,
    }


def left_out(runs: list[dict[str, Any]], collapsed: list[str], n_seeds: int) -> str | None:
    """Why a baseline row is no bar GR must beat, or None: it collapsed at every setting its
    tuning budget tried (grmodel/tuning.py; every trial collapsed), or, untuned, on every seed."""
    tuning = runs[0].get("tuning") if runs else None
    if tuning:
        trials = tuning["trials"]
        if all(t["collapsed"] for t in trials):
            return (f"collapsed at every tuned setting ({len(trials)}/{len(trials)} trials,"
                    f" {tuning['budget']['epochs']} epoch(s) on at most"
                    f" {tuning['budget']['max_train_rows']} rows each)")
        return None
    if collapsed and len(collapsed) == n_seeds:
        return f"collapsed on every seed, untuned ({collapsed[0]})"
    return None


def _num(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4f}"


def render_markdown(record: dict[str, Any]) -> str:
    machine = record["machine"]
    parts = [
        "# Robustness suite: GR and its baselines on generated data of other label shapes",
        "",
        f"Written by grmodel {record['grmodel_version']} on {record['created']}; preset"
        f" `{record['preset']}`, data seed {record['data_seed']}, {record['seeds']} training"
        f" seed(s), overrides: {' '.join(f'`{o}`' for o in record['overrides']) or 'none'};"
        f" {machine['cpu_count']} CPU cores, load average at the end"
        f" {', '.join(f'{x:.2f}' for x in machine['load_average'])}; this invocation took"
        f" {record['wall_seconds']:.0f} s.",
        "",
        f"- XAUC is the {XAUC_NAMES['tie_aware']} variant, the headline wherever labels tie;"
        " robustness.json and each dataset's report.md also give the configured"
        " (reference) variant.",
        "- MAE ÷ oracle: the row's MAE over the oracle's (the label's true conditional median"
        " given the features: the MAE floor). Values are means over the seeds.",
        "- **COLLAPSED**: the trainer's verdict on the validation split (near-constant"
        " predictions, or no better than the train median: grmodel/collapse.py), or test"
        " predictions whose std is at most 1% of the labels'.",
        "",
        "| dataset | row | MAE ↓ | XAUC tie-aware ↑ | MAE ÷ oracle | flag |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name, d in record["datasets"].items():
        for row, line in d["lines"].items():
            flag = f"**COLLAPSED** ({line['collapsed']})" if line["collapsed"] else ""
            ratio = line["mae_to_oracle"]
            parts.append(f"| ({d['letter']}) {name} | {row} | {_num(line['mae']['mean'])} |"
                         f" {_num(line['xauc_tie_aware']['mean'])} |"
                         f" {'–' if ratio is None else f'{ratio:.3f}'} | {flag} |")
    parts += ["", f"## Does {REFERENCE_ROW} lead the rows it must beat?", "",
              f"Every model row except {REFERENCE_ROW} is a bar {REFERENCE_ROW} must beat, on the"
              " mean MAE and the mean tie-aware XAUC over the seeds, unless it is left out: a row"
              " that collapsed at every setting of its tuning budget (or, without --tune, on"
              " every seed) is no bar, and the reason is shown.", "",
              f"| dataset | row | {REFERENCE_ROW} lower MAE | {REFERENCE_ROW} higher XAUC"
              " tie-aware | left out of must-beat |",
              "|---|---|---|---|---|"]
    for name, d in record["datasets"].items():
        for row, line in d["lines"].items():
            if "left_out" not in line:
                continue
            leads = line.get("reference_leads")
            cells = ("–", "–") if leads is None else tuple(
                "yes" if leads[k] else "**no**" for k in ("mae", "xauc_tie_aware"))
            why = line["left_out"] or "no (a bar)"
            parts.append(f"| ({d['letter']}) {name} | {row} | {cells[0]} | {cells[1]} | {why} |")
    parts += ["", "## Datasets", "",
              "| dataset | label shape | unit | test rows | labels tie | train zero share |"
              " rows not run | report |",
              "|---|---|---|---:|---|---:|---|---|"]
    for name, d in record["datasets"].items():
        stats = d["train_label_stats"] or {}
        zero = stats.get("share_zero")
        skipped = "; ".join(f"{r}: {why}" for r, why in d["skipped_rows"].items()) or "–"
        parts.append(f"| ({d['letter']}) {name} | {d['shape']} | {d['label_unit']} |"
                     f" {d['test_rows']} | {'yes' if d['labels_tie'] else 'no'} |"
                     f" {'–' if zero is None else f'{zero:.3f}'} | {skipped} |"
                     f" [{d['report']}]({d['report']}) |")
    return "\n".join(parts) + "\n"
