"""``grmodel validate raw|processed|tokens``: exit status, summary paragraph and reports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from grmodel import cli

BAD_INPUTS = Path(__file__).parents[1] / "validation" / "bad_inputs"
SMALL_BOUNDS = ["--set", "big_rows=[20,1000]", "--set", "small_rows=[20,1000]",
                "--set", "user_rows=[2,100]", "--set", "item_rows=[2,100]"]


def corpus_raw(root: Path, **files: str) -> Path:
    """A raw directory of corpus files (the good ones unless named)."""
    chosen = {"big_matrix": "good_matrix.csv", "small_matrix": "good_matrix.csv",
              "user_features": "good_users.csv", "item_categories": "good_items.csv", **files}
    root.mkdir()
    for name, source in chosen.items():
        shutil.copyfile(BAD_INPUTS / source, root / f"{name}.csv")
    return root


def test_raw_pass_writes_reports(tiny_raw: Path, tmp_path: Path, capsys) -> None:
    assert cli.main(["validate", "raw", "--input", str(tiny_raw), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "passed: 0 failed" in out
    record = json.loads((tmp_path / "validation.json").read_text())
    assert record["success"] and record["suite"] == "raw_kuairec"
    assert (tmp_path / "validation.md").read_text().startswith("# Validation PASSED")
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_raw_failure_exits_1_with_summary_on_stderr(tmp_path: Path, capsys) -> None:
    raw = corpus_raw(tmp_path / "raw", big_matrix="negative_durations.csv")
    argv = ["validate", "raw", "--input", str(raw), "--out", str(tmp_path / "out"), *SMALL_BOUNDS]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "FAILED: 2 failed" in err
    assert "big_matrix.csv play_duration: 0 <= play_duration <= 86,400,000 ms" in err
    assert "\n" not in err.strip()  # one paragraph
    assert not json.loads((tmp_path / "out" / "validation.json").read_text())["success"]


def test_warnings_do_not_fail_the_run(tmp_path: Path, capsys) -> None:
    raw = corpus_raw(tmp_path / "raw", user_features="sparse_profile_users.csv")
    argv = ["validate", "raw", "--input", str(raw), "--out", str(tmp_path / "out"), *SMALL_BOUNDS]
    assert cli.main(argv) == 0
    assert "1 warning(s)" in capsys.readouterr().out and "onehot_feat4" in (
        tmp_path / "out" / "validation.md").read_text()


def test_processed_and_tokens(tiny_processed: Path, tmp_path: Path, capsys) -> None:
    data = str(tiny_processed)
    assert cli.main(["validate", "processed", "--input", data, "--out", str(tmp_path / "p")]) == 0
    assert cli.main(["validate", "tokens", "--input", data, "--out", str(tmp_path / "t")]) == 0
    argv = ["validate", "tokens", "--input", data, "--split", "test", "--max-len", "1",
            "--out", str(tmp_path / "t1")]
    assert cli.main(argv) == 1
    assert "at most max_len=1 tokens per label" in capsys.readouterr().err


def test_unknown_bound_is_a_clear_error(tiny_raw: Path, tmp_path: Path, capsys) -> None:
    argv = ["validate", "raw", "--input", str(tiny_raw), "--out", str(tmp_path), "--set", "x=1"]
    assert cli.main(argv) == 1
    assert "--set 'x=1': expected NAME=VALUE" in capsys.readouterr().err
