"""An experiment's report as one self-contained HTML page (what the Kubeflow and MLflow UIs show).

It holds everything ``report.md`` holds, drawn from the same ``report.json`` record: our results
as styled tables, the comparison with the reference row, the runs, each row's configuration,
every figure (inlined as base64 PNG and scaled to the page width) and the paper's numbers,
labelled as the paper's. A provenance block names the data version, the code's git commit and
the configs. A row the record flags as collapsed (a constant prediction) is marked where it
appears, so it can never pass for a result. No scripts, no external files: the page renders the
same from a file, in Kubeflow's sandboxed iframe and in MLflow's artifact viewer.
"""

from __future__ import annotations

import base64
import json
import re
from html import escape
from pathlib import Path
from typing import Any

from grmodel.evaluate import headline_variant, xauc_header
from grmodel.metrics import XAUC_NAMES, xauc_key
from grmodel.reporting.numbers import num as _num
from grmodel.reporting.numbers import plus_minus as _pm
from grmodel.reporting.paper import PAPER_ANCHORS

# Fields a summary row (or a run) may carry to say the model predicts a constant.
FLAG_FIELDS = ("collapsed", "collapse", "constant", "degenerate")

_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f6f7f9;color:#1d232b;
 font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px;background:#fff;min-height:100vh}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:20px;margin:32px 0 10px;padding-bottom:4px;border-bottom:1px solid #dde1e6}
p.lede{color:#58606b;margin:0 0 16px}
p.note{color:#58606b;font-size:13px}
table{border-collapse:collapse;width:100%;margin:8px 0 4px;font-size:14px}
th,td{border:1px solid #dde1e6;padding:6px 9px;text-align:left;vertical-align:top;
 overflow-wrap:break-word}
td:first-child{white-space:nowrap}
th{background:#eef1f5;font-weight:600}
tbody tr:nth-child(even){background:#fafbfc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.flagged td{background:#fff1f0}
.flag{display:inline-block;margin-left:6px;padding:0 6px;border-radius:3px;background:#c62828;
 color:#fff;font-size:12px;font-weight:600;white-space:normal;max-width:420px;overflow-wrap:anywhere}
.warning{border-left:4px solid #c62828;background:#fff1f0;padding:8px 12px;margin:8px 0}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dl.facts dt{font-weight:600;color:#3a424d}
dl.facts dd{margin:0;overflow-wrap:anywhere}
code,pre{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
code{background:#f0f2f5;padding:0 3px;border-radius:3px;overflow-wrap:anywhere}
pre{background:#f0f2f5;padding:10px;white-space:pre-wrap;overflow-wrap:anywhere}
figure{margin:16px 0 24px}
figure img{display:block;max-width:100%;height:auto;border:1px solid #dde1e6}
figcaption{color:#58606b;font-size:13px;margin-top:4px}
section.paper{background:#f7f5ee;border:1px solid #e6dfc8;padding:4px 16px 12px;margin-top:32px}
section.paper h2{border-bottom-color:#e6dfc8}
details{margin:4px 0}
""".strip()


def render_report_html(report: dict[str, Any], figures_dir: Path,
                       provenance: dict[str, Any] | None = None) -> str:
    """The page for ``report`` (a ``report.json`` record), its figures read from ``figures_dir``.

    ``provenance``: facts the record does not hold, shown first (data version, git commit, ...).
    """
    title = escape(report["title"])
    body = [
        f"<h1>{title}</h1>",
        f'<p class="lede">Experiment <code>{escape(report["experiment"])}</code>, written by'
        f" grmodel {escape(report['grmodel_version'])} on {escape(report['created'])}.</p>",
        _provenance(report, provenance or {}),
        _results(report),
        _comparison(report),
        _runs(report),
        _configs(report),
        _figures(report, figures_dir),
        _paper(report.get("paper") or PAPER_ANCHORS.get(report["experiment"])),
    ]
    return html_page(title, body)


def html_page(title: str, parts: list[str]) -> str:
    """A self-contained page (this module's style) of ``parts``, HTML already escaped;
    ``title`` is escaped HTML too."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{_CSS}</style></head>\n"
        "<body><main>\n" + "\n".join(part for part in parts if part) + "\n</main></body></html>\n"
    )


def png_img(path: Path, alt: str) -> str:
    """An ``<img>`` holding the PNG at ``path`` inline (base64), so the page needs no other file."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


# -- sections --------------------------------------------------------------------------------
def _provenance(report: dict[str, Any], given: dict[str, Any]) -> str:
    data, machine, evaluation = report["dataset"], report["machine"], report["eval_config"]
    label = data.get("label") or {}
    resumed = sum(bool(r.get("resumed")) for r in report["runs"])
    facts: dict[str, str] = {k: _code(v) for k, v in given.items()}
    facts |= {
        "dataset": f"{_code(data['path'])} (fingerprint {_code(data['fingerprint'][:16])})",
        "label": escape(f"{label.get('mode', '?')} in {label.get('unit', '?')}"
                        + (f": {label['definition']}" if label.get("definition") else "")),
        "test rows": escape(str(data["test_rows"])),
        "seeds": escape(", ".join(str(s) for s in report["seeds"]))
        + " (std over seeds with ddof 1; one seed gives no std)",
        "XAUC": escape(f"the headline is the {XAUC_NAMES[headline_variant(report)]} variant"
                       + (" because the test labels tie" if report.get("labels_tie") else "")
                       + f"; the configured variant ({XAUC_NAMES[evaluation['xauc']]}) is kept"
                       " beside it"),
        "overrides": _overrides(report.get("overrides")),
        "machine": escape(f"{machine['cpu_count']} CPU cores, torch {machine['torch']},"
                          f" {machine['platform']}"),
        "time": escape(f"this evaluation took {report['wall_seconds']:.1f} s; training took"
                       f" {report['train_wall_seconds']:.1f} s in all ({resumed} of"
                       f" {len(report['runs'])} runs reused, their times as recorded then)"),
    }
    items = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in facts.items())
    return f'<section id="provenance"><h2>Provenance</h2><dl class="facts">{items}</dl></section>'


def _results(report: dict[str, Any]) -> str:
    configured, headline = report["eval_config"]["xauc"], headline_variant(report)
    variants = [configured] + (["tie_aware"] if configured != "tie_aware" else [])
    head = _head(["row", "model", ("MAE ↓", "num"),
                  *[(xauc_header(v, headline).replace("**", ""), "num") for v in variants],
                  f"per seed: MAE / XAUC {headline.replace('_', '-')}"])
    rows, flagged = [], []
    for name, s in report["summary"].items():
        flags = row_flags(s)
        if flags:
            flagged.append((name, flags))
        if s["seeds"] is None:
            per_seed = "does not depend on the seed"
        else:
            per_seed = ", ".join(f"{seed}: {_num(m)} / {_num(x)}" for seed, m, x in
                                 zip(s["seeds"], s["mae"]["per_seed"], s[xauc_key(headline)]["per_seed"]))
        badges = "".join(f'<span class="flag">{escape(f)}</span>' for f in flags)
        rows.append(
            f'<tr{" class=flagged" if flags else ""}><td>{escape(name)}{badges}</td>'
            f"<td>{escape(s['model_name'] or '–')}</td><td class=num>{_pm(s['mae'])}</td>"
            + "".join(f"<td class=num>{_pm(s[xauc_key(v) if v != configured else 'xauc'])}</td>"
                      for v in variants)
            + f"<td>{escape(per_seed)}</td></tr>")
    warning = ""
    if flagged:
        listed = "; ".join(f"<b>{escape(n)}</b>: {escape(', '.join(f))}" for n, f in flagged)
        warning = (f'<p class="warning">Not a result: these rows predict (close to) a constant —'
                   f" {listed}.</p>")
    return (f'<section id="results"><h2>Results (ours, test split)</h2>{warning}'
            f'<table class="results">{head}<tbody>{"".join(rows)}</tbody></table>'
            '<p class="note">The <i>train median</i> row predicts the training split\'s median for'
            " every row; the <i>oracle (median)</i> row, present for generated data, predicts each"
            " row's true conditional median (the MAE floor).</p></section>")


def _comparison(report: dict[str, Any]) -> str:
    if not report.get("comparisons"):
        return ""
    ref, variant = report["reference_row"], headline_variant(report).replace("_", "-")
    head = _head(["row", (f"MAE − {ref}'s (mean over seeds)", "num"),
                  (f"XAUC {variant} − {ref}'s", "num"),
                  (f"seeds where {ref} has the lower MAE", "num"),
                  (f"seeds where {ref} has the higher XAUC {variant}", "num")])
    rows = []
    for row, c in report["comparisons"].items():
        n = len(c["seeds"])
        rows.append(f"<tr><td>{escape(row)}</td><td class=num>{c['mae_diff_mean']:+.4f}</td>"
                    f"<td class=num>{c['xauc_diff_mean']:+.4f}</td>"
                    f"<td class=num>{c['reference_lower_mae']}/{n}</td>"
                    f"<td class=num>{c['reference_higher_xauc']}/{n}</td></tr>")
    return (f'<section id="comparison"><h2>Compared with {escape(ref)}</h2><table>{head}<tbody>'
            f'{"".join(rows)}</tbody></table></section>')


def _runs(report: dict[str, Any]) -> str:
    head = _head(["row", ("seed", "num"), ("best epoch / epochs run", "num"), ("valid MAE", "num"),
                  ("valid XAUC", "num"), ("wall s", "num"), ("train samples/s", "num"), "resumed",
                  "model dir"])
    rows = []
    for r in report["runs"]:
        flags = row_flags(r)
        badges = "".join(f'<span class="flag">{escape(f)}</span>' for f in flags)
        rows.append(
            f'<tr{" class=flagged" if flags else ""}><td>{escape(r["row"])}{badges}</td>'
            f"<td class=num>{r['seed']}</td><td class=num>{r['best_epoch']} / {len(r['history'])}</td>"
            f"<td class=num>{_num(r['best_valid']['mae'])}</td>"
            f"<td class=num>{_num(r['best_valid']['xauc'])}</td>"
            f"<td class=num>{r['wall_seconds']:.1f}</td><td class=num>{r['samples_per_second']:.0f}</td>"
            f"<td>{'yes' if r.get('resumed') else 'no'}</td><td>{_code(r['model_dir'])}</td></tr>")
    return (f'<section id="runs"><h2>Runs</h2><table>{head}<tbody>{"".join(rows)}</tbody></table>'
            "</section>")


def _configs(report: dict[str, Any]) -> str:
    head = _head(["row", "model", "differences from the library defaults"])
    rows, full = [], []
    for name, row in report["rows"].items():
        changes = ", ".join(_code(f"{k}={json.dumps(v)}") for k, v in row["config_changes"].items())
        rows.append(f"<tr><td>{escape(name)}</td><td>{escape(row['model_name'])}</td>"
                    f"<td>{changes or 'none'}</td></tr>")
        if row.get("config"):
            full.append(f"<details><summary>{escape(name)}: the full config</summary>"
                        f"<pre>{escape(json.dumps(row['config'], indent=1))}</pre></details>")
    return (f'<section id="configs"><h2>Configurations</h2><table>{head}<tbody>{"".join(rows)}'
            f'</tbody></table>{"".join(full)}</section>')


def _figures(report: dict[str, Any], figures_dir: Path) -> str:
    parts = []
    for name in report["figures"]:
        caption = figure_caption(name)
        parts.append(f"<figure>{png_img(figures_dir / name, caption)}<figcaption>"
                     f"{escape(caption)} <code>{escape(name)}</code></figcaption></figure>")
    return f'<section id="figures"><h2>Figures</h2>{"".join(parts)}</section>' if parts else ""


def _paper(anchors: dict[str, Any] | None) -> str:
    if anchors is None:
        return ""
    head = _head(["method", *[(f"MAE / XAUC ({c})", "num") for c in anchors["columns"]]])
    rows = "".join(
        f"<tr><td>{escape(label)}</td>"
        + "".join(f"<td class=num>{m:.3f} / {x:.3f}</td>" for m, x in cells) + "</tr>"
        for label, cells in anchors["rows"].values())
    return (f'<section class="paper" id="paper"><h2>The paper\'s numbers, for reference</h2>'
            f'<p class="note">As published in {escape(anchors["caption"])}: the paper\'s'
            " measurements on its data, not ours and not this dataset; XAUC as published, the"
            " authors' reference variant.</p>"
            f"<table>{head}<tbody>{rows}</tbody></table></section>")


# -- pieces ----------------------------------------------------------------------------------
def row_flags(row: dict[str, Any]) -> list[str]:
    """What the record says is wrong with a row or run: ``collapsed: seed 2024: ...`` and the
    like. A field is a flag when true, a reason, a list of reasons, or a record with a reason
    (the trainer's ``collapse`` verdict on a run: ``{"reason": ...}``)."""
    flags = []
    for name in FLAG_FIELDS:
        value = row.get(name)
        if isinstance(value, dict):
            value = value.get("reason") or value.get("detail") or bool(value.get(name))
        if isinstance(value, list):
            value = "; ".join(str(v) for v in value)
        if not value:
            continue
        label = "collapsed" if name == "collapse" else name
        flags.append(f"{label}: {value}" if isinstance(value, str) else
                     ("collapsed to a constant" if label != "degenerate" else "degenerate"))
    return flags


def figure_caption(file_name: str) -> str:
    """``fig5a_interval_mae.png`` → ``Fig. 5a: interval mae``; other names in words."""
    stem = Path(file_name).stem
    match = re.fullmatch(r"fig(\d+[a-z]?)_(.+)", stem)
    if match:
        return f"Fig. {match[1]}: {match[2].replace('_', ' ')}"
    return stem.replace("_", " ").capitalize()


def _overrides(overrides: Any) -> str:
    """The run's config overrides: ``{"common": [...], "scoped": {row: [...]}}`` or a list."""
    if isinstance(overrides, dict):
        common = overrides.get("common") or []
        scoped = [f"{row}:{o}" for row, items in (overrides.get("scoped") or {}).items() for o in items]
        overrides = [*common, *scoped]
    return ", ".join(_code(o) for o in overrides or []) or "none"


def _head(columns: list[str | tuple[str, str]]) -> str:
    cells = "".join(f'<th class="{c[1]}">{escape(c[0])}</th>' if isinstance(c, tuple) else
                    f"<th>{escape(c)}</th>" for c in columns)
    return f"<thead><tr>{cells}</tr></thead>"


def _code(value: Any) -> str:
    return f"<code>{escape(str(value))}</code>"


