"""The day-by-day simulation's report, from its recorded rows (``days.json``): one row per day
as a Markdown table (``days.md``), a timeline figure (``days.png``: each day's MAE of the
challenger and of the champion it was judged against, the days the drift check flagged, the
planted drifts, the promotions) and one self-contained HTML page (``days.html``: the figure
inline, the table, the flagged columns). Nothing here runs a pipeline."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from grmodel.atomic import atomic_file, write_text_atomic
from grmodel.reporting.html import html_page, png_img

if TYPE_CHECKING:
    from grmodel.experiments.days import DayRow

MARKDOWN_FILE, HTML_FILE, FIGURE_FILE = "days.md", "days.html", "days.png"
REPORT_FILES = (MARKDOWN_FILE, HTML_FILE, FIGURE_FILE)
TITLE = "Day by day: the pipeline as of each day"

# (header, right-aligned, the cell of a row)
COLUMNS = [
    ("as of", False, lambda r: r.as_of),
    ("data version", False, lambda r: r.data_version.removesuffix(".dir")[:8]),
    ("partitions", True, lambda r: str(r.partitions)),
    ("train / valid / test rows", False,
     lambda r: f"{r.rows['train']:,} / {r.rows['valid']:,} / {r.rows['test']:,}"),
    ("new users / videos in test", False,
     lambda r: f"{r.oov_test_rows['users']:,} / {r.oov_test_rows['videos']:,}"),
    ("drift planted", False, lambda r: ", ".join(r.drifts) or "–"),
    ("drift check", False, lambda r: _drift(r)),
    ("champion MAE", True, lambda r: _number(r.champion_mae)),
    ("challenger MAE", True, lambda r: _number(r.challenger_mae)),
    ("champion decay", True, lambda r: _decay(r)),
    ("gate", False, lambda r: r.verdict),
    ("champion after", False, lambda r: r.champion_after or "–"),
]


def days_table(rows: list[DayRow]) -> str:
    """One Markdown row per day."""
    lines = ["| " + " | ".join(name for name, _, _ in COLUMNS) + " |",
             "|" + "|".join("---:" if right else "---" for _, right, _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(cell(r) for _, _, cell in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def days_figure(rows: list[DayRow]) -> Figure:
    """The timeline: MAE per day, flagged and planted drifts, promotions."""
    figure = Figure(figsize=(8.0, 3.6), layout="constrained")
    ax = figure.add_subplot()
    x = list(range(len(rows)))
    for k, r in enumerate(rows):
        if r.drift == "drift":
            ax.axvspan(k - 0.4, k + 0.4, color="#c62828", alpha=0.12,
                       label="drift check: drift" if k == _first(rows, "drift") else None)
        if r.drifts and (k == 0 or not rows[k - 1].drifts):
            ax.axvline(k, color="#6a1b9a", linestyle="--", linewidth=1,
                       label=f"planted: {', '.join(r.drifts)}")
    champion = [(k, r.champion_mae) for k, r in enumerate(rows) if r.champion_mae is not None]
    if champion:
        ax.plot(*zip(*champion), marker="s", color="#546e7a", label="champion on the day")
    challenger = [(k, r.challenger_mae) for k, r in enumerate(rows) if r.challenger_mae is not None]
    if challenger:
        ax.plot(*zip(*challenger), marker="o", color="#1565c0", label="challenger (this run)")
    promoted = [(k, r.challenger_mae) for k, r in enumerate(rows)
                if r.verdict == "promoted" and r.challenger_mae is not None]
    if promoted:
        ax.scatter(*zip(*promoted), s=160, facecolors="none", edgecolors="#2e7d32", linewidths=2,
                   zorder=3, label="promoted")
    ax.set_xticks(x, [f"{r.as_of}\nchampion " + (f"v{r.champion_after}" if r.champion_after
                                                   else "–") for r in rows], fontsize=8)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylabel("test MAE on the day")
    ax.set_title("MAE per day (under each day: the champion after its run)", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return figure


def days_html(rows: list[DayRow], figure: Path) -> str:
    """The page: the figure inline, the table, what the drift check flagged."""
    head = "".join(f'<th class="num">{escape(n)}</th>' if right else f"<th>{escape(n)}</th>"
                   for n, right, _ in COLUMNS)
    body = "".join(
        f'<tr{" class=flagged" if r.drift == "drift" or r.decay_flagged else ""}>'
        + "".join(f'<td class="num">{escape(cell(r))}</td>' if right else
                  f"<td>{escape(cell(r))}</td>" for _, right, cell in COLUMNS) + "</tr>"
        for r in rows)
    flagged = "".join(f"<li>{escape(r.as_of)}: {escape('; '.join(r.drifted))}</li>"
                      for r in rows if r.drifted)
    seconds = sum(r.seconds for r in rows)
    return html_page(escape(TITLE), [
        f"<h1>{escape(TITLE)}</h1>",
        f'<p class="lede">{len(rows)} days, one local pipeline run each ({seconds:.0f} s in'
        " all). Each run trains on the days before its day and is tested on it; the champion"
        " is the registry's before the run, scored on the same rows through its own"
        " encoders.</p>",
        f"<figure>{png_img(figure, 'MAE per day')}<figcaption>MAE per day: the challenger,"
        " the champion it was judged against, the days the drift check flagged (shaded),"
        f" the planted drifts (dashed) <code>{FIGURE_FILE}</code></figcaption></figure>",
        f"<h2>Days</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
        f"<h2>Drift flagged</h2><ul>{flagged}</ul>" if flagged else
        "<h2>Drift flagged</h2><p>none</p>",
    ])


def write_days_report(out_dir: str | Path, rows: list[DayRow]) -> None:
    """``days.md``, ``days.png`` and ``days.html`` of ``rows`` into ``out_dir``, each atomically."""
    out = Path(out_dir)
    write_text_atomic(out / MARKDOWN_FILE, days_table(rows) + "\n")
    with atomic_file(out / FIGURE_FILE) as tmp:
        days_figure(rows).savefig(tmp, format="png", dpi=100)
    write_text_atomic(out / HTML_FILE, days_html(rows, out / FIGURE_FILE))


def _drift(row: DayRow, most: int = 3) -> str:
    """The verdict; for a drift its columns, each once whatever the splits (the page lists
    every split and column)."""
    if row.drift != "drift":
        return row.drift or "–"
    columns = list(dict.fromkeys(item.partition(" ")[2] for item in row.drifted))
    more = f" (+{len(columns) - most} more)" if len(columns) > most else ""
    return "DRIFT" + (": " + ", ".join(columns[:most]) + more if columns else "")


def _decay(row: DayRow) -> str:
    if row.champion_decay is None:
        return "–"
    return f"{row.champion_decay:+.1%}" + (" (flagged)" if row.decay_flagged else "")


def _first(rows: list[DayRow], verdict: str) -> int:
    return next(k for k, r in enumerate(rows) if r.drift == verdict)


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"
