"""The training state directory is grmodel's own: a directory of the user's is never used as
one, and removing the state deletes only the files a training wrote there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from grmodel.cli import main
from grmodel.outputs import MARKER, OutputError, write_marker
from grmodel.training.loop import train_model
from grmodel.training.state import STATE_FILE, STATE_SUMMARY, StateStore

QUICK = ["train.epochs=1", "train.patience=1"]


def _user_folder(root: Path) -> Path:
    folder = root / "mystuff"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "state.json").write_text("{}")  # a name a training state uses: still the user's
    return folder


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_users_folder_is_refused_as_state_dir_and_kept(planted_dataset, tmp_path, monkeypatch,
                                                          capsys):
    monkeypatch.chdir(tmp_path)
    folder = _user_folder(tmp_path)
    before = _tree(folder)
    code = main(["train", "--data", str(planted_dataset), "--out", "m", "--model", "vr",
                 "--state-dir", "mystuff", "train.epochs=1", "train.on_collapse=warn",
                 "train.progress=false"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "state directory mystuff: holds files grmodel did not write" in err[0]
    assert _tree(folder) == before and not (tmp_path / "m").exists()


@pytest.mark.parametrize("where", ["cwd", "dataset", "inside_dataset", "out"])
def test_state_dir_overlapping_an_input_or_the_cwd_is_refused(where, planted_dataset, tmp_path,
                                                               monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    state = {"cwd": ".", "dataset": str(planted_dataset),
             "inside_dataset": str(planted_dataset / "sub"), "out": "m"}[where]
    before = _tree(planted_dataset)
    (tmp_path / "keep.txt").write_text("mine")
    code = main(["train", "--data", str(planted_dataset), "--out", "m", "--model", "vr",
                 "--state-dir", state, "train.epochs=1", "train.progress=false"])
    assert code == 1
    err = capsys.readouterr().err
    assert "state directory" in err and "rule:" in err and "Traceback" not in err
    assert _tree(planted_dataset) == before and (tmp_path / "keep.txt").read_text() == "mine"


def test_removal_deletes_only_the_state_files(planted_dataset, gr_config, tmp_path):
    """A file the user dropped into a live state directory outlives the state's removal."""
    config = gr_config(planted_dataset, "model_name=vr", *QUICK)
    state = tmp_path / "m.state"
    state.mkdir()
    train_model(config, tmp_path / "m", state_dir=state)  # an empty directory: marked, then removed
    assert not state.exists()

    # An earlier training's state (marked) with a file of the user's dropped in beside it.
    state.mkdir()
    write_marker(state, "train_state")
    (state / STATE_FILE).write_bytes(b"old")
    (state / f".{STATE_FILE}.dead.tmp").write_bytes(b"half")
    (state / "mine.txt").write_text("keep")
    train_model(config, tmp_path / "m2", state_dir=state)
    assert sorted(p.name for p in state.iterdir()) == ["mine.txt"]


def test_claim_accepts_new_empty_and_marked_directories(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    StateStore(tmp_path / "new").claim()
    (tmp_path / "empty").mkdir()
    StateStore(tmp_path / "empty").claim()
    marked = tmp_path / "marked"
    marked.mkdir()
    write_marker(marked, "train_state")
    (marked / STATE_SUMMARY).write_text("{}")
    StateStore(marked).claim()
    other = tmp_path / "model"  # a grmodel output of another kind is not a state directory
    other.mkdir()
    write_marker(other)
    (other / "model.pt").write_bytes(b"x")
    with pytest.raises(OutputError, match="grmodel did not write"):
        StateStore(other).claim()
    link = tmp_path / "link"
    os.symlink(marked, link)
    with pytest.raises(OutputError, match="not a directory"):
        StateStore(link).claim()
    assert (marked / MARKER).is_file()
