"""Which files an ingest reads from a raw KuaiRec directory, in either layout (schema.py):

* flat: the two matrices and the side files side by side (KuaiRec 2.0 as published);
* days: ``date=YYYY-MM-DD/`` partitions, each a day's interactions plus the side files as
  they stood that day. A forward split reads only its window's days; the side files (and the
  optional daily file) come from the newest day read, else the root; the oracle and the
  generator's record come from the newest day read.

Both engines use it; a root is a local ``Path`` (the pandas engine) or a ``storage.Location``
(the Spark engine, which also reads object storage).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grmodel.data.io import DataSpecError, RawDataError, read_header
from grmodel.data.kuairec.readers import raw_files
from grmodel.data.kuairec.schema import (
    BIG,
    DAILY_FILE,
    DAY_FILE,
    ITEM_FILE,
    ORACLE_FILE,
    SMALL,
    SYNTH_FILE,
    USER_FILE,
)
from grmodel.data.storage import Location, location
from grmodel.data.windows import (
    Window,
    epoch_day,
    list_partitions,
    resolve_window,
    window_partitions,
)


@dataclass(frozen=True)
class RawLayout:
    """The files one ingest reads. ``matrices`` maps each interaction file's name in the
    manifest (``big_matrix`` / ``small_matrix``, or ``date=YYYY-MM-DD``) to the file;
    ``days`` gives each a day (days since 1970-01-01) in the days layout, else is None."""

    root: Any  # Path | Location
    matrices: dict[str, Any]
    days: dict[str, int] | None
    side: Any  # the folder of user_features.csv, item_categories.csv (and the daily file)
    extras: Any  # the folder of oracle.csv and synth.json
    optional: list[str]  # optional files present: DAILY_FILE in side, ORACLE_FILE, SYNTH_FILE in extras
    window: Window | None  # the days layout's resolved window (split forward)

    def files(self) -> dict[str, Any]:
        """Every file read, by its name relative to the root (for the manifest's sources)."""
        named = {self.relative(f): f for f in self.matrices.values()}
        for name in (USER_FILE, ITEM_FILE, *(n for n in self.optional if n == DAILY_FILE)):
            named[self.relative(self.side / name)] = self.side / name
        for name in (n for n in self.optional if n in (ORACLE_FILE, SYNTH_FILE)):
            named[self.relative(self.extras / name)] = self.extras / name
        return named

    def relative(self, file: Any) -> str:
        base = str(self.root).rstrip("/") + "/"
        text = str(file)
        return text[len(base):] if text.startswith(base) else Path(text).name

    def side_file(self, name: str) -> Any:
        return (self.extras if name in (ORACLE_FILE, SYNTH_FILE) else self.side) / name


def raw_layout(raw: Any, split: str, as_of: str = "", window_days: int = 0) -> RawLayout:
    """The layout of ``raw`` (checked before any heavy work): its files' headers, and in the
    days layout the partitions ``split`` reads (``forward``: the window, resolved with the
    defaults of :func:`resolve_window`; otherwise every day)."""
    listing = raw if isinstance(raw, Location) else location(str(raw))
    if not listing.is_dir():
        raise RawDataError(f"{raw}: not a directory (rule: ingest reads a KuaiRec directory)")
    partitions = {} if (raw / BIG).is_file() else list_partitions(listing)
    if not partitions:
        optional, _ = raw_files(raw)
        return RawLayout(raw, {BIG.removesuffix(".csv"): raw / BIG,
                               SMALL.removesuffix(".csv"): raw / SMALL},
                         None, raw, raw, optional, None)
    if split == "authors":
        raise DataSpecError(f"{raw}: day partitions have no small matrix to test on (rule: split"
                            " forward, random or chronological for logs by day)")
    window = None
    if split == "forward":
        window = resolve_window(as_of, window_days, list(partitions))
        partitions = window_partitions(listing, window)
    days = {p.name: epoch_day(d) for d, p in partitions.items()}
    matrices = {p.name: raw / p.name / DAY_FILE for p in partitions.values()}
    for file in matrices.values():
        read_header(file)  # fail on a missing or empty file before any heavy work
    newest = raw / list(partitions.values())[-1].name
    side = newest if (newest / USER_FILE).is_file() else raw
    for name in (USER_FILE, ITEM_FILE):
        if not (side / name).is_file():
            raise RawDataError(f"{newest / name}: file not found (rule: the side files are in the"
                               " newest day read, or at the root of the log)")
        read_header(side / name)
    optional = [DAILY_FILE] if (side / DAILY_FILE).is_file() else []
    optional += [name for name in (ORACLE_FILE, SYNTH_FILE) if (newest / name).is_file()]
    return RawLayout(raw, matrices, days, side, newest, optional, window)
