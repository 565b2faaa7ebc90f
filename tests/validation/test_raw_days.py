"""Raw validation of logs dated after KuaiRec's window: the date bounds come from the data (or
the run's window), never from KuaiRec's 2020-07-05 .. 2020-09-05."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from grmodel.data.kuairec.schema import BIG, DAY_FILE, SMALL
from grmodel.data.kuairec.synth import SynthConfig, generate_kuairec
from grmodel.validation import RawBounds, validate_raw_kuairec

DAY_S = 86_400


def test_generated_days_after_kuairecs_window_pass(tiny_days: Path) -> None:
    report = validate_raw_kuairec(tiny_days)
    assert report.success, report.summary()
    assert (report.params["first_day"], report.params["last_day"]) == ("2020-09-06", "2020-09-10")
    checked = {c.check_id for c in report.checks if c.table == DAY_FILE and c.status == "passed"}
    assert "expect_column_values_to_be_between(days_off_partition)" in checked


def test_a_flat_directory_moved_past_kuairecs_last_day_passes(tmp_path: Path) -> None:
    """The repro of a fresh day of logs: generated KuaiRec files one day later
    (2020-07-06 .. 2020-09-06); KuaiRec's own window failed 4 checks on them."""
    raw = tmp_path / "raw"
    generate_kuairec(raw, SynthConfig.preset("tiny", first_day="2020-07-06",
                                             last_day="2020-09-06"))
    report = validate_raw_kuairec(raw)
    assert report.success, report.summary()
    assert report.params["last_day"] == "2020-09-06"
    # The run's window, given, bounds them: KuaiRec's last day excludes 2020-09-06 rows.
    kuairec = RawBounds(first_day="2020-07-05", last_day="2020-09-05")
    failed = validate_raw_kuairec(raw, kuairec).failed_ids()
    assert {(m, f"expect_column_values_to_be_between({c})") for m in (BIG, SMALL)
            for c in ("date", "timestamp")} == failed


def test_a_row_in_the_wrong_partition_fails(tiny_days: Path, tmp_path: Path) -> None:
    logs = Path(shutil.copytree(tiny_days, tmp_path / "logs"))
    path = logs / "date=2020-09-08" / DAY_FILE
    frame = pd.read_csv(path)
    frame.loc[3, "timestamp"] -= 2 * DAY_S  # a row of 2020-09-06 logged under 2020-09-08
    frame.to_csv(path, index=False)
    report = validate_raw_kuairec(logs)
    (failure,) = report.failures
    assert failure.check_id == "expect_column_values_to_be_between(days_off_partition)"
    assert failure.unexpected_count == 1
    assert np.isclose(failure.sample_rows[0]["timestamp"], frame.loc[3, "timestamp"])
