"""Time windows over day-partitioned logs: which days a run trains, selects and is tested on,
and the partitions (``date=YYYY-MM-DD/`` folders) that hold those days.

A run *as of* day D with a window of W days trains on the W days before D and is tested on D
(a forward split). The window's last day, D-1, is the validation split (model selection and
early stopping on the newest data before the test day); train is D-W .. D-2. So W >= 2.

A scheduled run that names no day takes the last complete day before its scheduled time
(KFP's ``dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER``, an ISO time in UTC): the UTC date
of the scheduled time minus one day, whose logs have landed when the run starts.

Partitions are immutable once written (logs that arrive by day); a partition's content hash
(:func:`partition_hash`) is what a run records of it, so a later change to a day that was
trained on is caught when the run is reproduced.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from grmodel.data import splits
from grmodel.data.io import DataSpecError, RawDataError
from grmodel.data.storage import Location

log = logging.getLogger(__name__)

PARTITION_KEY = "date"
_PARTITION = re.compile(rf"^{PARTITION_KEY}=(\d{{4}}-\d{{2}}-\d{{2}})$")
_EPOCH = dt.date(1970, 1, 1)
MIN_WINDOW_DAYS = 2  # at least one training day before the validation day


def parse_day(text: str, what: str = "as_of") -> dt.date:
    """An ISO day ``YYYY-MM-DD``; one line naming ``what`` otherwise."""
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            raise ValueError("not YYYY-MM-DD")
        return dt.date.fromisoformat(text.strip())
    except ValueError as exc:
        raise DataSpecError(f"{what} {text!r}: not a day ({exc}) (rule: YYYY-MM-DD)") from None


def epoch_day(day: dt.date) -> int:
    """Days since 1970-01-01."""
    return (day - _EPOCH).days


def day_of(epoch_days: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=int(epoch_days))


def as_of_from_schedule(scheduled_time: str, now: dt.datetime | None = None) -> dt.date:
    """The day a scheduled run is as of: the UTC date of ``scheduled_time`` (ISO 8601, e.g.
    ``2020-09-11T03:00:00Z``) minus one day. A value the orchestrator left unresolved (the
    literal placeholder ``{{$.pipeline_job_schedule_time_utc}}``, which kfp.local and older
    KFP backends pass on as it is) or an empty one stands for now."""
    text = (scheduled_time or "").strip()
    when = None
    if text and not text.startswith("{{"):
        try:
            when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise DataSpecError(f"scheduled time {text!r}: not an ISO 8601 time (rule: KFP's"
                                " pipeline_job_schedule_time_utc, e.g. 2020-09-11T03:00:00Z)"
                                ) from None
    if when is None:
        when = now or dt.datetime.now(dt.UTC)
        log.info("no scheduled time (%r): as_of is the day before now, %s", text,
                 when.date() - dt.timedelta(days=1))
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.date() - dt.timedelta(days=1)


@dataclass(frozen=True)
class Window:
    """The days of a time-aware run: train ``first_day .. as_of - 2``, valid ``as_of - 1``,
    test ``as_of``."""

    as_of: dt.date
    days: int  # window_days: the days before as_of that the run learns from

    def __post_init__(self) -> None:
        if not isinstance(self.days, int) or self.days < MIN_WINDOW_DAYS:
            raise DataSpecError(f"window_days={self.days!r}: need an integer >= {MIN_WINDOW_DAYS}"
                                " (rule: train on the window's days before its last, select on"
                                " its last day, test on the as_of day)")

    @classmethod
    def of(cls, as_of: str | dt.date, window_days: int) -> Window:
        day = as_of if isinstance(as_of, dt.date) else parse_day(as_of)
        return cls(day, window_days)

    @property
    def first_day(self) -> dt.date:
        return self.as_of - dt.timedelta(days=self.days)

    @property
    def valid_day(self) -> dt.date:
        return self.as_of - dt.timedelta(days=1)

    @property
    def train_days(self) -> tuple[dt.date, dt.date]:
        """(first, last) training day, inclusive."""
        return self.first_day, self.as_of - dt.timedelta(days=2)

    def dates(self) -> list[dt.date]:
        """Every day the run reads: the window, then the as_of day."""
        return [self.first_day + dt.timedelta(days=k) for k in range(self.days + 1)]

    def codes(self, epoch_days: np.ndarray) -> np.ndarray:
        """The split code of each row from its day (days since 1970-01-01; a negative or
        non-finite value is a row without a day): TRAIN, VALID, TEST, or DROPPED outside."""
        values = np.asarray(epoch_days, dtype=np.float64)
        codes = np.full(values.shape, splits.DROPPED, dtype=np.int8)
        first, valid, test = (epoch_day(d) for d in (self.first_day, self.valid_day, self.as_of))
        codes[(values >= first) & (values < valid)] = splits.TRAIN
        codes[values == valid] = splits.VALID
        codes[values == test] = splits.TEST
        return codes

    def protocol(self) -> str:
        first, last = self.train_days
        return (f"forward: train {first} .. {last}, valid {self.valid_day} (the window's last"
                f" day), test {self.as_of} (as_of); window_days {self.days}")

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``window`` entry (what later stages and the drift stage read)."""
        first, last = self.train_days
        return {"as_of": self.as_of.isoformat(), "window_days": self.days,
                "train_dates": [first.isoformat(), last.isoformat()],
                "valid_dates": [self.valid_day.isoformat()] * 2,
                "test_date": self.as_of.isoformat()}

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> Window:
        return cls.of(entry["as_of"], int(entry["window_days"]))


def check_window(as_of: str, window_days: int, what: str) -> None:
    """Refuse, in one line naming ``what``, a forward split's ``as_of`` that is no day or a
    ``window_days`` below the minimum (0 stands for every day before as_of)."""
    try:
        day = parse_day(as_of, f"{what}.as_of") if as_of else dt.date(1970, 1, 1)
        if window_days:
            Window(day, window_days)
    except DataSpecError as exc:
        raise DataSpecError(f"{what}: {exc}") from None


def resolve_window(as_of: str, window_days: int, days: list[dt.date]) -> Window:
    """The forward split's window over data holding ``days``: ``as_of`` "" is the newest day,
    ``window_days`` 0 every day before ``as_of``."""
    if not days:
        raise RawDataError("no rows with a day (rule: a forward split places rows by their day)")
    day = parse_day(as_of) if as_of else max(days)
    return Window(day, window_days or (day - min(days)).days)


def window_entry(window: Window | None, rows_by_day: dict[float, int]) -> dict[str, Any] | None:
    """The manifest's ``window`` (forward split): ``Window.to_dict`` plus the rows of each
    day (days since 1970-01-01) that went into a split."""
    if window is None:
        return None
    return {**window.to_dict(), "rows_by_day": {day_of(d).isoformat(): int(rows_by_day[d])
                                                for d in sorted(rows_by_day)}}


def rows_by_day(days: np.ndarray, codes: np.ndarray) -> dict[float, int]:
    """Rows per day (days since 1970-01-01) of the rows in a split (code not DROPPED)."""
    found, counts = np.unique(days[codes != splits.DROPPED], return_counts=True)
    return dict(zip(found.tolist(), counts.tolist(), strict=True))


# ------------------------------------------------------------------------------ partitions


def partition_name(day: dt.date) -> str:
    """``date=YYYY-MM-DD``: the folder of one day's logs."""
    return f"{PARTITION_KEY}={day.isoformat()}"


def list_partitions(root: Location) -> dict[dt.date, Location]:
    """The day partitions directly under ``root``, by day (sorted); a folder that looks like
    one but names no real day is an error naming it."""
    found = root.fs.get_file_info(pafs.FileSelector(root.path, recursive=False))
    days: dict[dt.date, Location] = {}
    for info in found:
        name = info.path.rstrip("/").rsplit("/", 1)[-1]
        if info.type != pafs.FileType.Directory or not name.startswith(f"{PARTITION_KEY}="):
            continue
        match = _PARTITION.match(name)
        try:
            day = dt.date.fromisoformat(match.group(1)) if match else None
        except ValueError:
            day = None
        if day is None:
            raise RawDataError(f"{root.child(name)}: not a day partition (rule: folders named"
                               f" {PARTITION_KEY}=YYYY-MM-DD)")
        days[day] = root.child(name)
    return dict(sorted(days.items()))


def is_partitioned(root: Location) -> bool:
    """Whether ``root`` is a directory of day partitions."""
    return root.is_dir() and bool(list_partitions(root))


def window_partitions(root: Location, window: Window) -> dict[dt.date, Location]:
    """The partitions of every day ``window`` reads; one line naming the missing days (and
    the days the log holds) when any is absent."""
    present = list_partitions(root)
    missing = [d for d in window.dates() if d not in present]
    if missing:
        held = f"{min(present)} .. {max(present)}" if present else "none"
        shown = ", ".join(d.isoformat() for d in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise RawDataError(f"{root}: no partition for {shown} (rule: a run as of {window.as_of}"
                           f" with window_days {window.days} reads {window.first_day} .."
                           f" {window.as_of}; the log holds {held})")
    return {d: present[d] for d in window.dates()}


def partition_hash(partition: Location) -> dict[str, Any]:
    """The content of one partition: each file's sha256 and, over them, its hash (sha256 of
    the sorted ``name sha256`` lines), which names the partition's content exactly."""
    files = {f.path[len(partition.path.rstrip("/")) + 1:]: f.sha256() for f in partition.files("")}
    listing = "".join(f"{name} {digest}\n" for name, digest in sorted(files.items()))
    return {"sha256": hashlib.sha256(listing.encode()).hexdigest(), "files": files}
