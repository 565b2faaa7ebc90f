"""What a person sees while the pipeline runs locally: one line per stage as it starts and as it
ends (its duration and key result), a progress bar with an ETA while a model trains (plain
periodic lines when the output is not a terminal), and nothing else. kfp.local's own output
(every step's executor input, its logs, third-party chatter) goes to the run's log file, and
to the terminal as well with ``-v``.

kfp.local prints each step's output to ``sys.stdout`` and logs ``Executing task 'x'`` and
``Task 'x' finished with status S`` there. :class:`RunConsole` stands in for ``sys.stdout`` and
``sys.stderr`` during the run: it keeps every line in the log and turns those lines, the
training progress events (:mod:`grmodel.progress`) and each stage's ``stage.json`` into the view.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from grmodel.progress import PLAIN_INTERVAL_SECONDS, duration, parse_event
from grmodel.redact import redact

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r"Executing task '([^']+)'")
_END = re.compile(r"Task '([^']+)' finished with status (\w+)")
# The last line of a step's traceback: "grmodel.validation.ValidationFailed: raw suite: ..."
_ERROR = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Failed|Failure|Collapsed|Diverged)):"
                    r" (.+)$")
NAME_WIDTH = 18


class RunConsole(io.TextIOBase):
    """A text stream for kfp.local's output: every line to ``log``, the view to ``terminal``.

    ``run_root`` is the pipeline root; the run's directory is the one under it that is not in
    ``existing`` (kfp.local creates it when the run starts). ``tty`` (default: whether the
    terminal is one) draws progress bars; otherwise a progress line every ``every`` seconds.
    """

    def __init__(self, log: TextIO, terminal: TextIO, run_root: Path, existing: set[Path], *,
                 verbose: bool = False, tty: bool | None = None,
                 every: float = PLAIN_INTERVAL_SECONDS) -> None:
        super().__init__()
        self.log, self.terminal, self.verbose = log, terminal, verbose
        self.root, self.existing = run_root, existing
        self.tty = terminal.isatty() if tty is None else tty
        self.every = every
        self.failures: list[str] = []
        # (task, the exception's qualified name as its traceback printed it, or "")
        self.causes: list[tuple[str, str]] = []
        self._buffer = ""
        self._lock = threading.RLock()
        self._started: dict[str, list[float]] = {}
        self._reported: set[Path] = set()
        self._bars: dict[str, Any] = {}  # model -> tqdm bar (terminal) or progress state (plain)
        self._error: str | None = None
        self._error_class = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            *lines, self._buffer = (self._buffer + text).split("\n")
            for line in lines:
                self._line(line)
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.terminal.flush()

    def say(self, text: str) -> None:
        """A line of the view (kept in the log too)."""
        text = redact(text)
        with self._lock:
            self.log.write(text + "\n")
            if self._bars and self.tty:
                tqdm.write(text, file=self.terminal)
            else:
                self.terminal.write(text + "\n")
            self.terminal.flush()

    def finish(self) -> None:
        with self._lock:
            if self._buffer:
                self._line(self._buffer)
                self._buffer = ""
            for model in list(self._bars):
                self._close_bar(model)
            self.flush()

    # ------------------------------------------------------------------------------ lines

    def _line(self, raw: str) -> None:
        # Every line a step prints (kfp.local's dump of its inputs included) may hold a
        # credentialed URL: redacted before it reaches the log or the terminal.
        raw = redact(raw)
        line = _ANSI.sub("", raw).rstrip("\r")
        event = parse_event(line)
        self.log.write(line + "\n")
        if self.verbose:
            self.terminal.write(raw + "\n")
            return
        if event is not None:
            self._progress(event)
        elif m := _START.search(line):
            self._start(m.group(1))
        elif m := _END.search(line):
            self._end(m.group(1), m.group(2))
        elif m := _ERROR.match(line):
            self._error = f"{m.group(1).rsplit('.', 1)[-1]}: {m.group(3)}"
            self._error_class = m.group(1)

    def _start(self, task: str) -> None:
        self._started.setdefault(task, []).append(time.monotonic())
        self.say(f"{_clock()}  ▸ {task}")

    def _end(self, task: str, status: str) -> None:
        began = self._started.get(task) or [time.monotonic()]
        seconds = time.monotonic() - began.pop(0)
        record = self._record(task)
        model = _trained_model(record)
        if model in self._bars:
            self._close_bar(model)
        if status == "SUCCESS":
            result = _described(record)
            self.say(f"{_clock()}  ✓ {task:<{NAME_WIDTH}} {duration(seconds):>7}  {result}".rstrip())
        else:
            cause = self._error or "see the log"
            self.failures.append(f"{task}: {cause}")
            self.causes.append((task, self._error_class if self._error else ""))
            self.say(f"{_clock()}  ✗ {task:<{NAME_WIDTH}} {duration(seconds):>7}  failed: {cause}")
        self._error = None
        self._error_class = ""

    def _record(self, task: str) -> dict[str, Any] | None:
        """The newest stage record (or gate decision) of ``task`` not yet reported."""
        run = self._run_dir()
        if run is None:
            return None
        found = [p for p in (*run.glob(f"{task}/*/stage.json"), *run.glob(f"*/{task}/*/stage.json"),
                             *run.glob(f"{task}/*/decision.json")) if p not in self._reported]
        if not found:
            return None
        path = max(found, key=lambda p: p.stat().st_mtime)
        self._reported.add(path)
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return record if "stage" in record else {"stage": "register", "decision": record}

    def _run_dir(self) -> Path | None:
        new = sorted(p for p in self.root.glob("*") if p.is_dir() and p not in self.existing)
        return new[-1] if new else None

    # --------------------------------------------------------------------------- progress

    def _progress(self, event: dict[str, Any]) -> None:
        model = str(event.get("model", "model"))
        try:
            total = int(event["epochs"]) * int(event["batches"])
            done = int(event["epoch"]) * int(event["batches"]) + int(event["batch"])
        except (KeyError, TypeError, ValueError):
            return
        label = f"{model} epoch {int(event['epoch']) + 1}/{event['epochs']}"
        if self.tty:
            bar = self._bars.get(model)
            if bar is None:
                bar = tqdm(total=total, desc=label, unit="batch", file=self.terminal, leave=False,
                           position=len(self._bars), dynamic_ncols=True, mininterval=0,
                           miniters=1)  # events come every few seconds: draw each
                self._bars[model] = bar
            bar.set_description(label, refresh=False)
            if "loss" in event:
                bar.set_postfix(loss=event["loss"], refresh=False)
            bar.update(max(done - bar.n, 0))
            return
        now = time.monotonic()
        state = self._bars.setdefault(model, {"t0": now, "done0": done, "shown": now})
        if now - state["shown"] < self.every:
            return
        state["shown"] = now
        rate = (done - state["done0"]) / max(now - state["t0"], 1e-9)
        eta = f", ETA {duration((total - done) / rate)}" if rate > 0 else ""
        loss = f", loss {event['loss']}" if "loss" in event else ""
        self.say(f"{_clock()}    {label}: {100 * done / max(total, 1):.0f}%{loss}{eta}")

    def _close_bar(self, model: str) -> None:
        bar = self._bars.pop(model)
        if self.tty:
            bar.close()


def describe(record: dict[str, Any]) -> str:
    """A stage's key result in a few words, from its ``stage.json`` (or the gate's decision)."""
    stage, metrics = record["stage"], record.get("metrics", {})
    if stage == "register":
        decision = record["decision"]
        text = f"version {decision.get('challenger_version')}: {decision.get('verdict')}"
        decay = decision.get("champion_decay") or {}
        if decay.get("decay") is not None:
            text += (f"; champion v{decay['version']} decay {decay['decay']:+.1%}"
                     + (f" FLAGGED (> {decay['max_decay']:.0%})" if decay.get("flagged") else ""))
        return text
    if stage == "fetch_data":
        data = record["params"]["data"]
        return f"data {data['data_version'][:12]} ({data['source']}, {metrics['raw_bytes'] / 1e6:.1f} MB)"
    if stage == "ingest":
        return ", ".join(f"{metrics[f'{s}_rows']:,.0f} {s}" for s in ("train", "valid", "test")
                         if f"{s}_rows" in metrics) + " rows"
    if stage == "check_drift":
        return _drift(record["params"]["drift"], metrics)
    if stage == "build_vocab":
        return f"{metrics['vocab_size']:.0f} tokens, decode length {metrics['max_decode_len']:.0f}"
    if stage.startswith("train_"):
        seeds = "; ".join(_best(record, prefix) for prefix in record["histories"])
        return f"{stage.removeprefix('train_')}: {seeds}"
    if stage == "evaluate":
        rows = [k[len("test."):-len(".mae")] for k in metrics if k.endswith(".mae")]
        return "test MAE " + ", ".join(f"{row} {metrics[f'test.{row}.mae']:.4g}" for row in rows
                                       if "median" not in row)
    text = _checks(metrics)
    if stage == "encode_labels":
        text = f"mean length {metrics['mean_length']:.2f}, {text}"
    return text


def _described(record: dict[str, Any] | None) -> str:
    """:func:`describe`, or nothing for a record it cannot read: the view never stops a run."""
    try:
        return describe(record) if record else ""
    except (KeyError, TypeError, ValueError, AttributeError):
        return ""


def _checks(metrics: dict[str, float]) -> str:
    if "checks_passed" not in metrics:
        return ""
    counted = {k[len("checks_"):]: int(v) for k, v in metrics.items() if k.startswith("checks_")}
    total = sum(v for k, v in counted.items() if k != "skipped")
    text = f"{counted['passed']}/{total} checks passed"
    return text + (f", {counted['warning']} warnings" if counted.get("warning") else "")


def _drift(drift: dict[str, Any], metrics: dict[str, float]) -> str:
    """``no reference (...)``, ``no drift vs champion version 3 of NAME, 130/130 checks
    passed`` or ``DRIFT (warn) vs ...: test label, duration_s``."""
    reference = drift["reference"]
    if not metrics.get("drift_reference"):
        return f"no reference ({reference.get('none', 'none found')})"
    against = reference.get("description", "the reference")
    if metrics.get("drift_detected"):
        where = "; ".join(f"{table.removesuffix('.parquet')} {', '.join(columns)}"
                          for table, columns in drift["drifted"].items())
        return f"DRIFT ({drift['policy']}) vs {against}: {where}"
    return f"no drift vs {against}, {_checks(metrics)}"


def _best(record: dict[str, Any], prefix: str) -> str:
    """``seed2024 best epoch 2, valid MAE 6.59``: the history row the selection kept."""
    mae = record["metrics"].get(f"{prefix}best_valid_mae")
    xauc = record["metrics"].get(f"{prefix}best_valid_xauc")
    best = [h for h in record["histories"][prefix]
            if h.get("valid_mae") == mae and h.get("valid_xauc") == xauc]
    epoch = f"best epoch {best[0]['epoch']}, " if best else ""
    seed = prefix.rstrip(".")
    return f"{seed} {epoch}valid MAE {mae:.4g}" if mae is not None else seed


def _trained_model(record: dict[str, Any] | None) -> str | None:
    if record and str(record.get("stage", "")).startswith("train_"):
        return record["stage"].removeprefix("train_")
    return None


def _clock() -> str:
    return time.strftime("%H:%M:%S")
