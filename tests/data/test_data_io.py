from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from grmodel.data.io import RawDataError, read_csv


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
