"""The data stages: fetch one raw data version, gate it with great expectations, ingest it
into the processed dataset (and gate that).

What a run reads is resolved when its fetch starts (``grmodel.datasource``): the head of a
git + DVC repository, the generator's data, a directory (snapshotted into a DVC remote), or the
partitions of a window of logs by day. A windowed run (``window_days > 0``) is as of one day:
its ``as_of``, or the last complete day before the run's scheduled time; it trains on the
window before that day and is tested on it (``grmodel.data.windows``).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

from grmodel import versioning
from grmodel.data.io import DataSpecError
from grmodel.data.kuairec.ingest import IngestConfig, ingest_kuairec
from grmodel.data.storage import is_uri
from grmodel.data.windows import Window, as_of_from_schedule
from grmodel.datasource import (
    SOURCES,
    DataRecord,
    DataSourceError,
    logs_partitions,
    resolve_generated,
    resolve_logs,
    resolve_path,
)
from grmodel.features import read_manifest
from grmodel.pipeline.live import StageTracking
from grmodel.pipeline.stages.record import STAGE_RECORD, StageError, StageRecord, check_engine
from grmodel.pipeline.stages.runner import StageRun
from grmodel.redact import redact, strip_credentials
from grmodel.validation import RawBounds, validate_processed, validate_raw_kuairec

log = logging.getLogger(__name__)

DATA_SOURCES = SOURCES


def fetch_data(
    out_dir: str | Path,
    *,
    source: str = "dvc",
    data_version: str = "",
    data_repo: str = ".",
    preset: str = "default",
    data_seed: int = 2024,
    as_of: str = "",
    window_days: int = 0,
    scheduled_time: str = "",
    snapshot_remote: str = "",
    tracking: StageTracking | None = None,
) -> dict[str, Any]:
    """Write exactly one raw KuaiRec-format data version into ``out_dir``; return its version,
    the run's resolved ``as_of`` ("" unless windowed) and the ``record`` of what was read
    (``datasource.DataRecord``; the stage record holds it under ``data``).

    ``dvc``: the version ``data.dvc`` records in the git + DVC repository ``data_repo`` at its
    head (or, with ``data_version``, any version some commit of it records): the workspace's
    version is pulled or regenerated and verified, and refused when ``data/`` was edited after
    ``dvc add``; another version is read through the DVC API at the commit that recorded it.
    ``generate``: the synth ``preset`` with ``data_seed``. ``path``: the directory
    ``data_repo``, snapshotted into the DVC remote ``snapshot_remote`` (refused without one).
    ``logs``: the partitions of the window (``window_days`` before ``as_of``, and ``as_of``)
    of the day-partitioned logs at ``data_repo`` (a path or a URI), snapshotted too when a
    remote is given. The version is DVC's directory hash in every case.
    """
    stage = StageRun("fetch_data", tracking)
    if source not in DATA_SOURCES:
        raise StageError(f"data source {source!r}: expected one of {list(DATA_SOURCES)}")
    window = logs_window(as_of, window_days, scheduled_time) if source == "logs" else run_window(
        as_of, window_days, scheduled_time)
    out = Path(out_dir)
    with stage.output(out) as tmp:
        raw = tmp / "raw"
        if source == "dvc":
            repo = _checkout(data_repo, tmp / "repo")
            recorded = versioning.read_version(repo).md5
            version = data_version or recorded
            if version == recorded:
                how = versioning.ensure_data(repo)
                versioning.require_version(repo, version)
                shutil.copytree(repo / versioning.DATA_DIR, raw)
            else:
                versioning.export_version(repo, version, raw)
                how = "exported"
            record = DataRecord("dvc", versioning.directory_hash(raw),
                                strip_credentials(str(data_repo)),
                                git_rev=versioning.version_rev(repo, version))
            shutil.rmtree(tmp / "repo", ignore_errors=True)
        else:
            record, how = _resolve(source, raw, data_repo, preset, data_seed, window,
                                   snapshot_remote)
        got = record.data_version
        if data_version and got != data_version:
            raise StageError(f"data version {data_version} was asked for, but the {source} data"
                             f" hashes to {got}")
        resolved = window.as_of.isoformat() if window else ""
        result = {"data_version": got, "obtained": how, "source": source,
                  "git_rev": record.git_rev, "as_of": resolved, "record": record.to_dict(),
                  "files": sorted(p.name for p in raw.iterdir())}
        stage.record(
            params={"data": {**record.to_dict(), "repo": strip_credentials(str(data_repo)),
                             "preset": preset, "data_seed": data_seed},
                    "window": window.to_dict() if window else {}},
            metrics={"raw_bytes": float(sum(p.stat().st_size for p in raw.rglob("*") if p.is_file()))},
        )
    log.info("data version %s (%s) in %s", got, how, out)
    return result


def _resolve(source: str, raw: Path, data_repo: str, preset: str, seed: int,
             window: Window | None, snapshot_remote: str) -> tuple[DataRecord, str]:
    """(what was read, how) for the sources other than dvc."""
    try:
        if source == "generate":
            return resolve_generated(preset, seed, raw), "generated"
        if source == "path":
            return resolve_path(data_repo, raw, snapshot_remote), "snapshotted"
        assert window is not None
        record = resolve_logs(data_repo, window, raw, snapshot_remote)
        return record, f"{len(record.partitions or {})} partitions"
    except DataSourceError as exc:
        raise StageError(str(exc)) from None


def logs_window(as_of: str, window_days: int, scheduled_time: str = "") -> Window:
    """The window of a run on logs by day (data_source logs), which must read one."""
    window = run_window(as_of, window_days, scheduled_time)
    if window is None:
        raise StageError("data source logs: window_days is 0 (rule: a run on logs by day reads a"
                         " window: window_days >= 2, and as_of or the scheduled time)")
    return window


def check_local_logs(data_repo: str, as_of: str, window_days: int) -> None:
    """A run on logs by day in a folder on this machine: the window's partitions are there,
    checked before the run creates anything (logs on a URI are checked by the fetch)."""
    window = logs_window(as_of, window_days)
    if not is_uri(data_repo):
        logs_partitions(data_repo, window)


def run_window(as_of: str, window_days: int, scheduled_time: str = "") -> Window | None:
    """The run's window: None when ``window_days`` is 0 (then ``as_of`` must be empty), else
    as of ``as_of``, or of the last complete day before ``scheduled_time`` (KFP's scheduled
    time of the run; unresolved or empty: now)."""
    try:
        if not window_days:
            if as_of:
                raise DataSpecError(f"as_of={as_of!r} with window_days 0 (rule: a run as of a day"
                                    " reads the window_days >= 2 days before it)")
            return None
        return Window.of(as_of or as_of_from_schedule(scheduled_time), window_days)
    except DataSpecError as exc:
        raise StageError(str(exc)) from None


def fetched_window(fetched: str | Path) -> Window | None:
    """The window a :func:`fetch_data` output was resolved for (None: not windowed)."""
    entry = StageRecord.read(fetched).params.get("window") or {}
    return Window.from_dict(entry) if entry else None


def ingest_options(split: str, label_mode: str, as_of: str = "", window_days: int = 0
                   ) -> dict[str, Any]:
    """The ingest options of a pipeline run: a windowed run (``window_days > 0``, ``as_of``
    the fetch's resolved day) splits forward; ``split`` is then left at its default or
    ``forward``."""
    if not window_days:
        return {"split": split, "label_mode": label_mode}
    if split not in ("authors", "forward"):
        raise StageError(f"split={split!r} with window_days={window_days} (rule: a windowed run"
                         " trains on the window and tests on the as_of day: split forward)")
    return {"split": "forward", "as_of": as_of, "window_days": window_days,
            "label_mode": label_mode}


def _checkout(data_repo: str, clone_dir: Path) -> Path:
    """The git + DVC repository: a local path as it is, a URL cloned (with its history, which
    maps data versions to commits) into ``clone_dir``."""
    if not data_repo:
        raise StageError("data source dvc: data_repo is empty (rule: name the git + DVC"
                         " repository, a path or a URL)")
    if data_repo.startswith("-"):
        raise StageError(f"data_repo {redact(data_repo)!r}: starts with '-' (rule: data_repo is a"
                         " path or a git URL, never a git option)")
    if not versioning.GIT_URL.match(data_repo):
        return Path(data_repo).resolve()
    try:
        # "--" ends git's options: the URL is never read as one.
        subprocess.run(["git", "clone", "--quiet", "--", data_repo, str(clone_dir)], check=True,
                       capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = " ".join(str(getattr(exc, "stderr", "") or exc).split())
        raise StageError(f"git clone of data_repo {redact(data_repo)} failed: {redact(detail)}"
                         " (rule: data_repo must be a reachable git + DVC repository)") from None
    return clone_dir


def raw_dir(fetched: str | Path) -> Path:
    """The raw files inside a :func:`fetch_data` output."""
    return Path(fetched) / "raw"


def validate_data(data_dir: str | Path, kind: str, out_dir: str | Path,
                  tracking: StageTracking | None = None) -> dict[str, Any]:
    """The great-expectations gate: ``kind`` is ``raw`` (a :func:`fetch_data` output) or
    ``processed`` (an :func:`ingest` output). Writes the reports, then raises
    ``ValidationFailed`` when a check failed, which stops the pipeline."""
    stage = StageRun(f"validate_{kind}", tracking)
    if kind not in ("raw", "processed"):
        raise StageError(f"validation kind {kind!r}: expected 'raw' or 'processed'")
    # Written in place, not atomically: the report is kept even when the gate fails, it is
    # what the user reads next.
    with stage.output(out_dir, atomic=False) as out:
        if kind == "raw":
            report = validate_raw_kuairec(raw_dir(data_dir), raw_bounds(data_dir))
        else:
            report = validate_processed(Path(data_dir))
        report.write(out)
        counts = report.counts()
        stage.record(
            params={"validation": {"suite": report.suite, **report.params}},
            metrics={f"checks_{k}": float(v) for k, v in counts.items()},
            artifacts=["validation.json", "validation.md", "validation.html"],
        )
        report.raise_for_failure()
    return {"success": report.success, "counts": counts, "summary": report.summary()}


def raw_bounds(fetched: str | Path) -> RawBounds:
    """The raw suite's bounds for a fetch: the days of its window when it read logs by day
    (every partition it copied lies in it), else the days of the data itself."""
    if not (Path(fetched) / STAGE_RECORD).is_file():  # raw files fetched some other way
        return RawBounds()
    window = fetched_window(fetched)
    if window is None or StageRecord.read(fetched).params["data"].get("source") != "logs":
        return RawBounds()
    return RawBounds(first_day=window.first_day.isoformat(), last_day=window.as_of.isoformat())


def validation_gate(data_dir: str | Path, kind: str, data_version: str, report: Any,
                    html_path: str | Path, checks: Any,
                    tracking: StageTracking | None = None) -> str:
    """What the validate components do around :func:`validate_data`: the HTML report to
    ``html_path`` (for the Kubeflow UI, even when the gate fails), the counts as KFP metrics
    (``checks``) and the data version as ``report``'s metadata; returns the summary line."""
    try:
        result = validate_data(data_dir, kind, report.path, tracking)
    finally:  # the report is the one thing a failed gate must leave behind
        page = Path(report.path) / "validation.html"
        if page.is_file():
            shutil.copyfile(page, html_path)
    report.metadata.update({"kind": kind, "data_version": data_version})
    for status, count in result["counts"].items():
        checks.log_metric(f"{kind}_checks_{status}", count)
    return result["summary"]


def ingest(fetched_dir: str | Path, out_dir: str | Path, options: dict[str, Any] | None = None,
           tracking: StageTracking | None = None, engine: str = "pandas") -> dict[str, Any]:
    """Turn raw KuaiRec files into the processed train/valid/test tables (``options``:
    fields of ``IngestConfig``, such as ``split`` and ``label_mode``), with ``engine`` pandas
    (one process) or spark (grmodel/data/spark/, the same tables)."""
    stage = StageRun("ingest", tracking)
    check_engine(engine)
    try:
        config = IngestConfig.from_dict(options or {})
    except DataSpecError as exc:
        raise StageError(f"ingest options: {exc}") from None
    with stage.output(out_dir) as tmp:
        if engine == "spark":
            # lazy: pyspark is the optional extra `spark`
            from grmodel.data.spark.kuairec import ingest_kuairec_spark

            ingest_kuairec_spark(raw_dir(fetched_dir), tmp, config)
        else:
            ingest_kuairec(raw_dir(fetched_dir), tmp, config)  # the output is the processed dataset
        manifest = read_manifest(tmp)
        rows = {f"{split}_rows": float(n) for split, n in manifest["splits"]["rows"].items()}
        stage.record(params={"ingest": dataclasses.asdict(config), "engine": engine},
                     metrics=rows, artifacts=["manifest.json"])
    return {"rows": rows, "label": manifest.get("label")}
