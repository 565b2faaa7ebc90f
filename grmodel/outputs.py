"""The output policy: which directories grmodel may write, replace or reuse.

Every command and stage that writes a directory follows the same rules:

- never delete or replace a directory grmodel did not write: a non-empty directory is replaced
  only when it carries grmodel's mark (:data:`MARKER`, or the generator record of synthetic raw
  data, whose DVC hash a marker file would change);
- an output never equals, contains or lies inside one of the command's inputs, nor is it the
  working directory (or above it);
- an existing grmodel output is replaced only when asked (``--overwrite``), or reused when it is
  the identical finished run (the command says so);
- one process at a time writes an output (:func:`output_lock`); a second one is refused.

:func:`grmodel.atomic.atomic_directory` applies the rules that need no inputs to every directory
it replaces; commands call :func:`check_output` first, with their inputs, before doing any work.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from grmodel import __version__

MARKER = ".grmodel-output.json"
# Synthetic raw data is marked by its generator record: a marker file would change its DVC hash.
DATA_MARKS = ("synth.json",)
# Records that grmodel outputs held before the marker existed (a model, a processed dataset, a
# stage, a run, a report, a main-job workdir): such a directory is grmodel's too.
LEGACY_RECORDS = ("checkpoint.json", "manifest.json", "stage.json", "run_record.json",
                  "validation.json", "report.json", "mlflow.db")
OVERWRITE_RULE = "an existing grmodel output is replaced only with --overwrite"


class OutputError(ValueError):
    """An output that grmodel refuses to write (names the path and the rule)."""


def is_grmodel_output(path: str | Path) -> bool:
    """Whether ``path`` is a directory that grmodel wrote (it carries grmodel's mark)."""
    path = Path(path)
    return any((path / name).is_file() for name in (MARKER, *DATA_MARKS, *LEGACY_RECORDS))


def write_marker(directory: str | Path, kind: str = "") -> None:
    """Mark ``directory`` as a grmodel output (it may later be replaced with --overwrite);
    ``kind`` names what it holds when a command must tell its own kind apart (a training state)."""
    record = {"written_by": "grmodel", "grmodel_version": __version__, "written_at": time.time()}
    if kind:
        record["kind"] = kind
    (Path(directory) / MARKER).write_text(json.dumps(record) + "\n", encoding="utf-8")


def marker_kind(directory: str | Path) -> str | None:
    """The ``kind`` in ``directory``'s marker ("" for an output of no particular kind), or None
    when it carries no readable marker."""
    try:
        record = json.loads((Path(directory) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("written_by") != "grmodel":
        return None
    return str(record.get("kind", ""))


def check_safe(out: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
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


def check_output(out: str | Path, *, inputs: Iterable[str | Path] = (), overwrite: bool = False,
                 identical: bool = False) -> bool:
    """Whether ``out`` may be written; raise :class:`OutputError` naming the rule when not.

    ``identical``: ``out`` holds the identical finished run, which the caller reuses. Returns
    True when an existing grmodel output will be replaced (or reused), False when ``out`` is new
    or empty.
    """
    path = check_safe(out, inputs)
    if not path.exists() and not path.is_symlink():
        return False
    if not path.is_dir() or path.is_symlink():
        raise OutputError(f"output {out}: exists and is not a directory (rule: grmodel never"
                          " replaces what it did not write)")
    if not any(path.iterdir()):
        return False
    if not is_grmodel_output(path):
        raise OutputError(f"output {out}: holds files grmodel did not write (rule: grmodel never"
                          " deletes or replaces what it did not write; choose a new directory)")
    if not (overwrite or identical):
        raise OutputError(f"output {out}: already holds a grmodel output (rule: {OVERWRITE_RULE})")
    return True


def check_output_file(out: str | Path, *, inputs: Iterable[str | Path] = (),
                      overwrite: bool = False) -> None:
    """The same policy for a single output file (predictions, a metrics JSON)."""
    path = check_safe(out, inputs)
    if path.is_dir():
        raise OutputError(f"output {out}: is a directory; expected a file path (rule: an output"
                          " file never replaces a directory)")
    if path.exists() and not overwrite:
        raise OutputError(f"output {out}: exists (rule: an existing output file is replaced only"
                          " with --overwrite)")


def claim_directory(out: str | Path, *, inputs: Iterable[str | Path] = (),
                    overwrite: bool = False, reuse: bool = False) -> Path:
    """Check, create and mark a directory that a command fills file by file (experiment runs,
    validation reports, pipeline roots). ``reuse``: an existing grmodel output of this kind is
    continued (its finished runs are reused), not replaced."""
    check_output(out, inputs=inputs, overwrite=overwrite, identical=reuse)
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    if not (path / MARKER).is_file():
        write_marker(path)
    return path


_HELD: dict[Path, int] = {}


@contextlib.contextmanager
def output_lock(out: str | Path) -> Iterator[None]:
    """Hold the write lock of ``out`` (a file beside it); a second writer is refused at once.

    Re-entrant within a process (a command locks its output, and the atomic write inside it
    takes the same lock).
    """
    path = Path(out).resolve()
    lock = path.parent / f".{path.name}.lock"
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
                              " writer per output; wait for it, or choose another directory)"
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
        yield
    finally:
        del _HELD[lock]
        # Unlinked while still locked, so no lock file is left beside the output.
        lock.unlink(missing_ok=True)
        os.close(fd)
