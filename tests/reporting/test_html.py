"""The report page in a real browser (Debian's headless Chromium at 1280 px): styled tables, not
Markdown; every figure loaded and scaled to the page; no horizontal overflow; a collapsed row
marked; the paper's numbers labelled as the paper's. The record here is a small one written for
the test; tests/pipeline/test_local_run.py checks the page a pipeline run writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from grmodel.reporting.html import figure_caption, render_report_html, row_flags


def _stats(mean, std=None, per_seed=None):
    return {"mean": mean, "std": std, "per_seed": per_seed}


def _record() -> dict:
    seeds = [2024, 2025]
    summary = {
        "gr": {"model_name": "gr", "seeds": seeds, "mae": _stats(3.1, 0.02, [3.08, 3.12]),
               "xauc": _stats(0.61, 0.01, [0.60, 0.62]), "xauc_tie_aware": _stats(0.61, 0.01)},
        "tpm": {"model_name": "tpm", "seeds": seeds, "mae": _stats(3.4, 0.0, [3.4, 3.4]),
                "xauc": _stats(0.5, 0.0, [0.5, 0.5]), "xauc_tie_aware": _stats(0.5, 0.0),
                "collapsed": {"reason": "prediction std 0 on the test split"}},
        "train median": {"model_name": None, "seeds": None, "mae": _stats(3.5),
                         "xauc": _stats(0.5), "xauc_tie_aware": _stats(0.5)},
    }
    runs = [{"row": row, "seed": seed, "best_epoch": 1, "history": [{}, {}],
             "best_valid": {"mae": 3.2, "xauc": 0.6}, "wall_seconds": 12.5,
             "samples_per_second": 900.0, "resumed": False,
             "model_dir": "/a/very/long/path/that/must/wrap/instead/of/widening/the/page/" * 3 + row}
            for row in ("gr", "tpm") for seed in seeds]
    return {
        "experiment": "table1", "title": "Table 1 on a test record", "created": "2026-12-01T07:00:00Z",
        "grmodel_version": "0.1.0", "seeds": seeds, "reference_row": "gr",
        "machine": {"cpu_count": 2, "torch": "2.13.0", "platform": "Linux"},
        "dataset": {"path": "/data/processed", "fingerprint": "0123456789abcdef0123",
                    "label": {"mode": "watch_time", "unit": "s"}, "test_rows": 1990},
        "eval_config": {"xauc": "reference"},
        "overrides": {"common": ["train.epochs=3"], "scoped": {"tpm": ["head.tpm_w_var=0.1"]}},
        "rows": {"gr": {"model_name": "gr", "config_changes": {"train.epochs": 3},
                        "config": {"model_name": "gr", "train": {"epochs": 3}}},
                 "tpm": {"model_name": "tpm", "config_changes": {"head.tpm_w_var": 0.1}}},
        "summary": summary, "runs": runs,
        "comparisons": {"tpm": {"seeds": seeds, "mae_diff_mean": 0.3, "xauc_diff_mean": -0.11,
                                "reference_lower_mae": 2, "reference_higher_xauc": 2}},
        "figures": ["fig5a_interval_mae.png", "training_curves.png"],
        "wall_seconds": 30.0, "train_wall_seconds": 50.0,
    }


def _wide_png(path: Path, width_px: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_px / 100, 3), dpi=100)
    FigureCanvasAgg(figure)
    figure.add_subplot().plot([0, 1, 2], [1, 3, 2])
    figure.savefig(path)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    (root / "figures").mkdir()
    _wide_png(root / "figures" / "fig5a_interval_mae.png", 2400)  # wider than the page
    _wide_png(root / "figures" / "training_curves.png", 800)
    path = root / "report.html"
    path.write_text(render_report_html(_record(), root / "figures",
                                       {"data version": "3f2a9c1b.dir", "git commit": "deadbeef"}))
    return path


def test_the_page_is_self_contained_and_says_whose_numbers_are_whose(page):
    text = page.read_text()
    assert "<script" not in text and "src=\"http" not in text and "href=" not in text
    assert text.count("data:image/png;base64,") == 2
    assert "3f2a9c1b.dir" in text and "deadbeef" in text and "tpm:head.tpm_w_var=0.1" in text
    paper = text[text.index('id="paper"'):]
    assert "not ours" in paper and "3.196 / 0.614" in paper  # the paper's GR, Table 1
    assert "3.196" not in text[: text.index('id="paper"')]


def test_chromium_shows_tables_figures_and_no_overflow_at_1280px(page, browser_render, tmp_path):
    measured = browser_render(page, tmp_path)
    assert measured["viewport"] == 1280
    assert measured["scrollWidth"] <= 1280, "the page scrolls sideways"
    assert [t["rows"] for t in measured["tables"]] == [3, 1, 4, 2, 7]  # results … paper
    assert all(t["right"] <= 1280 for t in measured["tables"])
    assert measured["pre_tables"] == 0
    assert len(measured["images"]) == 2
    for image in measured["images"]:
        assert image["loaded"] and 0 < image["width"] <= image["natural"] + 2  # + its border
        assert image["right"] <= 1280
    assert measured["images"][0]["width"] < 2400  # scaled down to the page
    assert measured["flagged"] == 1
    assert measured["headings"][:3] == ["Table 1 on a test record", "Provenance",
                                        "Results (ours, test split)"]
    assert "The paper's numbers, for reference" in measured["headings"]
    assert measured["screenshot_size"][0] == 1280 and measured["screenshot"].stat().st_size > 10_000


def test_flags_and_captions():
    assert row_flags({"collapsed": True}) == ["collapsed to a constant"]
    assert row_flags({"collapsed": {"reason": "std 0"}}) == ["collapsed: std 0"]
    assert row_flags({"collapsed": False, "mae": 1.0}) == []
    assert row_flags({"collapsed": ["seed 1: std 0"]}) == ["collapsed: seed 1: std 0"]
    assert row_flags({"collapse": {"reason": None}}) == []  # the trainer's verdict: not collapsed
    assert row_flags({"collapse": {"reason": "std 0"}}) == ["collapsed: std 0"]
    assert figure_caption("fig5a_interval_mae.png") == "Fig. 5a: interval mae"
    assert figure_caption("training_curves.png") == "Training curves"
