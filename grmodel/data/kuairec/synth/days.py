"""Consecutive days of logs from one generated world, with drift planted on chosen days.

``generate_days`` writes one ``date=YYYY-MM-DD/`` partition per day (schema.py's day layout):
the day's interactions (``interactions.csv``, the matrix columns), the side files as they
stood that day (the users and videos that had arrived), the day's oracle (``oracle.csv``: the
exact conditional median and mean of each (user, video) pair of the day, under that day's law)
and ``synth.json`` (the settings, the drifts in force, each file's sha256).

The world (users, videos, the planted law) is ``build_world``'s, as for the KuaiRec-shaped
matrices. A share ``start_share`` of the users and videos is there on the first day; each of
the others arrives on a day drawn uniformly from the later ones, so new ids keep appearing.
Each day's rows draw an arrived user by activity and an arrived video by popularity, at a
uniform time of the day (UTC+8, as KuaiRec); a share of them is logged twice (exact
duplicates). Each day is drawn from random streams of (seed, day), so a day's files do not
depend on how many days are written.

Drift, from a chosen day (0-based) to the last:

* ``label_shift``: every watch ratio times ``label_shift`` (``mu`` moves by its log);
* ``feature mix``: users whose ``mix_field`` is ``mix_level`` are ``mix_factor`` times as
  likely to be a day's user (the rows' mix of that field changes; labels follow the users);
* ``new category``: the highest tag id is held back until that day; from then on a share
  ``new_category_share`` of the videos that arrive carry it (a category no model has seen).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grmodel.atomic import atomic_directory, write_json_atomic
from grmodel.data.io import DataSpecError, sha256_file
from grmodel.data.kuairec.schema import (
    DAY_FILE,
    DAY_MS,
    ORACLE_FILE,
    SYNTH_FILE,
    UTC_PLUS_8_MS,
)
from grmodel.data.kuairec.synth.config import SynthConfig
from grmodel.data.kuairec.synth.files import write_matrix, write_oracle, write_side_files
from grmodel.data.kuairec.synth.matrices import labelled
from grmodel.data.kuairec.synth.world import World, build_world, random_streams
from grmodel.data.windows import epoch_day, parse_day, partition_name

log = logging.getLogger(__name__)

# The planted drifts by name, and the DaysConfig field holding the day each starts.
DRIFT_DAYS = {"label_shift": "label_shift_day", "feature_mix": "mix_day",
              "new_category": "new_category_day"}
# The days generator's name in each partition's synth.json.
DAYS_GENERATOR = "grmodel.data.kuairec.synth.generate_days"
# Random streams of the days (with the seed and the day): arrivals, rows, labels.
_ARRIVALS, _ROWS, _LABELS = 1, 2, 3


@dataclass
class DaysConfig:
    """How many days, from when, how busy, and the drift planted on which day."""

    days: int = 5
    first_day: str = "2020-09-06"  # the day after KuaiRec's last
    rows_per_day: int = 0  # 0: the world's big_rows / 20
    start_share: float = 0.8  # users and videos present on the first day
    label_shift_day: int | None = None
    label_shift: float = 1.5
    mix_day: int | None = None
    mix_field: str = "user_active_degree"
    mix_level: str = "high_active"
    mix_factor: float = 4.0
    new_category_day: int | None = None
    new_category_share: float = 0.5

    def validate(self) -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise DataSpecError(f"DaysConfig.{name}={getattr(self, name)!r}: out of range"
                                    f" (rule: {rule})")

        need(isinstance(self.days, int) and self.days >= 1, "days", "days >= 1")
        parse_day(self.first_day, "DaysConfig.first_day")
        need(self.rows_per_day >= 0, "rows_per_day",
             "rows_per_day >= 0 (0: the world's big_rows / 20)")
        need(0 < self.start_share <= 1, "start_share", "0 < start_share <= 1")
        for name in ("label_shift_day", "mix_day", "new_category_day"):
            day = getattr(self, name)
            need(day is None or 0 <= day < self.days, name, f"{name} is a day index in 0 .."
                 " days - 1 (or null: no such drift)")
        need(self.label_shift > 0, "label_shift", "label_shift > 0 and finite")
        need(self.mix_factor > 0, "mix_factor", "mix_factor > 0 and finite")
        need(0 < self.new_category_share <= 1, "new_category_share",
             "0 < new_category_share <= 1")
        for name in ("label_shift", "mix_factor"):  # NaN fails the comparisons; infinity not
            need(math.isfinite(getattr(self, name)), name, f"{name} > 0 and finite")

    def dates(self) -> list[dt.date]:
        first = dt.date.fromisoformat(self.first_day)
        return [first + dt.timedelta(days=k) for k in range(self.days)]

    def drifts(self, day: int) -> list[str]:
        """The drifts in force on day ``day``."""
        planted = (("label_shift", self.label_shift_day), ("feature_mix", self.mix_day),
                   ("new_category", self.new_category_day))
        return [name for name, start in planted if start is not None and day >= start]


def drift_days(items: list[str], days: range | None = None,
               meaning: str = "a 0-based day index") -> dict[str, int]:
    """DaysConfig fields from ``KIND@DAY`` items (``label_shift@3``: labels shift from the
    fourth day), DAY as given; one line naming a bad item (``days``: the DAYs allowed,
    ``meaning``: what a DAY is, for that line)."""
    fields = {}
    for item in items:
        kind, _, day = item.partition("@")
        if kind not in DRIFT_DAYS or not day.isdigit() or (days is not None
                                                           and int(day) not in days):
            raise DataSpecError(f"--drift {item!r}: expected KIND@DAY (rule: KIND one of"
                                f" {list(DRIFT_DAYS)}, DAY {meaning})")
        fields[DRIFT_DAYS[kind]] = int(day)
    return fields


def generate_days(out_dir: str | Path, config: SynthConfig, days: DaysConfig) -> dict[str, Any]:
    """Write ``days.days`` day partitions of one world into ``out_dir`` (atomically, the whole
    directory) and return a summary: per day its rows, users, videos, the ids new that day and
    the drifts in force."""
    config.validate()
    days.validate()
    if config.side_dir:
        raise DataSpecError("generate_days: side_dir is not supported (rule: the days write the"
                            " side files of the users and videos that have arrived; generated"
                            " side files only)")
    world = _days_world(config, days)
    if days.mix_day is not None and days.mix_field not in world.user_features:
        raise DataSpecError(f"DaysConfig.mix_field {days.mix_field!r}: not a user field (rule:"
                            f" one of {sorted(world.user_features)})")
    user_arrival, item_arrival = _arrivals(config, days)
    rows_per_day = days.rows_per_day or max(config.big_rows // 20, 1)
    summary: dict[str, Any] = {"config": dataclasses.asdict(config),
                               "days": dataclasses.asdict(days), "partitions": {}}
    with atomic_directory(out_dir, mark=False) as tmp:
        for k, day in enumerate(days.dates()):
            part = tmp / partition_name(day)
            part.mkdir()
            drifts = days.drifts(k)
            log_shift = math.log(days.label_shift) if "label_shift" in drifts else 0.0
            rows = _day_rows(config, days, world, user_arrival, item_arrival, k, day,
                             rows_per_day, log_shift)
            write_matrix(part / DAY_FILE, rows, world, config.chunk_rows)
            write_side_files(part, config, world, users=user_arrival <= k,
                             items=item_arrival <= k)
            write_oracle(part / ORACLE_FILE, config, world, rows, log_shift=log_shift)
            entry = {
                "day": k, "date": day.isoformat(), "rows": int(len(rows["user"])),
                "users": int((user_arrival <= k).sum()), "videos": int((item_arrival <= k).sum()),
                "new_users": int((user_arrival == k).sum()) if k else 0,
                "new_videos": int((item_arrival == k).sum()) if k else 0,
                "drifts": drifts,
                "sha256": {p.name: sha256_file(p) for p in sorted(part.iterdir())},
            }
            write_json_atomic(part / SYNTH_FILE, {
                "generator": DAYS_GENERATOR, "config": summary["config"],
                "days": summary["days"], **entry})
            summary["partitions"][day.isoformat()] = {k: v for k, v in entry.items()
                                                      if k != "sha256"}
    log.info("generated %d days in %s", days.days, out_dir)
    return summary


def _days_world(config: SynthConfig, days: DaysConfig) -> World:
    """``build_world``'s world; with a new category planted, its tag (the highest id) is held
    back from every video, and given to a share of the videos that arrive from that day."""
    world = build_world(config, random_streams(config.seed))
    if days.new_category_day is None:
        return world
    new_tag = config.n_tags - 1
    tags = world.item_tags.copy()
    tags[tags == new_tag] = -1
    tags = np.take_along_axis(tags, np.argsort(tags < 0, axis=1, kind="stable"), axis=1)
    tags[tags[:, 0] < 0, 0] = 0  # a video whose only tag was the held-back one
    _, item_arrival = _arrivals(config, days)
    rng = np.random.default_rng([config.seed, _ARRIVALS, 1])
    carries = (item_arrival >= days.new_category_day) & (
        rng.random(config.n_items) < days.new_category_share)
    tags[carries, 0] = new_tag
    return dataclasses.replace(world, item_tags=tags)


def _arrivals(config: SynthConfig, days: DaysConfig) -> tuple[np.ndarray, np.ndarray]:
    """The day (0-based) each user and each video arrives."""
    rng = np.random.default_rng([config.seed, _ARRIVALS])

    def draw(n: int) -> np.ndarray:
        later = rng.integers(1, max(days.days, 2), n)
        return np.where(rng.random(n) < days.start_share, 0, later if days.days > 1 else 0)

    return draw(config.n_users), draw(config.n_items)


def _day_rows(config: SynthConfig, days: DaysConfig, world: World, user_arrival: np.ndarray,
              item_arrival: np.ndarray, k: int, day: dt.date, n: int, log_shift: float
              ) -> dict[str, np.ndarray]:
    """Day ``k``'s rows in time order, some logged twice."""
    rng = np.random.default_rng([config.seed, _ROWS, k])
    weights = world.user_rows * (user_arrival <= k)
    if "feature_mix" in days.drifts(k):
        assert world.user_features is not None
        level = world.user_features[days.mix_field].astype(str).to_numpy() == days.mix_level
        weights = weights * np.where(level, days.mix_factor, 1.0)
    user = rng.choice(config.n_users, n, p=weights / weights.sum())
    popularity = world.popularity * (item_arrival <= k)
    item = rng.choice(config.n_items, n, p=popularity / popularity.sum())
    start = epoch_day(day) * DAY_MS - UTC_PLUS_8_MS  # local midnight, in Unix ms
    ts = np.sort(start + rng.integers(0, DAY_MS, n))
    rows = labelled(config, world, user, item, ts, np.random.default_rng([config.seed, _LABELS, k]),
                    log_shift)
    repeats = np.ones(n, dtype=np.int64)
    repeats[rng.choice(n, round(n * config.duplicate_share), replace=False)] = 2
    return {name: np.repeat(values, repeats) for name, values in rows.items()}

