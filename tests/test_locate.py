"""Commands pointed at a pipeline artifact folder find the dataset or model inside it."""

from __future__ import annotations

import pytest

from grmodel.locate import dataset_dir, model_dir


def test_the_folder_itself_or_the_one_inside(tmp_path):
    data = tmp_path / "ingest" / "processed" / "processed"
    data.mkdir(parents=True)
    (data / "manifest.json").write_text("{}")
    assert dataset_dir(data) == data
    assert dataset_dir(tmp_path / "ingest" / "processed") == data  # the KFP artifact folder
    assert dataset_dir(tmp_path / "ingest") == data
    assert dataset_dir(tmp_path / "nope") == tmp_path / "nope"  # the reader names what is missing


def test_several_or_none_are_named(tmp_path):
    for seed in ("seed1", "seed2"):
        (tmp_path / "model" / seed).mkdir(parents=True)
        (tmp_path / "model" / seed / "model.pt").write_bytes(b"")
    assert model_dir(tmp_path / "model" / "seed1") == tmp_path / "model" / "seed1"
    with pytest.raises(FileNotFoundError, match=r"holds 2 models .*seed1.*seed2.*name one of them"):
        model_dir(tmp_path / "model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no model here or below .*runs/main/latest/models/gr"):
        model_dir(tmp_path / "empty")
