"""The output policy: which paths grmodel may write, replace, reuse or delete.

Every command and stage that writes a directory or a file follows the same rules:

- a directory is grmodel's only when grmodel's own mark says so: its marker file
  (:data:`MARKER`, which lists the files grmodel wrote there) or, for synthetic raw data whose
  DVC hash a marker would change, the generator record that lists every file it wrote (in
  every partition of synthetic logs by day, which hold nothing else). A file
  with a familiar name (``manifest.json``, ``stage.json``) proves nothing: anyone can name a
  file so;
- grmodel never deletes or replaces a file it did not write: a directory is replaced only when
  every file in it is one its mark vouches for, a single output file only when it carries
  grmodel's mark (:func:`file_is_grmodels`);
- an output never equals, contains or lies inside one of the command's inputs, nor is it the
  working directory (or above it);
- an existing grmodel output is replaced only when asked (``--overwrite``), or reused when it is
  the identical finished run (the command says so);
- one process at a time writes an output (:func:`output_lock`, held for the whole write); a
  second one is refused; the temporaries a killed writer left are removed by the next writer.

:func:`grmodel.atomic.atomic_directory` applies the rules that need no inputs to every directory
it replaces; commands call :func:`check_output` (or :func:`check_output_file`) first, with their
inputs, before doing any work.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from grmodel import __version__

MARKER = ".grmodel-output.json"
# Synthetic raw data is marked by its generator record (a marker file would change its DVC
# hash): grmodel's when it names a grmodel generator and lists every file beside it.
DATA_RECORD = "synth.json"
GENERATOR_PREFIX = "grmodel."
# What grmodel's outputs held before the marker existed. Not proof of ownership: only what
# the refusal of an unmarked directory holding one of them says (an older version's output).
OLD_RECORDS = ("checkpoint.json", "manifest.json", "stage.json", "run_record.json",
               "validation.json", "report.json", "mlflow.db")
# The key under which a single output file carries grmodel's mark (Parquet key-value metadata,
# a JSON object's key).
FILE_MARK = "grmodel_output"
OVERWRITE_RULE = "an existing grmodel output is replaced only with --overwrite"
FOREIGN_RULE = ("grmodel never deletes or replaces what it did not write; choose a new path,"
                " or move the files away yourself")
# Temporaries of grmodel's atomic writes and locks: a killed writer's, swept by the next one.
_TEMPORARY = re.compile(r"^(\..+\.[0-9a-f]{8}\.tmp|\..+\.lock|.+\.tmp-[0-9a-f]{8}|.+\.old-.+)$")
# A partition folder of data by key (Hive style): ``date=2020-09-06``.
_PARTITION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=[^/]+$")


class OutputError(ValueError):
    """An output that grmodel refuses to write (names the path and the rule)."""


# ----------------------------------------------------------------------------- marks


def mark_record(**extra: Any) -> dict[str, Any]:
    """The record a directory's marker carries."""
    return {"written_by": "grmodel", "grmodel_version": __version__, "written_at": time.time(),
            **extra}


def file_mark(command: str) -> dict[str, Any]:
    """The mark a single output file carries (under :data:`FILE_MARK`): no time in it, so the
    same run writes the same bytes."""
    return {"written_by": "grmodel", "grmodel_version": __version__, "command": command}


def _marker(directory: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((directory / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("written_by") != "grmodel":
        return None
    return record


def _data_record(directory: Path) -> dict[str, Any] | None:
    """The generator record of synthetic raw data: a grmodel generator, its files' digests."""
    try:
        record = json.loads((directory / DATA_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (isinstance(record, dict) and str(record.get("generator", "")).startswith(GENERATOR_PREFIX)
            and isinstance(record.get("sha256"), dict)):
        return record
    return None


def _partitioned_data(directory: Path) -> bool:
    """Synthetic logs by day: nothing but ``key=value`` partition folders (``date=...``), each
    claimed by its generator record (a marker at the root would change the logs' DVC hash)."""
    try:
        entries = [e for e in directory.iterdir() if not _TEMPORARY.match(e.name)]
    except OSError:
        return False
    return bool(entries) and all(
        _PARTITION.match(e.name) and e.is_dir() and not e.is_symlink()
        and _data_record(e) is not None for e in entries)


def is_grmodel_output(path: str | Path) -> bool:
    """Whether ``path`` is a directory that grmodel's own mark claims."""
    path = Path(path)
    return path.is_dir() and (_marker(path) is not None or _data_record(path) is not None
                              or _partitioned_data(path))


def write_marker(directory: str | Path, kind: str = "", files: Iterable[str] | None = None
                 ) -> None:
    """Mark ``directory`` as a grmodel output that lists ``files`` (default: every file in it
    now) as grmodel's; ``kind`` names what it holds when a command must tell its own kind apart
    (a training state)."""
    directory = Path(directory)
    listed = sorted(set(files) if files is not None else _files(directory))
    record = mark_record(files=[name for name in listed if name != MARKER])
    if kind:
        record["kind"] = kind
    (directory / MARKER).write_text(json.dumps(record) + "\n", encoding="utf-8")


def marker_kind(directory: str | Path) -> str | None:
    """The ``kind`` in ``directory``'s marker ("" for an output of no particular kind), or None
    when it carries no readable marker."""
    record = _marker(Path(directory))
    return None if record is None else str(record.get("kind", ""))


def note_written(path: str | Path) -> None:
    """Record a file grmodel just wrote into a marked output (e.g. ``training.json`` beside a
    published model), so a later ``--overwrite`` knows it as grmodel's."""
    path = Path(path)
    for directory in list(path.parents)[:4]:
        record = _marker(directory)
        if record is None:
            continue
        files = record.get("files")
        name = path.relative_to(directory).as_posix()
        if isinstance(files, list) and name not in files:
            record["files"] = sorted([*files, name])
            (directory / MARKER).write_text(json.dumps(record) + "\n", encoding="utf-8")
        return


def _files(directory: Path) -> list[str]:
    """Every file (and link) under ``directory``, as relative POSIX paths."""
    found = []
    for root, dirs, names in os.walk(directory):
        base = Path(root)
        found += [(base / n).relative_to(directory).as_posix() for n in names]
        found += [(base / d).relative_to(directory).as_posix() for d in dirs
                  if (base / d).is_symlink()]
    return found


def foreign_files(directory: str | Path) -> list[str]:
    """Files under ``directory`` that no grmodel mark vouches for (nested marked outputs vouch
    for their own files; temporaries of grmodel's atomic writes are its own)."""
    directory = Path(directory)
    record = _marker(directory)
    data = _data_record(directory)
    if record is not None and not isinstance(record.get("files"), list):
        return []  # a marker written before markers listed files: the whole directory
    known = set(record["files"]) if record is not None else set()
    if data is not None:
        known |= {*data["sha256"], DATA_RECORD}
    foreign = []
    for root, dirs, names in os.walk(directory):
        base = Path(root)
        for sub in list(dirs):
            full, rel = base / sub, (base / sub).relative_to(directory).as_posix()
            if full.is_symlink() or _TEMPORARY.match(sub):
                dirs.remove(sub)
                if not _TEMPORARY.match(sub) and rel not in known:
                    foreign.append(rel)
            elif is_grmodel_output(full):  # a nested output vouches for its own files
                dirs.remove(sub)
                foreign += [f"{rel}/{name}" for name in foreign_files(full)
                            if f"{rel}/{name}" not in known]
        for name in names:
            rel = (base / name).relative_to(directory).as_posix()
            if (name == MARKER and base == directory) or rel in known or _TEMPORARY.match(name):
                continue
            foreign.append(rel)
    return sorted(foreign)


def _listing(names: list[str], most: int = 3) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


# --------------------------------------------------------------------------- checks


def check_safe(out: str | Path, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Refuse an output that is the working directory (or above it) or overlaps an input;
    the resolved output path."""
    path = Path(out).resolve()
    here = Path.cwd().resolve()
    if path == here or path in here.parents:
        raise OutputError(f"output {out}: is the working directory or above it (rule: an output is"
                          " a directory of its own, e.g. --out runs/x)")
    for item in inputs:
        if item is None or str(item) == "":
            continue
        source = Path(item).resolve()
        if path == source or path in source.parents or source in path.parents:
            how = "is" if path == source else "contains" if path in source.parents else "is inside"
            raise OutputError(f"output {out}: {how} the input {item} (rule: an output never equals,"
                              " contains or lies inside an input)")
    return path


def check_output(out: str | Path, *, inputs: Iterable[str | Path | None] = (),
                 overwrite: bool = False, identical: bool = False, replaces: bool = True) -> bool:
    """Whether ``out`` may be written; raise :class:`OutputError` naming the rule when not.

    ``identical``: ``out`` holds the identical finished run, which the caller reuses.
    ``replaces``: an existing output is deleted as a whole (then every file in it must be one
    grmodel's mark vouches for); False for a directory a command fills file by file. Returns
    True when an existing grmodel output will be replaced (or reused), False when ``out`` is new
    or empty.
    """
    path = check_safe(out, inputs)
    if not path.exists() and not path.is_symlink():
        return False
    if not path.is_dir() or path.is_symlink():
        raise OutputError(f"output {out}: exists and is not a directory (rule: {FOREIGN_RULE})")
    if not any(path.iterdir()):
        return False
    if not is_grmodel_output(path):
        old = [name for name in OLD_RECORDS if (path / name).is_file()]
        if old:
            raise OutputError(
                f"output {out}: holds {_listing(old)} but no grmodel marker ({MARKER}): an output"
                " of a grmodel version before markers, or files someone else named so (rule:"
                f" {FOREIGN_RULE}; --overwrite does not apply)")
        raise OutputError(f"output {out}: holds files grmodel did not write (rule: {FOREIGN_RULE})")
    if identical:
        return True
    foreign = foreign_files(path) if replaces else []
    if foreign:
        raise OutputError(f"output {out}: holds files grmodel did not write: {_listing(foreign)}"
                          f" (rule: {FOREIGN_RULE})")
    if not overwrite:
        raise OutputError(f"output {out}: already holds a grmodel output (rule: {OVERWRITE_RULE})")
    return True


def file_is_grmodels(path: str | Path) -> bool:
    """Whether a single file carries grmodel's mark: Parquet key-value metadata or a JSON
    object's key :data:`FILE_MARK` naming grmodel as its writer."""
    path = Path(path)
    record: Any = None
    try:
        if path.suffix == ".parquet":
            # lazy: pyarrow is needed only to read a Parquet file's mark
            import pyarrow.parquet as pq

            metadata = pq.read_schema(path).metadata or {}
            record = json.loads(metadata.get(FILE_MARK.encode(), b"null"))
        else:
            with path.open("rb") as handle:
                record = json.loads(handle.read(64 << 20)).get(FILE_MARK)
    except Exception:  # unreadable, not JSON, not Parquet: not a file grmodel marked
        return False
    return isinstance(record, dict) and record.get("written_by") == "grmodel"


def check_output_file(out: str | Path, *, inputs: Iterable[str | Path | None] = (),
                      overwrite: bool = False,
                      is_ours: Callable[[Path], bool] = file_is_grmodels) -> bool:
    """The same policy for a single output file (predictions, a metrics JSON, a compiled
    pipeline): an existing file is replaced only with ``overwrite`` and only when ``is_ours``
    says grmodel wrote it. Whether an existing file will be replaced."""
    path = check_safe(out, inputs)
    if path.is_dir():
        raise OutputError(f"output {out}: is a directory; expected a file path (rule: an output"
                          " file never replaces a directory)")
    if not path.exists() and not path.is_symlink():
        return False
    if path.is_symlink() or not path.is_file() or not is_ours(path):
        raise OutputError(f"output {out}: exists and grmodel did not write it (rule:"
                          f" {FOREIGN_RULE})")
    if not overwrite:
        raise OutputError(f"output {out}: exists (rule: an existing output file is replaced only"
                          " with --overwrite)")
    return True


def claim_directory(out: str | Path, *, inputs: Iterable[str | Path | None] = (),
                    overwrite: bool = False, reuse: bool = False) -> Path:
    """Check, create and mark a directory that a command fills file by file (experiment runs,
    validation reports, pipeline roots). ``reuse``: an existing grmodel output of this kind is
    continued (its finished runs are reused), not replaced."""
    check_output(out, inputs=inputs, overwrite=overwrite, identical=reuse, replaces=False)
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    if _marker(path) is None:
        write_marker(path, files=[])
    return path


# ---------------------------------------------------------------------------- locks


_HELD: dict[Path, int] = {}


def _lock_path(out: str | Path) -> Path:
    path = Path(out).resolve()
    return path.parent / f".{path.name}.lock"


def holds_lock(out: str | Path) -> bool:
    """Whether this process holds the write lock of ``out``."""
    return _lock_path(out) in _HELD


@contextlib.contextmanager
def output_lock(out: str | Path) -> Iterator[None]:
    """Hold the write lock of ``out`` (a file beside it); a second writer is refused at once.

    Re-entrant within a process (a command locks its output, and the atomic write inside it
    takes the same lock). While it is held, temporaries that a killed writer of ``out`` left
    beside it are removed (:func:`sweep_temporaries`).
    """
    check_safe(out)  # never a lock beside the working directory or above it
    lock = _lock_path(out)
    if lock in _HELD:
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(f"output {out}: another grmodel process is writing it (rule: one"
                              " writer per output; wait for it, or choose another path)"
                              ) from None
        # The holder unlinks the file on release: a lock taken on an unlinked file is void.
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    _HELD[lock] = fd
    try:
        sweep_temporaries(out)
        yield
    finally:
        del _HELD[lock]
        # Unlinked while still locked, so no lock file is left beside the output.
        lock.unlink(missing_ok=True)
        os.close(fd)


def temporary_file(path: str | Path, token: str) -> Path:
    """The hidden temporary beside ``path`` that an atomic write of it fills first."""
    path = Path(path)
    return path.with_name(f".{path.name}.{token}.tmp")


def sweep_temporaries(out: str | Path) -> None:
    """Remove what a killed writer of ``out`` left beside it: the hidden temporary files of an
    atomic file write (``.NAME.<hex>.tmp``). Only under ``out``'s lock: no live writer's."""
    path = Path(out)
    if not path.parent.is_dir():
        return
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.[0-9a-f]{{8}}\.tmp$")
    for stale in path.parent.iterdir():
        if pattern.match(stale.name) and stale.is_file() and not stale.is_symlink():
            stale.unlink(missing_ok=True)
