"""Day by day (grmodel/experiments/days.py): the table of a simulation, and (pytest -m long) a
3-day tiny simulation through kfp.local, which a champion carries across."""

from __future__ import annotations

import pytest

from grmodel.experiments.days import DayRow, days_table


def test_the_table_has_one_row_per_day() -> None:
    row = DayRow("2020-09-09", "e72cc3fd5e0566fc15a673cff5bd5517.dir", 3,
                 {"train": 862, "valid": 431, "test": 431}, {"users": 19, "videos": 62},
                 ["label_shift"], 14.03, None, "promoted", "1")
    table = days_table([row, DayRow(**{**row.__dict__, "as_of": "2020-09-10", "verdict":
                                       "rejected", "champion_mae": 13.5})]).splitlines()
    assert len(table) == 4
    assert table[2] == ("| 2020-09-09 | e72cc3fd | 3 | 862 / 431 / 431 | 19 / 62 | label_shift |"
                        " 14.0300 | – | promoted | 1 |")
    assert "| 13.5000 | rejected |" in table[3]


@pytest.mark.long
def test_three_days_run_as_of_each_day(tmp_path, pipeline_overrides, monkeypatch) -> None:
    """Three pipeline runs through kfp.local (tens of minutes on a shared machine)."""
    from grmodel.data.kuairec.synth import DaysConfig, SynthConfig
    from grmodel.experiments.days import load_rows, simulate_days
    from grmodel.pipeline.params import PipelineParams

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    params = PipelineParams().with_values({"overrides": pipeline_overrides,
                                           "require_beats_baselines": []})
    rows = simulate_days(tmp_path, SynthConfig.preset("tiny"),
                         DaysConfig(days=5, label_shift_day=4), 2, params)
    assert [r.as_of for r in rows] == ["2020-09-08", "2020-09-09", "2020-09-10"]
    assert len({r.data_version for r in rows}) == 3  # each day trains on new data
    assert all(r.partitions == 3 for r in rows)
    assert rows[-1].drifts == ["label_shift"] and rows[0].drifts == []
    assert load_rows(tmp_path) == rows
