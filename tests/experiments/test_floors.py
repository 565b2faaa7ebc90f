from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from grmodel import cli
from grmodel.experiments.floors import learnable_floors
from grmodel.features import DatasetError, read_labels


def test_the_ladder_starts_at_the_recorded_oracle_and_climbs_to_the_median(
        tiny_processed: Path) -> None:
    floors = {f.name: f for f in learnable_floors(tiny_processed, draws=2)}
    oracle = floors["oracle"]
    recorded = read_labels(tiny_processed, "test", "oracle_median")
    labels = read_labels(tiny_processed, "test")
    assert oracle.mae == pytest.approx(float(abs(labels - recorded).mean()), rel=1e-9)
    assert oracle.ratio_to_oracle == 1.0
    # Knowing less never helps: each rung is above the exact law, the constant is the worst.
    for name in ("segment taste", "no taste", "segment taste, effects from rows"):
        assert oracle.mae < floors[name].mae < floors["train median"].mae, name
    assert floors["segment taste"].mae < floors["no taste"].mae


def test_the_draws_are_seeded(tiny_processed: Path) -> None:
    first = learnable_floors(tiny_processed, draws=2, seed=3)
    assert learnable_floors(tiny_processed, draws=2, seed=3) == first
    assert learnable_floors(tiny_processed, draws=2, seed=4)[3] != first[3]


def test_a_dataset_whose_law_cannot_be_re_created_is_refused(tiny_processed: Path,
                                                             tmp_path: Path) -> None:
    copy = tmp_path / "processed"
    shutil.copytree(tiny_processed, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["generator"]["config"]["seed"] += 1  # another world: the oracle no longer matches
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="re-creates the data.s law"):
        learnable_floors(copy)
    del manifest["generator"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="no generator config"):
        learnable_floors(copy)


def test_the_command_prints_the_table_or_json(tiny_processed: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["experiment", "floors", "--data", str(tiny_processed), "--draws", "1"]) == 0
    table = capsys.readouterr().out
    assert "| oracle |" in table and "| train median |" in table
    assert cli.main(["experiment", "floors", "--data", str(tiny_processed), "--draws", "1",
                     "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows][0] == "oracle" and rows[0]["ratio_to_oracle"] == 1.0
