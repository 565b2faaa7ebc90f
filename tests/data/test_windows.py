"""Time windows and day partitions (grmodel/data/windows.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from grmodel.data import splits
from grmodel.data.io import DataSpecError, RawDataError
from grmodel.data.storage import location
from grmodel.data.windows import (
    Window,
    as_of_from_schedule,
    epoch_day,
    list_partitions,
    partition_hash,
    window_partitions,
)

D = dt.date


def test_a_window_trains_before_its_last_day_validates_on_it_and_tests_on_as_of() -> None:
    window = Window.of("2020-09-10", 3)
    assert window.train_days == (D(2020, 9, 7), D(2020, 9, 8))
    assert window.valid_day == D(2020, 9, 9)
    assert window.dates() == [D(2020, 9, d) for d in (7, 8, 9, 10)]
    days = np.array([epoch_day(D(2020, 9, d)) for d in range(5, 12)] + [np.nan])
    assert window.codes(days).tolist() == [splits.DROPPED, splits.DROPPED, splits.TRAIN,
                                           splits.TRAIN, splits.VALID, splits.TEST,
                                           splits.DROPPED, splits.DROPPED]
    assert Window.from_dict(window.to_dict()) == window
    assert window.to_dict()["valid_dates"] == ["2020-09-09", "2020-09-09"]


@pytest.mark.parametrize("as_of, days", [("2020-9-10", 3), ("2020-02-30", 3), ("2020-09-10", 1)])
def test_bad_windows_are_refused_in_one_line(as_of: str, days: int) -> None:
    with pytest.raises(DataSpecError, match="as_of|window_days"):
        Window.of(as_of, days)


def test_a_scheduled_run_is_as_of_the_last_complete_day() -> None:
    assert as_of_from_schedule("2020-09-11T03:00:00Z") == D(2020, 9, 10)
    assert as_of_from_schedule("2020-09-11T01:00:00+08:00") == D(2020, 9, 9)  # 17:00 UTC the 10th
    now = dt.datetime(2021, 1, 1, 12, tzinfo=dt.UTC)
    # kfp.local and older backends pass the placeholder on unresolved: it stands for now.
    assert as_of_from_schedule("{{$.pipeline_job_schedule_time_utc}}", now) == D(2020, 12, 31)
    assert as_of_from_schedule("", now) == D(2020, 12, 31)
    with pytest.raises(DataSpecError, match="ISO 8601"):
        as_of_from_schedule("yesterday")


def test_partitions_are_listed_resolved_and_hashed(tmp_path: Path) -> None:
    for day in ("2020-09-08", "2020-09-09", "2020-09-10"):
        (tmp_path / f"date={day}").mkdir()
        (tmp_path / f"date={day}" / "interactions.csv").write_text(f"rows of {day}\n")
    (tmp_path / "notes").mkdir()  # other folders are not partitions
    root = location(str(tmp_path))
    assert list(list_partitions(root)) == [D(2020, 9, 8), D(2020, 9, 9), D(2020, 9, 10)]
    picked = window_partitions(root, Window.of("2020-09-10", 2))
    assert [p.name for p in picked.values()] == ["date=2020-09-08", "date=2020-09-09",
                                                 "date=2020-09-10"]
    first = partition_hash(picked[D(2020, 9, 8)])
    assert list(first["files"]) == ["interactions.csv"] and len(first["sha256"]) == 64
    assert first != partition_hash(picked[D(2020, 9, 9)])
    with pytest.raises(RawDataError, match=r"no partition for 2020-09-07 .*holds 2020-09-08 .."
                                           r" 2020-09-10"):
        window_partitions(root, Window.of("2020-09-10", 3))
    (tmp_path / "date=2020-13-01").mkdir()
    with pytest.raises(RawDataError, match="not a day partition"):
        list_partitions(root)
