"""The generated tables written as KuaiRec's CSV files: the matrices, the side files and
``oracle.csv``."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv

from grmodel.data.kuairec.schema import DAY_MS, ITEM_FILE, USER_FILE, UTC_PLUS_8_MS
from grmodel.data.kuairec.synth.config import SynthConfig
from grmodel.data.kuairec.synth.law import oracle_ratio, pair_params
from grmodel.data.kuairec.synth.world import World


def _time_strings(ts_ms: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    """'YYYY-MM-DD hh:mm:ss.fff' in UTC+8, built digit by digit (strftime is ~10x slower)."""
    local = ts_ms + UTC_PLUS_8_MS
    day, rem = np.divmod(local, DAY_MS)
    first = int(day.min())
    epoch = dt.date(1970, 1, 1)
    day_text = np.array(
        [list((epoch + dt.timedelta(days=d)).isoformat().encode())
         for d in range(first, int(day.max()) + 1)], dtype=np.uint8)
    n = len(ts_ms)
    buf = np.empty((n, 23), dtype=np.uint8)
    buf[:, :10] = day_text[day - first]
    buf[:, 10], buf[:, 13], buf[:, 16], buf[:, 19] = ord(" "), ord(":"), ord(":"), ord(".")
    digits = [(11, 36_000_000, 10), (12, 3_600_000, 10), (14, 600_000, 6), (15, 60_000, 10),
              (17, 10_000, 6), (18, 1_000, 10), (20, 100, 10), (21, 10, 10), (22, 1, 10)]
    for pos, div, mod in digits:
        buf[:, pos] = ord("0") + (rem // div) % mod
    offsets = np.arange(n + 1, dtype=np.int64) * 23
    bitmap = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buf), bitmap)


def _dates(ts_ms: np.ndarray) -> np.ndarray:
    """YYYYMMDD integers of the UTC+8 day."""
    day = (ts_ms + UTC_PLUS_8_MS) // DAY_MS
    first = int(day.min())
    epoch = dt.date(1970, 1, 1)
    table = np.array([int((epoch + dt.timedelta(days=d)).strftime("%Y%m%d"))
                      for d in range(first, int(day.max()) + 1)], dtype=np.int64)
    return table[day - first]


def csv_writer(path: Path, schema: pa.Schema) -> Any:
    """Unquoted like the real matrices (no value holds a comma); nulls as empty fields."""
    options = pcsv.WriteOptions(quoting_style="none", quoting_header="none")
    return pcsv.CSVWriter(path, schema, write_options=options)


def write_matrix(path: Path, rows: dict[str, np.ndarray], world: World, chunk_rows: int
                 ) -> None:
    n = len(rows["user"])
    schema = pa.schema([("user_id", pa.int64()), ("video_id", pa.int64()),
                        ("play_duration", pa.int64()), ("video_duration", pa.int64()),
                        ("time", pa.large_string()), ("date", pa.int64()),
                        ("timestamp", pa.float64()), ("watch_ratio", pa.float64())])
    with csv_writer(path, schema) as writer:
        for lo in range(0, n, chunk_rows):
            part = {name: values[lo: lo + chunk_rows] for name, values in rows.items()}
            ts = part["ts_ms"]
            valid = ~part["no_time"] if "no_time" in part else None
            null = None if valid is None else ~valid
            writer.write_table(pa.table([
                pa.array(world.user_ids[part["user"]]), pa.array(world.item_ids[part["item"]]),
                pa.array(part["play"]),
                pa.array(part["duration"]), _time_strings(ts, valid),
                pa.array(_dates(ts), mask=null), pa.array(ts / 1000.0, mask=null),
                pa.array(part["ratio"]),
            ], schema=schema))


def write_side_files(out: Path, config: SynthConfig, world: World,
                     users: np.ndarray | None = None, items: np.ndarray | None = None) -> None:
    """Copies of the real side files, or generated ones written the way pandas wrote the
    real ones (quotes only around values holding a comma; whole numbers with gaps as ``3``
    and an empty field). ``users`` / ``items``: masks of the users and videos to list
    (default all; generated side files only)."""
    if config.side_dir:
        for name in (USER_FILE, ITEM_FILE):
            shutil.copyfile(Path(config.side_dir) / name, out / name)
        return
    assert world.user_features is not None
    users_table = world.user_features if users is None else world.user_features[users]
    users_table = users_table.copy()
    for name in users_table.columns:
        if name.startswith("onehot_feat"):
            users_table[name] = users_table[name].astype("Int64")
    users_table.to_csv(out / USER_FILE, index=False)
    keep = np.ones(len(world.item_ids), dtype=bool) if items is None else items
    feat = ["[" + ", ".join(str(t) for t in row if t >= 0) + "]"
            for row in world.item_tags[keep].tolist()]
    pd.DataFrame({"video_id": world.item_ids[keep], "feat": feat}).to_csv(
        out / ITEM_FILE, index=False)


def write_oracle(path: Path, config: SynthConfig, world: World,
                 *parts: dict[str, np.ndarray], log_shift: float = 0.0) -> int:
    """One row per distinct (user, video) pair of the interaction ``parts``, sorted by the raw
    ids; ``log_shift`` is a planted shift of the log ratio (``mu``) the rows were drawn with."""
    n_items = config.n_items
    keys = np.concatenate([part["user"] * n_items + part["item"] for part in parts])
    keys.sort()
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
    user, item = np.divmod(keys, n_items)
    mu, pi0 = pair_params(config, world, user, item)
    median, mean = oracle_ratio(config, mu + log_shift, pi0)
    duration = world.duration_ms[item]
    median = np.rint(median * duration) / duration  # same whole-ms rounding as the data
    # The mean to whole microseconds of play: exp/log differ in their last bits between CPUs
    # and C libraries, and the recorded data version (data.dvc) must regenerate byte for byte
    # on any machine. A ratio of two integers is one correctly rounded division everywhere.
    micro = duration * 1000.0
    mean = np.rint(mean * micro) / micro
    # Positions follow the raw ids' order, so the rows come out sorted by (user_id, video_id).
    user_ids, item_ids = world.user_ids[user], world.item_ids[item]
    table = pa.table({"user_id": user_ids, "video_id": item_ids,
                      "oracle_median_ratio": median, "oracle_mean_ratio": mean})
    with csv_writer(path, table.schema) as writer:
        writer.write_table(table)
    return len(keys)
