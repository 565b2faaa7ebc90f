"""The output policy on every writer: the issue's data-loss repros, --overwrite, reuse of an
identical finished run, one writer per output, and the library's own safety net."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny_runs import TINY_RUN

from grmodel.atomic import atomic_directory
from grmodel.cli import main
from grmodel.outputs import MARKER, OutputError, check_output, output_lock

TINY_GR = [*TINY_RUN, "train.batch_size=256", "train.epochs=1", "data.max_train_rows=2000",
           "train.on_collapse=warn"]  # a 1-epoch toy model may collapse: kept, marked


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """raw (synth tiny), p (its processed dataset) and m (a GR trained on p), in one folder."""
    root = tmp_path_factory.mktemp("outputs")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["data", "synth", "raw", "--preset", "tiny", "--seed", "3"]) == 0
        assert main(["data", "ingest", "raw", "p"]) == 0
        assert main(["train", "--data", "p", "--out", "m", *TINY_GR]) == 0
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def here(work, monkeypatch) -> Path:
    monkeypatch.chdir(work)
    return work


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _refused(capsys, argv: list[str], *needles: str) -> str:
    capsys.readouterr()  # what earlier commands printed
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err  # one line
    assert err.startswith(f"grmodel {argv[0]}")
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize(("argv", "rule"), [
    (["data", "ingest", "raw", "raw"], "is the input raw"),  # destroyed the raw CSVs
    (["train", "--data", "p", "--out", "p"], "is the input p"),  # destroyed the dataset
    (["train", "--data", "p", "--out", "p/sub"], "is inside the input p"),
    (["train", "--data", "p/../p", "--out", "."], "working directory"),  # OSError + .old-* dir
    (["data", "ingest", "raw", ".."], "working directory or above"),
    (["predict", "--model", "m", "--input", "p/test.parquet", "--output", "p/test.parquet"],
     "is the input"),
    (["evaluate", "--data", "p", "--model", "gr=m", "--out", "notes"], "is a directory"),
    (["validate", "raw", "--input", "raw", "--out", "raw/reports"], "is inside the input raw"),
    (["validate", "processed", "--input", "p", "--out", "."], "working directory"),
    (["experiment", "table1", "--data", "p", "--out", "p"], "is the input p"),
    (["data", "synth", "notes", "--preset", "tiny"], "did not write"),
    (["data", "ingest", "raw", "notes"], "did not write"),
    (["train", "--data", "p", "--out", "notes", *TINY_GR], "did not write"),  # deleted notes/
    (["train", "--data", "p", "--out", "notes", "--overwrite", *TINY_GR], "did not write"),
    (["validate", "raw", "--input", "raw", "--out", "notes"], "did not write"),
    (["experiment", "table1", "--data", "p", "--out", "notes"], "did not write"),
    (["pipeline", "run", "--local", "--workdir", "notes"], "did not write"),
    (["main", "--workdir", "notes"], "did not write"),
    (["data", "ingest", "raw", "p"], "only with --overwrite"),
    (["data", "synth", "raw", "--preset", "tiny"], "only with --overwrite"),
    (["predict", "--model", "m", "--input", "p/test.parquet", "--output", "notes/a.txt"],
     "grmodel did not write it"),
    (["predict", "--model", "m", "--input", "p/test.parquet", "--output", "notes/a.txt",
      "--overwrite"], "grmodel did not write it"),  # replaced a user's file
])
def test_outputs_that_would_lose_data_are_refused(here, capsys, argv, rule):
    notes = here / "notes"
    notes.mkdir(exist_ok=True)
    (notes / "a.txt").write_text("a user's file")
    before = {name: _snapshot(here / name) for name in ("raw", "p", "m", "notes")}
    _refused(capsys, argv, rule)
    assert {name: _snapshot(here / name) for name in before} == before
    assert not list(here.glob("*.old-*")) and not list(here.glob("*.tmp-*"))


def test_overwrite_replaces_a_grmodel_output_only(here, capsys):
    copy = here / "p2"
    assert main(["data", "ingest", "raw", str(copy)]) == 0
    manifest = json.loads((copy / "manifest.json").read_text())
    assert (copy / MARKER).is_file()
    assert main(["data", "ingest", "raw", str(copy), "--overwrite", "--split", "random"]) == 0
    assert json.loads((copy / "manifest.json").read_text())["options"] != manifest["options"]
    assert not list(here.glob("p2.*"))  # no .old-*, .tmp-* or lock file beside it


def test_train_reuses_the_identical_finished_model_and_refuses_another_config(here, capsys):
    weights = (here / "m" / "model.pt").read_bytes()
    assert main(["train", "--data", "p", "--out", "m", *TINY_GR]) == 0
    assert "reused, not trained again" in capsys.readouterr().out
    assert (here / "m" / "model.pt").read_bytes() == weights
    _refused(capsys, ["train", "--data", "p", "--out", "m", *TINY_GR, "train.lr=1e-2"],
             "only with --overwrite")
    assert (here / "m" / "model.pt").read_bytes() == weights


def test_predict_and_evaluate_outputs(here, capsys):
    out = here / "pred.parquet"
    args = ["predict", "--model", "m", "--input", "p/test.parquet", "--output", str(out)]
    assert main(args) == 0 and len(pd.read_parquet(out)) > 0
    _refused(capsys, args, "only with --overwrite")
    assert main([*args, "--overwrite"]) == 0
    (here / "dir.parquet").mkdir(exist_ok=True)
    _refused(capsys, [*args[:-1], "dir.parquet", "--overwrite"], "is a directory")
    _refused(capsys, ["evaluate", "--data", "p", "--model", "m"], "expected NAME=DIR")


def test_tabular_refuses_its_own_source_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    table = tmp_path / "t"
    table.mkdir()
    pd.DataFrame({"u": [1, 2, 3, 4] * 5, "i": list("abcde") * 4, "y": range(20)}).to_csv(
        table / "t.csv", index=False)
    spec = {"name": "toy", "source": "t/t.csv", "label": "y", "user": {"categorical": ["u"]},
            "item": {"categorical": ["i"]}}
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(spec))
    _refused(capsys, ["data", "tabular", "toy.yaml", "t"], "contains the input t/t.csv")
    assert (table / "t.csv").is_file()
    assert main(["data", "tabular", "toy.yaml", "out"]) == 0
    _refused(capsys, ["data", "tabular", "toy.yaml", "out"], "only with --overwrite")


def test_validation_reports_replace_only_with_overwrite(here, capsys):
    assert main(["validate", "processed", "--input", "p", "--out", "rep"]) == 0
    _refused(capsys, ["validate", "processed", "--input", "p", "--out", "rep"], "--overwrite")
    assert main(["validate", "processed", "--input", "p", "--out", "rep", "--overwrite"]) == 0


def test_the_library_never_replaces_a_foreign_directory(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(OutputError, match="did not write"), atomic_directory(foreign) as tmp:
        (tmp / "new").write_text("y")
    assert _snapshot(foreign) == {"keep.txt": b"x"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign"]  # nothing left beside it
    # A familiar record name is no proof of ownership: an output of a version before markers
    # (or a user's folder holding a stage.json) is refused with a clear message, never deleted.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "stage.json").write_text("{}")
    with pytest.raises(OutputError, match="no grmodel marker"), atomic_directory(legacy) as tmp:
        (tmp / "new").write_text("y")
    assert _snapshot(legacy) == {"stage.json": b"{}"}
    with pytest.raises(OutputError, match="not a directory"):
        (tmp_path / "file").write_text("z")
        check_output(tmp_path / "file", overwrite=True)


def test_a_killed_writers_temporaries_are_swept_and_one_writer_at_a_time(tmp_path):
    out = tmp_path / "out"
    stale = tmp_path / "out.tmp-deadbeef"
    stale.mkdir()
    (stale / "half.parquet").write_text("partial")
    with output_lock(out):
        code = ("import sys; from grmodel.atomic import atomic_directory\n"
                "try:\n"
                f"    with atomic_directory({str(out)!r}) as t: pass\n"
                "except ValueError as e: print(e); sys.exit(7)\n")
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert other.returncode == 7 and "another grmodel process is writing it" in other.stdout
        assert stale.is_dir()  # not swept while another process holds the lock
    with atomic_directory(out) as tmp:
        (tmp / "done").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
