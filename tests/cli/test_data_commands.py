from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from grmodel.cli import data as commands
from grmodel.data.io import DataSpecError
from grmodel.features import read_manifest


def _run(argv: list[str]) -> int:
    """Parse and run like grmodel.cli does (its ValueErrors are the error path)."""
    parser = argparse.ArgumentParser(prog="grmodel")
    commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_synth_then_ingest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw, out = tmp_path / "raw", tmp_path / "processed"
    assert _run(["data", "synth", str(raw), "--preset", "tiny", "--seed", "3",
                 "--set", "n_items=150"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"]["big_matrix"] == 8000
    assert json.loads((raw / "synth.json").read_text())["config"]["n_items"] == 150
    assert _run(["data", "ingest", str(raw), str(out), "--label-mode", "watch_ratio",
                 "--split", "random", "--dedupe", "--set", "duration_buckets=5",
                 "--set", 'user_fields=["user_active_degree", "onehot_feat1"]',
                 "--set", "split_draw=hash"]) == 0
    manifest = read_manifest(out)
    assert manifest["options"]["split_draw"] == "hash"
    assert manifest["options"]["dedupe"] is True and manifest["label"]["mode"] == "watch_ratio"
    assert manifest["encoders"]["item_duration_bucket"]["buckets"] == 5
    assert [f["name"] for f in manifest["features"]["fields"]][:3] == [
        "user_id", "user_active_degree", "onehot_feat1"]
    assert json.loads(capsys.readouterr().out)["oracle"] is True


def test_tabular(tmp_path: Path) -> None:
    pd.DataFrame({"u": [1, 2, 3, 4] * 5, "i": list("abcde") * 4, "y": range(20)}).to_csv(
        tmp_path / "t.csv", index=False)
    spec = {"name": "toy", "source": "t.csv", "label": "y", "user": {"categorical": ["u"]},
            "item": {"categorical": ["i"]}}
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(spec))
    assert _run(["data", "tabular", str(tmp_path / "toy.yaml"), str(tmp_path / "out")]) == 0
    assert sum(read_manifest(tmp_path / "out")["splits"]["rows"].values()) == 20


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "synth", "OUT", "--preset", "tiny", "--set", "n_users"], "FIELD=VALUE"),
        (["data", "synth", "OUT", "--preset", "tiny", "--set", "n_users=many"], "expected int"),
        (["data", "ingest", "RAW", "OUT", "--set", "split=weekly"], "split"),
        (["data", "ingest", "RAW", "OUT", "--set", "split_draw=shuffle"],
         r"split_draw='shuffle': expected one of \['permutation', 'hash'\]"),
        (["data", "ingest", "RAW", "OUT"], "not a directory"),
    ],
)
def test_errors_are_value_errors_naming_the_problem(tmp_path: Path, argv: list[str],
                                                    message: str) -> None:
    argv = [str(tmp_path / a) if a in ("OUT", "RAW") else a for a in argv]
    with pytest.raises(ValueError, match=message):
        _run(argv)
    assert not (tmp_path / "OUT").exists()


def test_cli_wiring(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    from grmodel import cli

    assert cli.main(["data", "ingest", str(tmp_path / "missing"), str(tmp_path / "out")]) == 1
    assert "missing: not a directory" in capsys.readouterr().err
    assert issubclass(DataSpecError, ValueError)
