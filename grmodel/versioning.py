"""Data versions: ``data.dvc`` at the repository root tracks ``data/`` with DVC.

A *data version* is the directory hash DVC records for ``data/`` in ``data.dvc`` (for example
``3f2a…c1.dir``). For generated data, ``data.dvc`` also carries the generator settings under
``meta: {generator: …}`` (DVC keeps the ``meta`` key and ignores it), so a fresh clone can
rebuild exactly that version when no remote holds it, and the settings travel with the
version through git history.

* :func:`ensure_data` obtains the recorded version: ``dvc pull`` (local cache or remote), else
  regenerate from the recorded settings and verify the hash, failing loudly on a difference.
* :func:`require_version` refuses a workspace whose ``data/`` differs from ``data.dvc`` (edited
  after ``dvc add``) or whose ``data.dvc`` is not the version a run asked for.
* :func:`snapshot` records new data as a new version (``dvc add`` + ``dvc push``).
* :func:`export_version` reads any version at the git commit that recorded it, through the DVC
  Python API (cache or remote), without touching the workspace.

DVC runs in-process (its Python API: about 0.1–0.5 s an operation instead of 1–3 s for a CLI
call); its errors become one :class:`VersioningError` naming the repository and the step.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from dvc.exceptions import DvcException
from dvc.fs import DVCFileSystem
from dvc.repo import Repo
from dvc.utils.serialize import modify_yaml
from dvc_data.hashfile.build import build
from dvc_data.hashfile.db import HashFileDB
from dvc_objects.fs.local import LocalFileSystem

from grmodel.atomic import atomic_directory
from grmodel.data.io import sha256_file
from grmodel.data.kuairec.schema import GENERATOR, SYNTH_FILE
from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec

log = logging.getLogger(__name__)

# A git URL (cloned), as opposed to a path on this machine.
GIT_URL = re.compile(r"^(https?|ssh|git|file)://|^[\w.-]+@[\w.-]+:")

DATA_DIR = "data"
DVC_FILE = "data.dvc"

EnsureOutcome = Literal["present", "pulled", "regenerated"]


class VersioningError(ValueError):
    """A data version that cannot be read, obtained, verified or recorded (one clear message)."""


@dataclass(frozen=True)
class DataVersion:
    """What ``data.dvc`` records, in the working tree (``rev=None``) or at a git commit."""

    md5: str  # the version: DVC's directory hash, "<32 hex>.dir"
    nfiles: int | None
    size: int | None
    # {"name", "config", "sha256"} when the data came from the generator, else None.
    generator: dict[str, Any] | None
    rev: str | None


@dataclass(frozen=True)
class WorkspaceStatus:
    """How ``data/`` compares with the version ``data.dvc`` records."""

    version: str
    exists: bool
    # DVC's granular changes under data/: {"modified" | "added" | "deleted" | ...: [paths]}.
    changes: dict[str, list[str]] = field(default_factory=dict)
    cached: bool = True  # the recorded version is in the local DVC cache

    @property
    def matches(self) -> bool:
        return self.exists and not self.changes

    def describe(self) -> str:
        if not self.exists:
            return f"{DATA_DIR}/ is missing"
        files = {kind: [p for p in paths if p != f"{DATA_DIR}/"] for kind, paths in self.changes.items()}
        parts = [f"{kind}: {', '.join(paths)}" for kind, paths in files.items() if paths]
        return "; ".join(parts) or f"{DATA_DIR}/ differs"


# ------------------------------------------------------------------------------ reading


def read_version(repo_root: str | Path, rev: str | None = None) -> DataVersion:
    """Parse ``data.dvc`` from the working tree, or from git at ``rev``."""
    root = Path(repo_root).resolve()
    where = f"{root / DVC_FILE}" + (f" at {rev}" if rev else "")
    if rev is None:
        if not (root / DVC_FILE).is_file():
            raise VersioningError(f"{where}: not found; record the first data version with"
                                  " `grmodel data snapshot`")
        text = (root / DVC_FILE).read_text()
    else:
        text = _git(root, "show", f"{rev}:./{DVC_FILE}")
    try:
        raw = yaml.safe_load(text)
        out = raw["outs"][0]
        md5 = out["md5"]
    except (yaml.YAMLError, KeyError, IndexError, TypeError):
        raise VersioningError(f"{where}: not a DVC file with one output (rule: outs[0].md5)") from None
    if out.get("path") != DATA_DIR or not str(md5).endswith(".dir"):
        raise VersioningError(f"{where}: must track the directory {DATA_DIR!r} (found path"
                              f" {out.get('path')!r}, md5 {md5!r})")
    generator = (raw.get("meta") or {}).get("generator")
    return DataVersion(md5, out.get("nfiles"), out.get("size"), generator, rev)


def current_data_version(repo_root: str | Path) -> str:
    """The version ``data.dvc`` records in the working tree."""
    return read_version(repo_root).md5


def version_rev(repo_root: str | Path, version: str) -> str | None:
    """The newest git commit whose ``data.dvc`` records ``version`` (None when none does)."""
    root = Path(repo_root).resolve()
    try:
        revs = _git(root, "log", "--format=%H", "--", DVC_FILE).split()
    except VersioningError:  # e.g. a repository without commits yet
        return None
    for rev in revs:
        with contextlib.suppress(VersioningError):  # a commit that deleted or broke data.dvc
            if read_version(root, rev).md5 == version:
                return rev
    return None


def directory_hash(path: str | Path) -> str:
    """DVC's own hash of a directory (what ``dvc add`` would record), computed without
    writing anything to a cache."""
    fs = LocalFileSystem()
    # dry_run: hash only; the staging store DVC uses is in memory.
    _, _, obj = build(HashFileDB(fs, str(path)), str(path), fs, "md5", dry_run=True)
    return obj.hash_info.value


# ----------------------------------------------------------------------------- checking


def workspace_status(repo_root: str | Path) -> WorkspaceStatus:
    """Compare ``data/`` with ``data.dvc`` (``dvc data status --granular``)."""
    root = Path(repo_root).resolve()
    version = current_data_version(root)
    with _dvc_repo(root, "data status") as repo:
        # Unfiltered: DVC's `targets` filter drops entries for a missing directory.
        status = repo.data_status(granular=True)
    prefix = f"{DATA_DIR}/"
    changes = {kind: sorted(p for p in paths if p.startswith(prefix))
               for kind, paths in status.get("uncommitted", {}).items()}
    changes = {kind: paths for kind, paths in changes.items() if paths}
    cached = prefix not in status.get("not_in_cache", [])
    return WorkspaceStatus(version, (root / DATA_DIR).is_dir(), changes, cached)


def require_version(repo_root: str | Path, expected: str | None = None) -> str:
    """The version in use; raises when ``data/`` differs from ``data.dvc`` or ``data.dvc``
    records another version than ``expected``."""
    root = Path(repo_root).resolve()
    status = workspace_status(root)
    if expected is not None and status.version != expected:
        rev = version_rev(root, expected)
        hint = (f"`git checkout {rev[:12]} -- {DVC_FILE}` then `grmodel data ensure`" if rev
                else "no git commit records it")
        raise VersioningError(f"{root / DVC_FILE} records data version {status.version}, but"
                              f" {expected} was asked for ({hint})")
    if not status.matches:
        raise VersioningError(
            f"{root / DATA_DIR} differs from {DVC_FILE} version {status.version}"
            f" ({status.describe()}); run `grmodel data ensure --force` to restore the recorded"
            " version or `grmodel data snapshot` to record the edits as a new version"
        )
    return status.version


# ---------------------------------------------------------------------------- obtaining


def ensure_data(repo_root: str | Path, force: bool = False) -> EnsureOutcome:
    """Make ``data/`` hold exactly the version ``data.dvc`` records; say how.

    ``dvc pull`` (from the local cache or the remote) when it can, else regenerate from the
    generator settings recorded in ``data.dvc`` and check the hash. Changes in ``data/`` that
    no DVC version holds are kept unless ``force``. Afterwards ``dvc status`` is clean.
    One process at a time obtains a checkout's data: another (a second main job started in the
    same clone) waits, then finds it present.
    """
    root = Path(repo_root).resolve()
    with _obtaining(root):
        return _ensure_data(root, force)


@contextlib.contextmanager
def _obtaining(root: Path) -> Iterator[None]:
    """A blocking lock in DVC's own temporary folder (git-ignored) of the checkout ``root``
    (none where ``root`` is no DVC repository: nothing is written there)."""
    if not (root / ".dvc").is_dir():
        yield
        return
    folder = root / ".dvc" / "tmp"
    folder.mkdir(exist_ok=True)
    fd = os.open(folder / "grmodel-data.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _ensure_data(root: Path, force: bool) -> EnsureOutcome:
    recorded = read_version(root)
    status = workspace_status(root)
    if status.matches:
        if not status.cached:
            _commit_to_cache(root)
        return "present"
    if status.exists and not force and not _in_cache(root, directory_hash(root / DATA_DIR)):
        raise VersioningError(
            f"{root / DATA_DIR} holds changes that no data version records ({status.describe()});"
            " `grmodel data ensure --force` discards them, `grmodel data snapshot` records"
            " them as a new version"
        )
    pull_error = _pull(root)
    if pull_error is None:
        status = workspace_status(root)
        if not status.matches:
            raise VersioningError(f"dvc pull of {recorded.md5} left {root / DATA_DIR} different"
                                  f" from {DVC_FILE} ({status.describe()})")
        return "pulled"
    if recorded.generator is None:
        raise VersioningError(f"cannot obtain data version {recorded.md5}: dvc pull failed"
                              f" ({pull_error}) and {DVC_FILE} records no generator settings")
    log.info("dvc pull failed (%s); regenerating %s from the settings in %s",
             pull_error, recorded.md5, DVC_FILE)
    regenerate(recorded, root / DATA_DIR)
    _commit_to_cache(root)
    return "regenerated"


def regenerate(recorded: DataVersion, out_dir: str | Path) -> None:
    """Rebuild ``recorded`` from its generator settings into ``out_dir``; ``out_dir`` is
    replaced only when the result hashes to ``recorded.md5``."""
    generator = recorded.generator or {}
    if generator.get("name") != GENERATOR or not isinstance(generator.get("config"), dict):
        raise VersioningError(f"{DVC_FILE}: meta.generator must name {GENERATOR} and hold its"
                              f" config (found {sorted(generator)})")
    try:
        config = SynthConfig(**generator["config"])
    except TypeError as exc:
        raise VersioningError(f"{DVC_FILE}: meta.generator.config does not fit SynthConfig"
                              f" ({exc})") from None
    with atomic_directory(out_dir, mark=False) as tmp:
        generate_kuairec(tmp, config)
        got = directory_hash(tmp)
        if got != recorded.md5:
            raise VersioningError(
                f"regenerated data hashes to {got}, but {DVC_FILE} records {recorded.md5}"
                f"{_differing_files(tmp, generator.get('sha256') or {})}; the generator or"
                " its settings changed since the version was recorded"
            )


def export_version(repo_root: str | Path, version: str, out_dir: str | Path,
                   rev: str | None = None) -> Path:
    """Write exactly ``version`` into ``out_dir`` (replaced whole), leaving the workspace alone.

    Reads through the DVC Python API at ``rev`` (default: the newest commit recording the
    version), from the local cache or the remote; regenerates when neither has it.
    """
    root = Path(repo_root).resolve()
    rev = rev or version_rev(root, version)
    if rev is None:
        raise VersioningError(f"no git commit in {root} records data version {version} in {DVC_FILE}")
    recorded = read_version(root, rev)
    if recorded.md5 != version:
        raise VersioningError(f"{DVC_FILE} at {rev} records {recorded.md5}, not {version}")
    try:
        with atomic_directory(out_dir, mark=False) as tmp:
            _read_at_rev(root, rev, tmp)
            got = directory_hash(tmp)
            if got != version:
                raise VersioningError(f"DVC returned data for {version} at {rev} that hashes"
                                      f" to {got}")
        return Path(out_dir)
    except VersioningError as exc:
        if recorded.generator is None:
            raise
        log.info("%s; regenerating %s from the settings in %s at %s", exc, version, DVC_FILE, rev)
    regenerate(recorded, out_dir)
    return Path(out_dir)


# ---------------------------------------------------------------------------- recording


def snapshot(repo_root: str | Path, push: bool = True) -> str:
    """Record ``data/`` as a new version: ``dvc add``, the generator settings when the files
    are exactly what ``synth.json`` says the generator wrote, then ``dvc push``.

    Commit ``data.dvc`` with git afterwards; the return value is the new version.
    """
    root = Path(repo_root).resolve()
    data = root / DATA_DIR
    if not data.is_dir():
        raise VersioningError(f"{data}: not a directory (rule: snapshot records {DATA_DIR}/)")
    generator = generator_settings(data)
    with _dvc_repo(root, f"add {DATA_DIR}") as repo:
        repo.add([str(data)])
    _write_generator(root / DVC_FILE, generator)
    version = current_data_version(root)
    if push:
        with _dvc_repo(root, f"push (version {version} is added locally)") as repo:
            repo.push(targets=[str(root / DVC_FILE)])
    log.info("data version %s recorded%s", version, " and pushed" if push else "")
    return version


def generator_settings(data_dir: str | Path) -> dict[str, Any] | None:
    """``{"name", "config", "sha256"}`` from ``synth.json`` when every file in ``data_dir`` is
    the one the generator wrote (else None: edited data can be pulled, not regenerated)."""
    data = Path(data_dir)
    path = data / SYNTH_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        name, config, digests = record["generator"], record["config"], record["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise VersioningError(f"{path}: not a generator record (rule: JSON with generator,"
                              " config and sha256)") from None
    files = {str(p.relative_to(data)) for p in data.rglob("*") if p.is_file()}
    if files != {*digests, SYNTH_FILE} or _differing_files(data, digests):
        log.warning("%s no longer holds exactly what %s lists; no generator settings recorded",
                    data, path)
        return None
    return {"name": name, "config": config, "sha256": digests}


# ------------------------------------------------------------------------------ helpers


@contextlib.contextmanager
def _dvc_repo(root: Path, step: str) -> Iterator[Any]:
    """An open DVC repo; DVC's errors become one VersioningError naming the step."""
    try:
        with Repo(str(root)) as repo:
            repo.scm_context.quiet = True  # no "to track the changes with git" hints
            yield repo
    except DvcException as exc:
        raise VersioningError(f"{root}: dvc {step}: {exc}") from None


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise VersioningError(f"{root}: git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def _pull(root: Path) -> str | None:
    """``dvc pull --force data.dvc``; the error text when it fails, else None."""
    try:
        with _dvc_repo(root, "pull") as repo:
            repo.pull(targets=[str(root / DVC_FILE)], force=True)
    except VersioningError as exc:
        return str(exc)
    return None


def _commit_to_cache(root: Path) -> None:
    """``dvc commit`` a ``data/`` already verified to hash to the recorded version, so the
    cache holds it and ``dvc status`` is clean (``data.dvc`` keeps its content)."""
    with _dvc_repo(root, "commit") as repo:
        repo.commit(str(root / DVC_FILE), force=True)


def _in_cache(root: Path, version: str) -> bool:
    with _dvc_repo(root, "cache lookup") as repo:
        return bool(repo.cache.local.exists(version))


def _read_at_rev(root: Path, rev: str, out_dir: Path) -> None:
    fs = DVCFileSystem(repo=str(root), rev=rev)
    try:
        fs.get(f"{DATA_DIR}/", f"{out_dir}/", recursive=True)
    except Exception as exc:  # DVC raises several unrelated types for "not in cache or remote"
        raise VersioningError(f"DVC could not read {DATA_DIR}/ at {rev}: {exc}") from None
    finally:
        fs.close()  # the repository DVC opened at that revision


def _write_generator(dvc_file: Path, generator: dict[str, Any] | None) -> None:
    """Set (or drop) ``meta.generator`` in a .dvc file, keeping every other key; written
    the way DVC writes .dvc files, so DVC's own rewrites (``dvc commit``) leave it as is."""
    with modify_yaml(str(dvc_file)) as raw:
        meta = raw.get("meta") or {}
        meta.pop("generator", None)
        if generator is not None:
            meta["generator"] = generator
        raw.pop("meta", None)
        if meta:
            raw["meta"] = meta


def _differing_files(directory: Path, digests: dict[str, str]) -> str:
    """``" (files that differ from the recorded sha256: …)"``, or "" when all match."""
    bad = [name for name, digest in sorted(digests.items())
           if not (directory / name).is_file() or sha256_file(directory / name) != digest]
    return f" (files that differ from the recorded sha256: {', '.join(bad)})" if bad else ""
