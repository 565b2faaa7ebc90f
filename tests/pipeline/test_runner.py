"""The stage runner: a new stage is one plain function, and what every stage owes (a complete
output or none, its record, its timing) comes from ``StageRun`` (tracking itself is tested in
tests/pipeline/test_live.py against a real MLflow server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grmodel import outputs
from grmodel.pipeline.stages.record import StageRecord
from grmodel.pipeline.stages.runner import StageRun


def count_words(text_file: Path, out_dir: Path, fail: bool = False) -> int:
    """A new stage, written the one way: it writes its output, then records what it did."""
    stage = StageRun("count_words")
    words = len(text_file.read_text().split())
    with stage.output(out_dir) as out:
        (out / "count.json").write_text(json.dumps({"words": words}))
        if fail:
            raise OSError("disk full")
        stage.record(params={"count": {"file": text_file.name}}, metrics={"words": float(words)},
                     artifacts=["count.json"])
    return words


def test_a_new_stage_is_one_plain_function(tmp_path):
    text = tmp_path / "in.txt"
    text.write_text("one two three")
    assert count_words(text, tmp_path / "out") == 3
    record = StageRecord.read(tmp_path / "out")
    assert record.stage == "count_words" and record.metrics == {"words": 3.0}
    assert record.params == {"count": {"file": "in.txt"}} and record.artifacts == ["count.json"]
    assert 0 < record.started <= record.ended and record.mlflow_run_id == ""  # not tracked
    assert outputs.is_grmodel_output(tmp_path / "out")


def test_a_failed_stage_leaves_its_previous_output_whole(tmp_path):
    text = tmp_path / "in.txt"
    text.write_text("one two three")
    count_words(text, tmp_path / "out")
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    text.write_text("four")
    with pytest.raises(OSError, match="disk full"):
        count_words(text, tmp_path / "out", fail=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out"]  # no temporary left


def test_a_stage_that_forgets_its_record_writes_nothing(tmp_path):
    stage = StageRun("forgetful")
    with pytest.raises(RuntimeError, match="without StageRun.record"), stage.output(tmp_path / "out") as out:
        (out / "data.txt").write_text("x")
    assert not (tmp_path / "out").exists()


def test_an_output_written_in_place_keeps_what_the_stage_wrote_before_failing(tmp_path):
    """The validation gate's way: the report and record stay when the gate then fails."""
    stage = StageRun("gate")
    in_place = stage.output(tmp_path / "report", atomic=False)
    with pytest.raises(ValueError, match="gate failed"), in_place as out:
        out.mkdir()
        (out / "report.md").write_text("2 checks failed")
        stage.record(metrics={"checks_failed": 2.0}, artifacts=["report.md"])
        raise ValueError("gate failed")
    assert StageRecord.read(tmp_path / "report").metrics == {"checks_failed": 2.0}
    assert (tmp_path / "report" / "report.md").read_text() == "2 checks failed"
