"""Data sources resolved, recorded and obtained again (grmodel/datasource.py): a directory
snapshotted into a DVC remote (a local folder here), a window of logs by day recorded by its
partitions' hashes, on a path and through a file:// URI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from grmodel import versioning
from grmodel.data.kuairec.ingest import IngestConfig, ingest_kuairec
from grmodel.data.windows import Window
from grmodel.datasource import (
    DataRecord,
    DataSourceError,
    default_remote,
    obtain,
    resolve_generated,
    resolve_logs,
    resolve_path,
)


def test_a_path_is_snapshotted_and_read_back_exactly(tiny_raw: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    record = resolve_path(str(tiny_raw), tmp_path / "raw", str(remote))
    assert record.data_version == versioning.directory_hash(tiny_raw) == record.snapshot["md5"]
    assert record.snapshot["remote"] == str(remote)
    copy = Path(shutil.copytree(tiny_raw, tmp_path / "edited"))
    (copy / "synth.json").unlink()  # the directory changes after the run: the snapshot does not
    again = DataRecord.from_dict(record.to_dict())
    assert obtain(again, tmp_path / "again") == f"snapshot in {remote}"
    assert versioning.directory_hash(tmp_path / "again") == record.data_version
    with pytest.raises(DataSourceError, match="not be reproducible.*snapshot_remote="):
        resolve_path(str(tiny_raw), tmp_path / "raw2", "")


def test_a_window_of_logs_is_recorded_by_its_partitions(tiny_days: Path, tmp_path: Path) -> None:
    window = Window.of("2020-09-09", 2)
    record = resolve_logs(tiny_days.as_uri(), window, tmp_path / "raw")
    assert sorted(record.partitions) == ["2020-09-07", "2020-09-08", "2020-09-09"]
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [
        "date=2020-09-07", "date=2020-09-08", "date=2020-09-09"]
    assert record.window == window.to_dict() and record.side_files is None
    assert record.data_version == versioning.directory_hash(tmp_path / "raw")
    assert "logs file://" in record.describe()
    assert obtain(record, tmp_path / "again").startswith("logs in file://")
    # A day that was trained on changes afterwards: the record says which.
    logs = Path(shutil.copytree(tiny_days, tmp_path / "logs"))
    moved = DataRecord.from_dict({**record.to_dict(), "location": str(logs)})
    with (logs / "date=2020-09-08" / "interactions.csv").open("a") as handle:
        handle.write("1,1,1000,2000,2020-09-08 10:00:00.000,20200908,1599530400.0,0.5\n")
    with pytest.raises(DataSourceError, match=r"partition\(s\) date=2020-09-08 changed"):
        obtain(moved, tmp_path / "third")


def test_logs_with_a_remote_are_snapshotted_too(tiny_days: Path, tmp_path: Path) -> None:
    record = resolve_logs(str(tiny_days), Window.of("2020-09-10", 2), tmp_path / "raw",
                          snapshot_remote=str(tmp_path / "remote"))
    assert record.snapshot["md5"] == record.data_version
    assert obtain(record, tmp_path / "again").startswith("snapshot in")


def test_generated_data_is_recorded_by_its_settings(tmp_path: Path) -> None:
    record = resolve_generated("tiny", 3, tmp_path / "raw")
    assert record.generator == {"preset": "tiny", "seed": 3}
    assert obtain(record, tmp_path / "again") == "regenerated data"
    wrong = DataRecord("generate", "0" * 32 + ".dir", generator={"preset": "tiny", "seed": 3})
    with pytest.raises(DataSourceError, match="not the recorded"):
        obtain(wrong, tmp_path / "third")


def test_the_default_remote_of_a_checkout(tmp_path: Path, monkeypatch) -> None:
    from dvc.repo import Repo

    assert default_remote(tmp_path) == ""
    monkeypatch.chdir(tmp_path)  # as `dvc remote add -d store ../store` run in the checkout
    with Repo.init(str(tmp_path), no_scm=True) as repo, repo.config.edit("repo") as conf:
        conf["remote"]["store"] = {"url": "../store"}
        conf["core"]["remote"] = "store"
    monkeypatch.chdir("/")
    assert default_remote(tmp_path) == str((tmp_path.parent / "store").resolve())


def test_logs_whose_days_hold_no_side_files_take_the_roots(tiny_days: Path, tmp_path: Path) -> None:
    logs = Path(shutil.copytree(tiny_days, tmp_path / "logs"))
    for name in ("user_features.csv", "item_categories.csv"):
        shutil.copyfile(logs / "date=2020-09-10" / name, logs / name)
        for day in logs.glob("date=*"):
            (day / name).unlink()
    record = resolve_logs(str(logs), Window.of("2020-09-10", 2), tmp_path / "raw")
    assert sorted(record.side_files) == ["item_categories.csv", "user_features.csv"]
    assert (tmp_path / "raw" / "user_features.csv").is_file()
    manifest = ingest_kuairec(tmp_path / "raw", tmp_path / "processed",
                              IngestConfig(split="forward"))  # the side files of the root
    assert "user_features.csv" in manifest["sources"]
    (logs / "user_features.csv").write_text("user_id\n1\n")  # the root's side file changes
    with pytest.raises(DataSourceError, match="the root's side files changed"):
        obtain(record, tmp_path / "again")
