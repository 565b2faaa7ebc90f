"""The data stages: fetch one raw data version, gate it with great expectations, ingest it
into the processed dataset (and gate that)."""

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
from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec
from grmodel.features import read_manifest
from grmodel.pipeline.live import StageTracking
from grmodel.pipeline.stages.record import StageError, check_engine
from grmodel.pipeline.stages.runner import StageRun
from grmodel.redact import redact, strip_credentials
from grmodel.validation import validate_processed, validate_raw_kuairec

log = logging.getLogger(__name__)

DATA_SOURCES = ("dvc", "generate", "path")


def fetch_data(
    out_dir: str | Path,
    *,
    source: str = "dvc",
    data_version: str = "",
    data_repo: str = ".",
    preset: str = "default",
    data_seed: int = 2024,
    tracking: StageTracking | None = None,
) -> dict[str, Any]:
    """Write exactly one raw KuaiRec-format data version into ``out_dir``; return its version.

    ``dvc``: the version ``data.dvc`` records in the git + DVC repository ``data_repo`` (or,
    with ``data_version``, any version some commit of it records): the workspace's version is
    pulled or regenerated and verified, and refused when ``data/`` was edited after
    ``dvc add``; another version is read through the DVC API at the commit that recorded it.
    ``generate``: the synth ``preset`` with ``data_seed``. ``path``: the directory
    ``data_repo`` as it is (real KuaiRec). The version is DVC's directory hash in every case.
    """
    stage = StageRun("fetch_data", tracking)
    if source not in DATA_SOURCES:
        raise StageError(f"data source {source!r}: expected one of {list(DATA_SOURCES)}")
    out = Path(out_dir)
    git_rev = None  # a commit whose data.dvc records the version (dvc sources)
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
            git_rev = versioning.version_rev(repo, version)
        elif source == "generate":
            generate_kuairec(raw, SynthConfig.preset(preset, seed=data_seed))
            how = "generated"
        else:
            given = Path(data_repo)
            if not given.is_dir():
                raise StageError(f"data source path: {given} is not a directory")
            shutil.copytree(given, raw)
            how = "copied"
        shutil.rmtree(tmp / "repo", ignore_errors=True)
        got = versioning.directory_hash(raw)
        if data_version and got != data_version:
            raise StageError(f"data version {data_version} was asked for, but the {source} data"
                             f" hashes to {got}")
        result = {"data_version": got, "obtained": how, "source": source, "git_rev": git_rev,
                  "files": sorted(p.name for p in raw.iterdir())}
        stage.record(
            params={"data": {"source": source, "data_version": got, "git_rev": git_rev,
                             "repo": strip_credentials(str(data_repo)), "preset": preset,
                             "data_seed": data_seed}},
            metrics={"raw_bytes": float(sum(p.stat().st_size for p in raw.rglob("*") if p.is_file()))},
        )
    log.info("data version %s (%s) in %s", got, how, out)
    return result


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
            report = validate_raw_kuairec(raw_dir(data_dir))
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
