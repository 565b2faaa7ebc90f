"""What a run trains on: its data source resolved when the run starts, recorded exactly, and
obtained again from that record.

The sources (the pipeline's ``data_source``):

* ``dvc``: the version a git + DVC repository's ``data.dvc`` records at its head (or a version
  asked for by name); recorded as DVC's md5 and the commit that recorded it;
* ``generate``: the generator's preset and seed, regenerated and checked against the hash;
* ``path``: a directory as it is. A path is not a version, so it is snapshotted into a DVC
  remote (``snapshot_remote``) and recorded by its md5 there;
* ``logs``: the partitions of a window of day-partitioned logs (grmodel/data/windows.py), on a
  path or an object-store URI; recorded as each partition's content hash (and, with a
  ``snapshot_remote``, snapshotted too: DVC stores a file once, so each new window adds only
  its new day).

Whatever the source, the raw directory a run read has one *data version*: DVC's md5 of it
(``versioning.directory_hash``). :class:`DataRecord` is what the fetch stage records and what
``grmodel reproduce`` reads back (:func:`obtain`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import yaml
from dvc.exceptions import DvcException
from dvc.repo import Repo

from grmodel import versioning
from grmodel.atomic import atomic_directory
from grmodel.data.io import sha256_file
from grmodel.data.kuairec.schema import DAILY_FILE, ITEM_FILE, USER_FILE
from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec
from grmodel.data.storage import Location, is_uri, location
from grmodel.data.streaming import split_paths
from grmodel.data.windows import Window, partition_hash, window_partitions
from grmodel.features import SPLITS, read_manifest
from grmodel.redact import redact, strip_credentials

log = logging.getLogger(__name__)

SOURCES = ("dvc", "generate", "path", "logs")
_REMOTE = "grmodel-snapshots"  # the remote's name inside the throwaway DVC repositories


class DataSourceError(ValueError):
    """A source that cannot be resolved, snapshotted or obtained again (one clear line)."""


@dataclass
class DataRecord:
    """What a run read, exactly enough to read it again."""

    source: str  # one of SOURCES
    data_version: str  # DVC's md5 of the raw directory the run read ("<32 hex>.dir")
    location: str = ""  # dvc: data_repo; path: the directory; logs: the log root (no credentials)
    git_rev: str | None = None  # dvc: a commit whose data.dvc records data_version
    generator: dict[str, Any] | None = None  # generate: {"preset", "seed"}
    window: dict[str, Any] | None = None  # logs: Window.to_dict()
    partitions: dict[str, Any] | None = None  # logs: day -> partition_hash() (sha256, files)
    side_files: dict[str, str] | None = None  # logs: side files read from the root -> sha256
    snapshot: dict[str, str] | None = None  # {"remote", "md5"}: a copy in a DVC remote

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, "")}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DataRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})

    def describe(self) -> str:
        """One line: the source and what of it was read."""
        if self.source == "logs" and self.window:
            days = f"{self.window['train_dates'][0]} .. {self.window['test_date']}"
            return f"logs {self.location} {days} ({len(self.partitions or {})} partitions)"
        if self.source == "generate" and self.generator:
            return f"generated {self.generator['preset']} seed {self.generator['seed']}"
        where = f" at {self.git_rev[:12]}" if self.git_rev else ""
        return f"{self.source} {self.location}{where}".strip()


# --------------------------------------------------------------------- as MLflow datasets

# MLflow's dataset context of each split (the runs page shows it beside the dataset).
SPLIT_CONTEXTS = {"train": "training", "valid": "validation", "test": "testing"}


def dataset_inputs(processed_dir: str | Path, record: DataRecord) -> list[dict[str, Any]]:
    """What a run trained, selected and was tested on, as MLflow dataset inputs (plain dicts
    for ``tracking.log_dataset_inputs``): per split its name (``<dataset>-<split>``), a digest
    of its Parquet file(s), the source it came from, its context, and a profile (rows, and a
    windowed run's days)."""
    manifest = read_manifest(processed_dir)
    window = manifest.get("window") or {}
    days = {"train": window.get("train_dates"), "valid": window.get("valid_dates"),
            "test": [window["test_date"]] * 2 if window else None}
    source = {"uri": _source_uri(record), "data_version": record.data_version}
    if record.git_rev:
        source["git_rev"] = record.git_rev
    inputs = []
    for split in SPLITS:
        digest = hashlib.sha256()
        for path in split_paths(processed_dir, split):
            digest.update(bytes.fromhex(sha256_file(path)))
        profile = {"num_rows": manifest["splits"]["rows"][split]}
        if days[split]:
            profile["dates"] = days[split]
        inputs.append({"name": f"{manifest.get('dataset', 'data')}-{split}",
                       "digest": digest.hexdigest()[:16], "source_type": record.source,
                       "source": json.dumps(source), "context": SPLIT_CONTEXTS[split],
                       "profile": json.dumps(profile)})
    return inputs


def _source_uri(record: DataRecord) -> str:
    if record.snapshot:
        return f"{record.snapshot['remote']}#{record.snapshot['md5']}"
    if record.source == "generate" and record.generator:
        return f"generate:{record.generator['preset']}?seed={record.generator['seed']}"
    return record.location


# ----------------------------------------------------------------------------- resolving


def logs_partitions(root: str, window: Window) -> tuple[Location, dict[dt.date, Location]]:
    """The log ``root`` and the partitions ``window`` reads from it; one line naming the rule
    when the root is no directory or a day of the window has no partition."""
    logs = location(root)
    if not logs.is_dir():
        raise DataSourceError(f"{strip_credentials(root)}: not a directory of day partitions"
                              " (rule: data_source logs reads date=YYYY-MM-DD folders)")
    return logs, window_partitions(logs, window)


def resolve_logs(root: str, window: Window, out_dir: str | Path,
                 snapshot_remote: str = "") -> DataRecord:
    """Copy the partitions ``window`` reads from the log ``root`` (a path or a URI) into
    ``out_dir`` (replaced whole), with the root's side files when the newest day holds none;
    record each partition's content hash, and snapshot the copy when a remote is given."""
    logs, partitions = logs_partitions(root, window)
    newest = list(partitions.values())[-1]
    side = {} if newest.child(USER_FILE).is_file() else {
        name: logs.child(name) for name in (USER_FILE, ITEM_FILE, DAILY_FILE)
        if logs.child(name).is_file()}
    with atomic_directory(out_dir, mark=False) as tmp:
        hashes = {}
        for day, partition in partitions.items():
            (tmp / partition.name).mkdir()
            pafs.copy_files(partition.path, str(tmp / partition.name),
                            source_filesystem=partition.fs,
                            destination_filesystem=pafs.LocalFileSystem())
            hashes[day.isoformat()] = partition_hash(location(str(tmp / partition.name)))
        for name, file in side.items():
            pafs.copy_files(file.path, str(tmp / name), source_filesystem=file.fs,
                            destination_filesystem=pafs.LocalFileSystem())
        side_files = {name: sha256_file(tmp / name) for name in side}
    record = DataRecord("logs", versioning.directory_hash(out_dir), strip_credentials(root),
                        window=window.to_dict(), partitions=hashes, side_files=side_files or None)
    if snapshot_remote:
        record.snapshot = snapshot_directory(out_dir, snapshot_remote)
    log.info("resolved %s: data version %s", record.describe(), record.data_version)
    return record


def resolve_path(directory: str, out_dir: str | Path, snapshot_remote: str) -> DataRecord:
    """Copy the directory into ``out_dir`` and snapshot it into the DVC remote; refused, with
    what to do instead, when no remote is given (a path alone cannot be read again)."""
    given = Path(directory)
    if is_uri(directory) or not given.is_dir():
        raise DataSourceError(f"data source path: {strip_credentials(directory)} is not a"
                              " directory on this machine (rule: a local folder of raw files;"
                              " logs by day on a URI are data_source logs)")
    if not snapshot_remote:
        raise DataSourceError(
            f"data source path: {given} would not be reproducible: a path is not a version"
            " (rule: pass snapshot_remote=<a DVC remote URL or folder> to snapshot it there, or"
            " record it with `grmodel data snapshot` and run with data_source=dvc)")
    with atomic_directory(out_dir, mark=False) as tmp:
        shutil.copytree(given, tmp, dirs_exist_ok=True)
    snapshot = snapshot_directory(out_dir, snapshot_remote)
    return DataRecord("path", snapshot["md5"], str(given.resolve()), snapshot=snapshot)


def resolve_generated(preset: str, seed: int, out_dir: str | Path) -> DataRecord:
    """The generator's data, recorded by its preset and seed (it regenerates byte for byte)."""
    generate_kuairec(out_dir, SynthConfig.preset(preset, seed=seed))
    return DataRecord("generate", versioning.directory_hash(out_dir),
                      generator={"preset": preset, "seed": seed})


# ---------------------------------------------------------------------------- snapshots


def default_remote(repo_root: str | Path) -> str:
    """The URL (or absolute folder) of the default DVC remote of the checkout at
    ``repo_root``; "" when it has none."""
    root = Path(repo_root).resolve()
    if not (root / ".dvc").is_dir():
        return ""
    try:
        with Repo(str(root)) as repo:
            name = repo.config["core"].get("remote")
            return str(repo.config["remote"].get(name, {}).get("url", "")) if name else ""
    except DvcException:
        return ""


def snapshot_directory(directory: str | Path, remote: str) -> dict[str, str]:
    """Push ``directory`` into the DVC remote ``remote`` (a URL or a folder) as one DVC
    directory object; return ``{"remote", "md5"}``. Credentials come from the environment."""
    shown = strip_credentials(remote)
    with tempfile.TemporaryDirectory(prefix="grmodel-snapshot-") as tmp:
        try:
            repo = _snapshot_repo(Path(tmp), remote)
            with repo:
                repo.add([str(Path(directory).resolve())], out=str(Path(tmp) / "data"))
                repo.push(targets=[str(Path(tmp) / "data.dvc")], remote=_REMOTE)
            md5 = yaml.safe_load((Path(tmp) / "data.dvc").read_text())["outs"][0]["md5"]
        except DvcException as exc:
            raise DataSourceError(f"snapshot of {directory} into the DVC remote {shown} failed:"
                                  f" {redact(str(exc))}") from None
    log.info("snapshotted %s into %s as %s", directory, shown, md5)
    return {"remote": shown, "md5": md5}


def restore_snapshot(snapshot: dict[str, str], out_dir: str | Path) -> Path:
    """Pull the directory a :func:`snapshot_directory` recorded into ``out_dir`` (replaced
    whole), checked against its md5."""
    with tempfile.TemporaryDirectory(prefix="grmodel-snapshot-") as tmp:
        try:
            repo = _snapshot_repo(Path(tmp), snapshot["remote"])
            repo.close()
            (Path(tmp) / "data.dvc").write_text(yaml.safe_dump(
                {"outs": [{"md5": snapshot["md5"], "hash": "md5", "path": "data"}]}))
            with Repo(tmp) as repo:
                repo.pull(targets=[str(Path(tmp) / "data.dvc")], remote=_REMOTE)
        except DvcException as exc:
            raise DataSourceError(f"cannot read snapshot {snapshot['md5']} from the DVC remote"
                                  f" {snapshot['remote']}: {redact(str(exc))}") from None
        with atomic_directory(out_dir, mark=False) as target:
            shutil.copytree(Path(tmp) / "data", target, dirs_exist_ok=True)
    _check_version(out_dir, snapshot["md5"], f"the snapshot in {snapshot['remote']}")
    return Path(out_dir)


def _snapshot_repo(root: Path, remote: str) -> Repo:
    """A throwaway DVC repository (no git) whose default remote is ``remote``."""
    init_log = logging.getLogger("dvc.repo.init")  # "Initialized DVC repository.": not news here
    level = init_log.level
    init_log.setLevel(logging.WARNING)
    try:
        Repo.init(str(root), no_scm=True).close()
    finally:
        init_log.setLevel(level)
    repo = Repo(str(root))
    with repo.config.edit() as conf:
        conf["remote"][_REMOTE] = {"url": remote}
        conf["core"]["remote"] = _REMOTE
        conf["cache"]["type"] = "hardlink,symlink,copy"  # no second copy of the data
    return repo


# ---------------------------------------------------------------------------- obtaining


def obtain(record: DataRecord, out_dir: str | Path, repo_root: str | Path = ".") -> str:
    """Write exactly what ``record`` says a run read into ``out_dir``; say from where (a
    phrase such as "snapshot in REMOTE"). A dvc version is read at its commit in the checkout
    ``repo_root``."""
    out = Path(out_dir)
    if record.snapshot:
        restore_snapshot(record.snapshot, out)
        return f"snapshot in {record.snapshot['remote']}"
    if record.source == "dvc":
        versioning.export_version(repo_root, record.data_version, out, record.git_rev)
        return f"DVC export at {(record.git_rev or '?')[:12]}"
    if record.source == "generate" and record.generator:
        generate_kuairec(out, SynthConfig.preset(record.generator["preset"],
                                                 seed=record.generator["seed"]))
        _check_version(out, record.data_version, "the regenerated data")
        return "regenerated data"
    if record.source == "logs" and record.window:
        again = resolve_logs(record.location, Window.from_dict(record.window), out)
        changed = sorted(d for d, h in (record.partitions or {}).items()
                         if (again.partitions or {}).get(d, {}).get("sha256") != h["sha256"])
        if changed or again.side_files != record.side_files:
            what = (f"partition(s) {', '.join(f'date={d}' for d in changed)}" if changed
                    else "the root's side files")
            raise DataSourceError(f"{record.location}: {what} changed since the run (rule: logs"
                                  " by day are immutable once written; a run reproduces from"
                                  " its snapshot when it had a snapshot_remote)")
        _check_version(out, record.data_version, f"the logs in {record.location}")
        return f"logs in {record.location} (every partition's hash checked)"
    raise DataSourceError(f"a {record.source} run's record cannot be read again (rule: dvc,"
                          " generate, logs, or a snapshot in a DVC remote)")


def _check_version(directory: str | Path, expected: str, what: str) -> None:
    got = versioning.directory_hash(directory)
    if got != expected:
        raise DataSourceError(f"{what} hashes to {got}, not the recorded {expected}")
