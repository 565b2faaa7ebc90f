"""The local run's console on its own: training progress events drawn as periodic lines or a
terminal bar, kfp.local's task lines turned into stage lines, and everything kept in the log.
(The console of a whole local run is checked in tests/pipeline/test_local_run.py.)"""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from grmodel import progress
from grmodel.pipeline.console import RunConsole, describe


def _events(monkeypatch, model="gr", epochs=2, batches=5) -> list[str]:
    """What the trainer prints in a runner's subprocess: one event per batch (interval 0)."""
    monkeypatch.setenv(progress.EVENTS_ENV, "1")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for epoch in range(epochs):
            bar = progress.EpochEvents(model, batches, epoch, epochs, interval=0.0)
            for _ in range(batches):
                bar.update(1)
                bar.set_postfix(loss="1.5")
            bar.close()
    return out.getvalue().splitlines()


def _console(tmp_path, **kw) -> tuple[RunConsole, io.StringIO, io.StringIO]:
    log, terminal = io.StringIO(), io.StringIO()
    return RunConsole(log, terminal, tmp_path, set(), **kw), log, terminal


def test_events_round_trip_and_ignore_other_lines(monkeypatch):
    lines = _events(monkeypatch)
    events = [progress.parse_event("    " + line) for line in lines]  # kfp.local indents them
    assert events[-1] == {"model": "gr", "epoch": 1, "epochs": 2, "batch": 5, "batches": 5, "loss": "1.5"}
    assert progress.parse_event("grmodel-progress {not json") is None
    assert progress.parse_event("epoch 1: loss 2.0") is None


def test_plain_output_gets_a_periodic_line_with_eta(tmp_path, monkeypatch):
    console, log, terminal = _console(tmp_path, tty=False, every=0.0)
    console.write("07:00:00.000 - INFO - Executing task \x1b[96m'train-gr'\x1b[0m\n")
    for line in _events(monkeypatch):
        console.write("    " + line + "\n")
    console.write("07:00:09.000 - INFO - Task 'train-gr' finished with status \x1b[92mFAILURE\x1b[0m\n")
    console.finish()
    shown = terminal.getvalue().splitlines()
    assert "▸ train-gr" in shown[0]
    assert any("gr epoch 2/2: 100%" in line for line in shown)
    assert any("ETA" in line for line in shown)
    assert "✗ train-gr" in shown[-1] and "failed" in shown[-1]
    assert console.failures and console.failures[0].startswith("train-gr")
    assert "\x1b[" not in log.getvalue() and "grmodel-progress" in log.getvalue()


def test_a_terminal_gets_a_bar(tmp_path, monkeypatch):
    console, _, terminal = _console(tmp_path, tty=True)
    for line in _events(monkeypatch, epochs=3, batches=4)[:6]:
        console.write(line + "\n")
    console.finish()
    text = terminal.getvalue()
    assert "gr epoch 2/3" in text and "5/12" in text and "<" in text  # tqdm's elapsed<remaining


def test_verbose_shows_everything(tmp_path):
    console, log, terminal = _console(tmp_path, verbose=True)
    console.write("[KFP Executor] Got executor_input:\n{\n")
    console.finish()
    assert terminal.getvalue() == log.getvalue() == "[KFP Executor] Got executor_input:\n{\n"


@pytest.mark.parametrize(("record", "expected"), [
    ({"stage": "ingest", "metrics": {"train_rows": 7200.0, "valid_rows": 800.0, "test_rows": 1990.0}},
     "7,200 train, 800 valid, 1,990 test rows"),
    ({"stage": "validate_raw", "metrics": {"checks_passed": 101.0, "checks_failed": 0.0,
                                           "checks_warning": 2.0, "checks_skipped": 1.0}},
     "101/103 checks passed, 2 warnings"),
    ({"stage": "train_gr", "metrics": {"seed7.best_valid_mae": 6.5, "seed7.best_valid_xauc": 0.7},
      "histories": {"seed7.": [{"epoch": 0, "valid_mae": 7.0, "valid_xauc": 0.6},
                               {"epoch": 1, "valid_mae": 6.5, "valid_xauc": 0.7}]}},
     "gr: seed7 best epoch 1, valid MAE 6.5"),
])
def test_key_results(record, expected):
    assert describe(json.loads(json.dumps(record))) == expected


@pytest.mark.parametrize("verbose", [False, True])
def test_credentials_never_reach_the_log_or_the_terminal(tmp_path, verbose):
    """kfp.local dumps each step's inputs (a tracking URI with its password among them) and a
    step logs its own warnings: every line is redacted before it is kept or shown."""
    console, log, terminal = _console(tmp_path, tty=False, verbose=verbose)
    uri = "http://alice:SEKRET@127.0.0.1:9"
    console.write("07:00:00.000 - INFO - Executing task 'fetch-data'\n")
    console.write(f'    "mlflow_tracking_uri": "{uri}",\n')
    console.write(f"    [KFP Executor] WARNING: MLflow {uri} is unreachable from this stage\n")
    console.write(f"    grmodel.pipeline.stages.StageError: {uri}?token=abc: refused\n")
    console.write("07:00:01.000 - INFO - Task 'fetch-data' finished with status FAILURE\n")
    console.say(f"a line of the view naming {uri}")
    console.finish()
    for text in (log.getvalue(), terminal.getvalue(), "; ".join(console.failures)):
        assert "SEKRET" not in text and "token=abc" not in text, text
    assert "http://***@127.0.0.1:9" in log.getvalue()


def test_a_collapsed_step_names_the_collapse(tmp_path):
    console, log, terminal = _console(tmp_path, tty=False)
    console.write("07:00:00.000 - INFO - Executing task 'train-baseline'\n")
    console.write("    grmodel.collapse.ModelCollapsed: cread: the trained model collapsed on the"
                  " validation split: no better than the train median\n")
    console.write("07:00:01.000 - INFO - Task 'train-baseline' finished with status FAILURE\n")
    console.finish()
    assert "failed: ModelCollapsed: cread: the trained model collapsed" in terminal.getvalue()
