"""Turn a comparison's runs into its summary, its Markdown report and its JSON record.

Every number in the Markdown comes from the runs recorded beside it in ``report.json``; a
paper's figures (given by grmodel/experiments) appear only in their own table, labelled as such.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from grmodel.atomic import jsonable, write_text_atomic
from grmodel.config import RunConfig
from grmodel.evaluate import headline_variant, xauc_header
from grmodel.metrics import XAUC_NAMES, xauc_key
from grmodel.reporting.numbers import num as _num
from grmodel.reporting.numbers import plus_minus as _pm

HEADLINE = ("mae", "xauc", "xauc_tie_aware")

# -- aggregation ----------------------------------------------------------------------------
def mean_std(values: list[float]) -> dict[str, float | None]:
    """Mean and sample standard deviation (ddof 1; None for a single value)."""
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if array.size > 1 else None
    return {"mean": float(array.mean()), "std": std}


def summarize_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over the seeds of one row, for the headline metrics and the interval MAEs."""
    summary: dict[str, Any] = {"model_name": runs[0]["model_name"], "seeds": [r["seed"] for r in runs]}
    for metric in HEADLINE:
        values = [r["test"][metric] for r in runs]
        summary[metric] = {**mean_std(values), "per_seed": values}
    intervals = []
    for k, first in enumerate(runs[0]["test"]["intervals"]):
        values = [r["test"]["intervals"][k]["mae"] for r in runs]
        stats = mean_std(values) if None not in values else {"mean": None, "std": None}
        intervals.append({"lo": first["lo"], "hi": first["hi"], "count": first["count"],
                          "mae_mean": stats["mean"], "mae_std": stats["std"]})
    summary["intervals"] = intervals
    summary["wall_seconds"] = mean_std([r["wall_seconds"] for r in runs])
    summary["samples_per_second"] = mean_std([r["samples_per_second"] for r in runs])
    # The trainer's verdict per seed (grmodel/collapse.py): a collapsed model is marked, never
    # an ordinary row.
    reasons = [(r.get("collapse") or {}).get("reason") or "" for r in runs]
    summary["collapsed"] = ([f"seed {seed}: {why}" for seed, why in zip(summary["seeds"], reasons) if why]
                            or None)
    return summary


def summarize_constant(metrics: dict[str, Any]) -> dict[str, Any]:
    """A row that does not depend on the seed (train median, oracle)."""
    summary: dict[str, Any] = {"model_name": None, "seeds": None}
    for metric in HEADLINE:
        summary[metric] = {"mean": metrics[metric], "std": None, "per_seed": None}
    summary["intervals"] = [{"lo": i["lo"], "hi": i["hi"], "count": i["count"], "mae_mean": i["mae"],
                             "mae_std": None} for i in metrics["intervals"]]
    return summary


def compare_rows(runs: list[dict[str, Any]], reference: str, xauc_variant: str = "reference"
                 ) -> dict[str, dict[str, Any]]:
    """Each row against the reference row, seed by seed (seeds are shared by every row), on
    MAE and the ``xauc_variant`` XAUC (a variant the runs' test metrics hold)."""
    key = xauc_key(xauc_variant)
    by_row: dict[str, dict[int, dict[str, Any]]] = {}
    for r in runs:
        by_row.setdefault(r["row"], {})[r["seed"]] = r["test"]
    if reference not in by_row:
        return {}
    ref = by_row[reference]
    result = {}
    for row, per_seed in by_row.items():
        if row == reference:
            continue
        seeds = sorted(set(per_seed) & set(ref))
        result[row] = {
            "seeds": seeds,
            "xauc_variant": xauc_variant,
            "mae_diff_mean": float(np.mean([per_seed[s]["mae"] - ref[s]["mae"] for s in seeds])),
            "xauc_diff_mean": float(np.mean([per_seed[s][key] - ref[s][key] for s in seeds])),
            "reference_lower_mae": sum(ref[s]["mae"] < per_seed[s]["mae"] for s in seeds),
            "reference_higher_xauc": sum(ref[s][key] > per_seed[s][key] for s in seeds),
        }
    return result


def config_changes(config: dict[str, Any]) -> dict[str, Any]:
    """A run config's values that differ from the library defaults (dataset and seed aside)."""
    default = _flatten(RunConfig(model_name=config["model_name"]).to_dict())
    ours = _flatten(config)
    skip = {"data.processed_dir", "train.seed"}
    return {k: v for k, v in ours.items() if k not in skip and default.get(k, object()) != v}


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


# -- Markdown -------------------------------------------------------------------------------
def results_table(report: dict[str, Any]) -> str:
    """Our results: one line per row, mean ± std over seeds and the per-seed values."""
    configured, headline = report["eval_config"]["xauc"], headline_variant(report)
    key = xauc_key(headline)
    columns = [xauc_header(configured, headline)]
    if configured != "tie_aware":
        columns.append(xauc_header("tie_aware", headline))
    lines = [
        f"| row | model | MAE ↓ | {' | '.join(columns)} | per seed: MAE / XAUC"
        f" {headline.replace('_', '-')} |",
        "|---|---|---:|" + "---:|" * len(columns) + "---|",
    ]
    for name, s in report["summary"].items():
        if s["seeds"] is None:
            per_seed = "does not depend on the seed"
        else:
            per_seed = ", ".join(
                f"{seed}: {_num(m)} / {_num(x)}"
                for seed, m, x in zip(s["seeds"], s["mae"]["per_seed"], s[key]["per_seed"])
            )
        cells = [_pm(s["xauc"])] + ([_pm(s["xauc_tie_aware"])] if configured != "tie_aware" else [])
        label = f"{name} ⚠ COLLAPSED" if s.get("collapsed") else name
        lines.append(f"| {label} | {s['model_name'] or '–'} | {_pm(s['mae'])} | {' | '.join(cells)}"
                     f" | {per_seed} |")
    collapsed = [f"- {name}: {'; '.join(s['collapsed'])}" for name, s in report["summary"].items()
                 if s.get("collapsed")]
    if collapsed:
        lines += ["", "⚠ Collapsed models (grmodel/collapse.py; kept with train.on_collapse=warn):",
                  *collapsed]
    return "\n".join(lines)


def _comparison_table(report: dict[str, Any]) -> str:
    ref, variant = report["reference_row"], headline_variant(report).replace("_", "-")
    lines = [
        f"| row | MAE − {ref}'s (mean over seeds) | XAUC {variant} − {ref}'s | seeds where {ref}"
        f" has the lower MAE | seeds where {ref} has the higher XAUC {variant} |",
        "|---|---:|---:|---:|---:|",
    ]
    for row, c in report["comparisons"].items():
        n = len(c["seeds"])
        lines.append(f"| {row} | {c['mae_diff_mean']:+.4f} | {c['xauc_diff_mean']:+.4f} |"
                     f" {c['reference_lower_mae']}/{n} | {c['reference_higher_xauc']}/{n} |")
    return "\n".join(lines)


def _runs_table(report: dict[str, Any]) -> str:
    lines = [
        "| row | seed | best epoch / epochs run | valid MAE | valid XAUC reference | wall s |"
        " train samples/s"
        " | resumed | model dir |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['row']} | {r['seed']} | {r['best_epoch']} / {len(r['history'])} |"
            f" {_num(r['best_valid']['mae'])} | {_num(r['best_valid']['xauc'])} |"
            f" {r['wall_seconds']:.1f} | {r['samples_per_second']:.0f} |"
            f" {'yes' if r['resumed'] else 'no'} | `{r['model_dir']}` |"
        )
    return "\n".join(lines)


def _config_lines(report: dict[str, Any]) -> list[str]:
    """Changes shared by every row once, then each row's own."""
    changes = [row["config_changes"] for row in report["rows"].values()]
    shared = {k: v for k, v in changes[0].items() if all(c.get(k, object()) == v for c in changes)}

    def listing(items: dict[str, Any]) -> str:
        return ", ".join(f"`{k}={json.dumps(v)}`" for k, v in items.items()) or "none"

    lines = [f"- every row: {listing(shared)}"]
    for (name, row), change in zip(report["rows"].items(), changes):
        own = {k: v for k, v in change.items() if k not in shared}
        lines.append(f"- **{name}** ({row['model_name']}): {listing(own)}")
    return lines


def _paper_table(anchors: dict[str, Any]) -> str:
    header = " | ".join(f"MAE / XAUC ({c})" for c in anchors["columns"])
    lines = [f"| method | {header} |", "|---|" + "---:|" * len(anchors["columns"])]
    for label, cells in anchors["rows"].values():
        lines.append(f"| {label} | " + " | ".join(f"{m:.3f} / {x:.3f}" for m, x in cells) + " |")
    return "\n".join(lines)


def _tuning_lines(report: dict[str, Any]) -> list[str]:
    """One line per tuning trial of each tuned row (grmodel/training/tuning.py)."""
    lines, seen = [], set()
    for run in report["runs"]:
        tuning = run.get("tuning")
        if not tuning or run["row"] in seen:
            continue
        seen.add(run["row"])
        budget = tuning["budget"]
        lines.append(f"- **{run['row']}**: chose `{' '.join(tuning['chosen'])}` by validation "
                     f"{tuning['metric']} ({len(tuning['trials'])} trials, {budget['epochs']} epoch(s)"
                     f" on at most {budget['max_train_rows']} rows each)")
        for trial in tuning["trials"]:
            flag = " (collapsed)" if trial["collapsed"] else ""
            lines.append(f"  - `{' '.join(trial['overrides'])}`: valid MAE "
                         f"{trial['valid']['mae']:.4f}, XAUC {trial['valid']['xauc']:.4f}{flag}")
    return lines


def render_markdown(report: dict[str, Any], paper: dict[str, Any] | None = None) -> str:
    """The readable report; ``paper``: a paper's numbers to list after ours (caption, columns,
    rows), as grmodel/reporting/paper.py holds them."""
    data, machine = report["dataset"], report["machine"]
    label = data.get("label") or {}
    seeds = ", ".join(str(s) for s in report["seeds"])
    resumed = sum(r["resumed"] for r in report["runs"])
    parts = [
        f"# {report['title']}",
        "",
        f"Experiment `{report['experiment']}`, written by grmodel {report['grmodel_version']} on"
        f" {report['created']}.",
        "",
        f"- Dataset: `{data['path']}` (fingerprint `{data['fingerprint'][:16]}`; label"
        f" {label.get('mode', '?')} in {label.get('unit', '?')}; test rows {data['test_rows']}).",
        f"- Seeds: {seeds} (std over seeds with ddof 1; one seed gives no std).",
        f"- XAUC: the headline is the {XAUC_NAMES[headline_variant(report)]} variant"
        + (" because the test labels tie" if report.get("labels_tie") else "")
        + f"; the configured variant ({XAUC_NAMES[report['eval_config']['xauc']]}) is kept"
        " beside it.",
        f"- Machine: {machine['cpu_count']} CPU cores, torch {machine['torch']}, {machine['platform']};"
        f" this invocation took {report['wall_seconds']:.1f} s; training took"
        f" {report['train_wall_seconds']:.1f} s in all ({resumed} of {len(report['runs'])} runs reused"
        " from an earlier invocation, their times as recorded then).",
        "",
        "## Results (ours, test split)",
        "",
        results_table(report),
        "",
        "The *train median* row predicts the training split's median for every row; the *oracle"
        " (median)* row, present for generated data, predicts each row's true conditional median"
        " (the MAE floor).",
    ]
    if report["comparisons"]:
        parts += ["", f"## Compared with {report['reference_row']}", "", _comparison_table(report)]
    parts += ["", "## Runs", "", _runs_table(report), "",
              "## Configurations (differences from the library defaults; full configs in report.json)",
              "", *_config_lines(report)]
    tuning = _tuning_lines(report)
    if tuning:
        parts += ["", "## Tuning (the same budget for every row, judged on the validation split)",
                  "", *tuning]
    parts += ["", "## Figures", ""]
    parts += [f"![{name}](figures/{name})" for name in report["figures"]]
    if paper is not None:
        parts += ["", f"## The paper's numbers ({paper['caption']}; not ours, not this dataset; XAUC"
                  " as published, the authors' reference variant)", "", _paper_table(paper)]
    parts += [""]
    return "\n".join(parts)


# -- files ----------------------------------------------------------------------------------
def write_reports(report: dict[str, Any], out_dir: Path, paper: dict[str, Any] | None = None
                  ) -> tuple[Path, Path]:
    """``report.json`` and ``report.md`` in ``out_dir``, each written atomically."""
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    write_text_atomic(json_path, json.dumps(jsonable(report), indent=2, allow_nan=False) + "\n")
    write_text_atomic(md_path, render_markdown(report, paper))
    return json_path, md_path
