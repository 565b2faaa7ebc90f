"""The KuaiRec raw-file readers: tag lists parsed without eval, exact duplicates over whole rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from grmodel.data.io import RawDataError
from grmodel.data.kuairec.readers import exact_duplicates, read_item_tags
from grmodel.data.kuairec.schema import MATRIX_COLUMNS


def test_item_tags_are_parsed_without_eval(tmp_path: Path) -> None:
    path = tmp_path / "item_categories.csv"
    path.write_text('video_id,feat\n0,"[27, 9]"\n1,[8]\n2,[]\n3,"[1,2, 3,4]"\n')
    videos, tags = read_item_tags(path)
    np.testing.assert_array_equal(videos, [0, 1, 2, 3])
    np.testing.assert_array_equal(tags, [[27, 9, -1, -1], [8, -1, -1, -1], [-1] * 4, [1, 2, 3, 4]])
    path.write_text('video_id,feat\n0,"[27, 9]"\n1,"__import__(\'os\')"\n')
    with pytest.raises(RawDataError, match=r"item_categories.csv: column 'feat'.*list literal"):
        read_item_tags(path)


def test_exact_duplicates_compares_whole_rows() -> None:
    matrix = {name: np.zeros(5) for name in MATRIX_COLUMNS}
    matrix["timestamp"] = np.array([1.0, 1.0, np.nan, np.nan, 2.0])
    matrix["watch_ratio"] = np.array([0.5, 0.5, 0.1, 0.1, 0.5])
    matrix["user_id"] = np.array([1, 1, 1, 1, 2], dtype=float)
    duplicate = exact_duplicates(matrix)
    np.testing.assert_array_equal(duplicate, [False, True, False, True, False])
