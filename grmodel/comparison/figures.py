"""The experiment figures, drawn from an experiment's report record alone (so ``report.json`` can
redraw them): MAE per label interval (the paper's Fig. 5a), prediction distributions against the
ground truth (Fig. 5b-d), token frequencies per vocabulary (Fig. 4) and training curves.

Matplotlib is used through its object API on the Agg canvas (no pyplot, no global backend).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from grmodel.atomic import atomic_file

FIG5A_FILE = "fig5a_interval_mae.png"
FIG5_FILE = "fig5_distributions.png"
FIG4_FILE = "fig4_token_frequency.png"
CURVES_FILE = "training_curves.png"
# How the seed-independent reference rows are drawn.
REFERENCE_STYLE = {"train median": ("0.55", ":"), "oracle (median)": ("black", "--")}


def render_figures(report: dict[str, Any], figures_dir: Path) -> list[str]:
    """Write every figure the report has data for; returns the file names written."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    data = report["figure_data"]
    drawers = [
        (FIG5A_FILE, _interval_mae, report["summary"]),
        (FIG5_FILE, _distributions, data["distributions"]),
        (FIG4_FILE, _token_frequency, data["token_frequency"]),
        (CURVES_FILE, _training_curves, report["runs"]),
    ]
    written = []
    for name, draw, payload in drawers:
        if payload:
            _save(draw(payload), figures_dir / name)
            written.append(name)
    return written


def _save(figure: Any, path: Path) -> None:
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)


def _colors(names: list[str]) -> dict[str, Any]:
    palette = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: palette(k % palette.N) for k, name in enumerate(names)}


def _grid(n_panels: int, width: float = 4.2, height: float = 3.3) -> tuple[Any, list[Any]]:
    """Up to four panels a line. Fixed margins instead of a layout engine: a layout engine
    measures every tick label and doubles the drawing time."""
    cols = min(n_panels, 4)
    rows = -(-n_panels // cols)
    figure = Figure(figsize=(width * cols, height * rows))
    figure.subplots_adjust(left=0.5 / (width * cols) + 0.04, right=0.98, bottom=0.75 / (height * rows),
                           top=1 - 0.55 / (height * rows), wspace=0.3, hspace=0.55)
    axes = figure.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return figure, axes[:n_panels]


def _interval_label(interval: dict[str, Any]) -> str:
    lo, hi = interval["lo"], interval["hi"]
    return f"≥{lo:g}" if hi is None else f"{lo:g}-{hi:g}"


def _interval_mae(summary: dict[str, Any]) -> Any:
    """Fig. 5a: MAE per ground-truth interval, mean over seeds with a ± std band."""
    figure, (ax,) = _grid(1, width=9.0, height=4.4)
    colors = _colors([n for n in summary if n not in REFERENCE_STYLE])
    first = next(iter(summary.values()))["intervals"]
    x = list(range(len(first)))
    for name, row in summary.items():
        means = [i["mae_mean"] if i["mae_mean"] is not None else float("nan") for i in row["intervals"]]
        color, style = REFERENCE_STYLE.get(name, (colors.get(name), "-"))
        ax.plot(x, means, label=name, color=color, linestyle=style, marker="o", markersize=3)
        if any(i["mae_std"] for i in row["intervals"]):
            stds = [i["mae_std"] or 0.0 for i in row["intervals"]]
            ax.fill_between(x, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                            color=color, alpha=0.15, linewidth=0)
    ax.set_xticks(x, [f"{_interval_label(i)}\n(n={i['count']})" for i in first], fontsize=7)
    ax.set_xlabel("ground-truth interval")
    ax.set_ylabel("MAE (mean over seeds; band: ± std)")
    ax.set_title("MAE per ground-truth interval (Fig. 5a)")
    ax.legend(fontsize=7, ncols=2)
    return figure


def _distributions(distributions: dict[str, Any]) -> Any:
    """Fig. 5b-d: each row's prediction histogram over the ground truth's."""
    figure, axes = _grid(len(distributions))
    for ax, (name, d) in zip(axes, distributions.items()):
        edges = d["edges"]
        ax.stairs(d["true"], edges, fill=True, color="0.8",
                  label=f"truth: mean {d['true_mean']:.3g}, var {d['true_var']:.3g}")
        ax.stairs(d["pred"], edges, color="tab:red", linewidth=1.4,
                  label=f"pred: mean {d['pred_mean']:.3g}, var {d['pred_var']:.3g}")
        seed = "" if d["seed"] is None else f", seed {d['seed']}"
        ax.set_title(f"{name}{seed}", fontsize=9)
        ax.set_xlabel(f"label (last bin: ≥ {edges[-2]:.3g})", fontsize=8)
        ax.set_ylabel(f"rows (of {d['rows']})", fontsize=8)
        ax.legend(fontsize=7)
    figure.suptitle("Predictions against the ground truth (Fig. 5b-d); mean and variance over the"
                    " whole test split")
    return figure


def _token_frequency(frequencies: dict[str, Any]) -> Any:
    """Fig. 4: share of each value token in the training label encodings and in generation."""
    figure, axes = _grid(len(frequencies))
    for ax, (name, f) in zip(axes, frequencies.items()):
        x = list(range(len(f["values"])))
        edges = [k - 0.5 for k in range(len(x) + 1)]  # one step per token (cheaper than bars)
        train_total = max(sum(f["train"]), 1)
        ax.stairs([c / train_total for c in f["train"]], edges, fill=True, color="tab:blue",
                  alpha=0.5, label="training labels")
        if f["generated"] is not None:
            generated_total = max(sum(f["generated"]), 1)
            ax.plot(x, [c / generated_total for c in f["generated"]], color="tab:red", marker=".",
                    linewidth=1.0, label=f"generated ({f['generated_rows']} test rows)")
        ax.set_title(f"{name}: {f['vocab_kind']}, {len(x)} tokens", fontsize=9)
        ax.set_xlabel("token (largest value first)", fontsize=8)
        ax.set_ylabel("share of tokens", fontsize=8)
        ax.legend(fontsize=7)
    figure.suptitle("Token frequency per vocabulary (Fig. 4)")
    return figure


def _training_curves(runs: list[dict[str, Any]]) -> Any:
    """Validation MAE and XAUC per epoch, one colour per row, one line per seed."""
    figure, axes = _grid(2, width=5.5, height=3.8)
    colors = _colors(list(dict.fromkeys(r["row"] for r in runs)))
    labelled: set[str] = set()
    for r in runs:
        epochs = [h["epoch"] + 1 for h in r["history"]]
        label = None if r["row"] in labelled else r["row"]
        labelled.add(r["row"])
        for ax, key in zip(axes, ("valid_mae", "valid_xauc")):
            ax.plot(epochs, [h[key] for h in r["history"]], color=colors[r["row"]], marker=".",
                    label=label)
    for ax, title in zip(axes, ("validation MAE", "validation XAUC (reference)")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    return figure
