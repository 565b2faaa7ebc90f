from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from grmodel.data.io import RawDataError, atomic_directory, read_csv


def test_atomic_directory_replaces_on_success_and_keeps_the_old_on_failure(tmp_path: Path
                                                                          ) -> None:
    out = tmp_path / "out"
    with atomic_directory(out) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (out / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError), atomic_directory(out) as tmp:
        (tmp / "b.txt").write_text("half")
        raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    with atomic_directory(out) as tmp:
        (tmp / "c.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["c.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_read_csv_types_and_rules(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id,score,name\n1,0.5,a\n2.0,,\"b, c\"\n,1e3,d\n")
    table = read_csv(path, {"id": "int", "score": "float", "name": "str"})
    np.testing.assert_array_equal(table.column("id").to_numpy(zero_copy_only=False),
                                  [1, 2, np.nan])
    assert table.column("name").to_pylist() == ["a", "b, c", "d"]
    with pytest.raises(RawDataError, match=r"t.csv: missing column\(s\) \['age'\]"):
        read_csv(path, {"id": "int", "age": "int"})
    assert read_csv(path, {"id": "int", "age": "int"}, optional=("age",)).num_columns == 1
    path.write_text("id,score\n1,x\n")
    with pytest.raises(RawDataError, match=r"t.csv: column 'score'.*rule: values of the"):
        read_csv(path, {"id": "int", "score": "float"})
    path.write_text("id,score\n1.25,3\n")
    with pytest.raises(RawDataError, match=r"column 'id'.*1.25.*rule: integer"):
        read_csv(path, {"id": "int", "score": "float"})
