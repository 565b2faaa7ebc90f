from __future__ import annotations

from pathlib import Path

import pytest

from grmodel.atomic import atomic_directory, atomic_file, write_json_atomic, write_text_atomic
from grmodel.outputs import MARKER


def test_atomic_directory_replaces_on_success_and_keeps_the_old_on_failure(tmp_path: Path
                                                                          ) -> None:
    out = tmp_path / "out"
    with atomic_directory(out) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (out / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError), atomic_directory(out) as tmp:
        (tmp / "b.txt").write_text("half")
        raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a.txt"]
    with atomic_directory(out) as tmp:
        (tmp / "c.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "c.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_file_keeps_the_old_content_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "report.md"
    write_text_atomic(path, "first")
    with pytest.raises(RuntimeError), atomic_file(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "first"
    assert [p.name for p in path.parent.iterdir()] == ["report.md"]
    write_json_atomic(path, {"a": 1})
    assert path.read_text() == '{\n  "a": 1\n}\n'
