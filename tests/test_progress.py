"""Training progress: a bar on a terminal only; plain lines where the output is a file."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
from pathlib import Path

from tqdm import tqdm

from grmodel import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_display_follows_where_the_output_goes(monkeypatch):
    monkeypatch.delenv(progress.EVENTS_ENV, raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(progress.epoch_progress("gr", 10, 0, 3), progress.EpochLines)
    assert progress.epoch_progress("gr", 10, 0, 3, bar=False) is None
    monkeypatch.setattr(sys, "stderr", _Terminal())
    bar = progress.epoch_progress("gr", 10, 0, 3)
    assert isinstance(bar, tqdm)
    bar.close()
    monkeypatch.setenv(progress.EVENTS_ENV, "1")  # a runner reads the output: events win
    assert isinstance(progress.epoch_progress("gr", 10, 0, 3, bar=False), progress.EpochEvents)


def test_plain_lines_say_where_the_epoch_is(caplog):
    lines = progress.EpochLines("gr", total=10, epoch=1, epochs=3, done=2, interval=0.0)
    with caplog.at_level(logging.INFO, logger=progress.__name__):
        lines.set_postfix(loss="1.2345", sps="800")
        lines.update(3)
    [message] = [r.getMessage() for r in caplog.records]
    assert message.startswith("gr epoch 2/3: 5/10 batches (50%), loss 1.2345, 800 samples/s,"
                              " ETA "), message
    quiet = progress.EpochLines("gr", total=10, epoch=0, epochs=3)  # the default interval
    with caplog.at_level(logging.INFO, logger=progress.__name__):
        quiet.update(1)
        quiet.close()
    assert len(caplog.records) == 1  # nothing before the interval has passed


def test_train_into_a_file_writes_lines_not_bars(planted_dataset, gr_config, tmp_path):
    """``grmodel train ... > train.log 2>&1``: no carriage return, and one line per epoch."""
    config = gr_config(planted_dataset, "train.progress=true", "train.epochs=2",
                       "train.patience=2")
    log = tmp_path / "train.log"
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "grmodel.cli", "train", "--data", str(planted_dataset),
             "--out", str(tmp_path / "gr"), "--config-json", config.to_json()],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, timeout=300)
    raw = log.read_bytes()  # as bytes: reading text would turn every "\r" into "\n"
    text = raw.decode()
    assert done.returncode == 0, text[-3000:]
    assert b"\r" not in raw, text[:3000]
    assert [int(e) for e in re.findall(r"gr epoch (\d+): loss", text)] == [0, 1], text[-3000:]
    assert Path(tmp_path / "gr").is_dir()
