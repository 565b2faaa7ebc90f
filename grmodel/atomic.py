"""Atomic outputs: a file or directory appears complete, or not at all.

Every artifact the project writes (checkpoints, vocabularies, processed datasets, reports,
figures, predictions) goes through these helpers, so a failed or killed run never leaves a
half-written file that a later stage could mistake for a result.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grmodel.outputs import (
    check_output,
    holds_lock,
    note_written,
    output_lock,
    sweep_temporaries,
    temporary_file,
    write_marker,
)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``.

    Under ``path``'s write lock (:func:`grmodel.outputs.output_lock`, which a command holds for
    its whole write) the temporaries a killed writer of ``path`` left are removed first. A file
    written into a marked grmodel output is recorded in its marker."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if holds_lock(path):
        sweep_temporaries(path)
    # Not mkstemp: its files are private (0600), and this one becomes the output.
    tmp = temporary_file(path, secrets.token_hex(4))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    note_written(path)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


@contextlib.contextmanager
def atomic_directory(out_dir: str | Path, *, mark: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``out_dir``; on success it replaces ``out_dir`` whole.

    On any failure the temporary directory is removed, so ``out_dir`` is either the complete
    new output, or whatever was there before. The output policy (grmodel.outputs) holds: a
    non-empty directory that grmodel did not write is never replaced, one process at a time
    writes ``out_dir``, and temporaries left by a killed writer are removed first. ``mark``
    adds grmodel's marker file; data versions (whose DVC hash it would change) are marked by
    their generator record instead.
    """
    out = Path(out_dir)
    check_output(out, overwrite=True)  # the command checked --overwrite and its inputs
    out.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out):
        for stale in out.parent.glob(f"{glob.escape(out.name)}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)  # a killed writer's: we hold the lock
        for stale in out.parent.glob(f".{glob.escape(out.name)}.tmp-*.lock"):
            stale.unlink(missing_ok=True)  # the lock files of its temporaries (written inside)
        # Not mkdtemp: its directories are private (0700); this one becomes the output.
        tmp = out.parent / f"{out.name}.tmp-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            yield tmp
            if mark:
                write_marker(tmp)
            check_output(out, overwrite=True)  # still ours to replace
            if out.exists():
                # A directory cannot be renamed over a non-empty one: move the old one aside.
                old = Path(tempfile.mkdtemp(prefix=f"{out.name}.old-", dir=out.parent))
                os.replace(out, old / out.name)
                try:
                    os.replace(tmp, out)
                except BaseException:
                    os.replace(old / out.name, out)
                    raise
                finally:
                    shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def through_json(value: Any) -> Any:
    """What ``value`` becomes once written as JSON and read back (tuples become lists), so a
    value in memory compares equal to its stored copy."""
    return json.loads(json.dumps(value))


def jsonable(value: Any) -> Any:
    """NaN and infinities become null, so the JSON written is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
