"""Day by day (grmodel/experiments/days.py, days_report.py): the report of a simulation from
recorded rows (no pipeline), the command's checks, and (pytest -m long) a 3-day tiny simulation
through kfp.local, which a champion carries across."""

from __future__ import annotations

import dataclasses
import json

import pytest

from grmodel.cli import main
from grmodel.experiments.days import ROWS_FILE, DayRow
from grmodel.experiments.days_report import days_table, write_days_report

FIRST = DayRow("2020-09-08", "e72cc3fd5e0566fc15a673cff5bd5517.dir", 3,
               {"train": 862, "valid": 431, "test": 431}, {"users": 19, "videos": 62},
               [], 14.03, None, "promoted", "1", drift="no reference", seconds=95.2)


def _rows(out) -> list[DayRow]:
    """The rows a simulation wrote to its days.json."""
    return [DayRow(**row) for row in json.loads((out / ROWS_FILE).read_text())]


def _days() -> list[DayRow]:
    shifted = dataclasses.replace(FIRST, as_of="2020-09-09", data_version="0a1b2c3d4e.dir",
                                  drifts=["label_shift"], challenger_mae=19.5, champion_mae=21.25,
                                  verdict="rejected", drift="drift",
                                  drifted=["test label", "test duration_s"],
                                  champion_decay=0.5146, decay_flagged=True)
    return [FIRST, shifted]


def test_the_table_has_one_row_per_day() -> None:
    table = days_table(_days()).splitlines()
    assert len(table) == 4
    assert table[2] == ("| 2020-09-08 | e72cc3fd | 3 | 862 / 431 / 431 | 19 / 62 | – |"
                        " no reference | – | 14.0300 | – | promoted | 1 |")
    assert table[3] == ("| 2020-09-09 | 0a1b2c3d | 3 | 862 / 431 / 431 | 19 / 62 | label_shift |"
                        " DRIFT: label, duration_s | 21.2500 | 19.5000 |"
                        " +51.5% (flagged) | rejected | 1 |")


def test_a_drift_cell_names_each_column_once_and_counts_the_rest() -> None:
    row = dataclasses.replace(FIRST, drift="drift", drifted=[
        f"{split} {column}" for split in ("train", "test") for column in "abcde"])
    assert days_table([row]).splitlines()[2].split(" | ")[6] == "DRIFT: a, b, c (+2 more)"


def test_the_report_is_written_from_the_recorded_rows(tmp_path) -> None:
    rows = _days()
    (tmp_path / ROWS_FILE).write_text(json.dumps([dataclasses.asdict(r) for r in rows]))
    assert _rows(tmp_path) == rows
    write_days_report(tmp_path, _rows(tmp_path))
    assert (tmp_path / "days.md").read_text() == days_table(rows) + "\n"
    assert (tmp_path / "days.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "days.html").read_text()
    assert page.count("<tr") == 3 and 'src="data:image/png;base64,' in page
    assert "<tr class=flagged><td>2020-09-09</td>" in page  # the drifted day stands out
    assert "<li>2020-09-09: test label; test duration_s</li>" in page
    assert "<tr><td>2020-09-08</td>" in page
    assert not list(tmp_path.glob("*.tmp*"))  # every file written whole


@pytest.mark.parametrize("args, says", [
    (["--days", "3", "--drift", "label_shift@4"], "DAY a simulated day, 1 .. 3"),
    (["--days", "3", "--drift", "outlier@2"], "KIND one of ['label_shift'"),
])  # (the argument ranges: tests/test_policy_corpus.py)
def test_a_bad_request_is_one_line_and_writes_nothing(tmp_path, capsys, args, says) -> None:
    out = tmp_path / "sim"
    assert main(["experiment", "days", "--out", str(out), *args]) == 1
    error = capsys.readouterr().err
    assert says in error and len(error.strip().splitlines()) == 1 and "Traceback" not in error
    assert not out.exists()


@pytest.mark.long
def test_three_days_run_as_of_each_day(tmp_path, pipeline_overrides, monkeypatch, capsys) -> None:
    """Three pipeline runs through kfp.local (tens of minutes on a shared machine), labels
    shifted from the third simulated day: every day trains on new data, the gate judges each
    challenger, the drift check reads the champion's reference from the second day on."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "sim"
    # A tiny world's 400 rows a day teach the tests' small GR nothing (a constant, which the gate
    # rejects): 3,000 rows a day and 6 epochs give a champion to carry across.
    assert main(["experiment", "days", "--out", str(out), "--preset", "tiny", "--days", "3",
                 "--rows-per-day", "3000", "--window-days", "2", "--drift", "label_shift@3",
                 "--param", "require_beats_baselines=[]", *pipeline_overrides,
                 "train.epochs=6"]) == 0
    rows = _rows(out)
    assert [r.as_of for r in rows] == ["2020-09-08", "2020-09-09", "2020-09-10"]
    assert len({r.data_version for r in rows}) == 3  # each day trains on new data
    assert all(r.partitions == 3 for r in rows) and rows[0].rows["train"] >= 3000
    assert [r.drifts for r in rows] == [[], [], ["label_shift"]]
    assert rows[0].drift == "no reference" and rows[0].champion_mae is None
    assert rows[0].verdict == "promoted" and rows[0].champion_after == "1"
    for r in rows[1:]:
        assert r.drift in ("no drift", "drift") and r.champion_mae is not None
    assert all(r.verdict in ("promoted", "rejected") for r in rows)
    assert rows[-1].champion_after is not None
    console = capsys.readouterr().out
    assert days_table(rows) in console and (out / "days.html").is_file()
