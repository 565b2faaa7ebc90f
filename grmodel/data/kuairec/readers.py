"""Readers of the KuaiRec raw files: typed columns, checked rules (one line naming the file,
column and rule on bad data), exact duplicates and id factorisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from grmodel.data.io import RawDataError, check_rule, column_array, read_csv, read_header
from grmodel.data.kuairec.schema import (
    BIG,
    DAILY_FILE,
    ITEM_FILE,
    MATRIX_COLUMNS,
    MAX_TAGS,
    ORACLE_FILE,
    SMALL,
    SYNTH_FILE,
    TAG_LIST,
    USER_FILE,
    USER_STRING_FIELDS,
)


def raw_files(raw: Path) -> tuple[list[str], list[str]]:
    """(the optional files present, every file the ingest reads), after checking that the
    directory and the required files' headers are there (before any heavy work)."""
    if not raw.is_dir():
        raise RawDataError(f"{raw}: not a directory (rule: ingest reads a KuaiRec directory)")
    for name in (BIG, SMALL, USER_FILE, ITEM_FILE):
        read_header(raw / name)  # fail on a missing or empty file before any heavy work
    optional = [name for name in (DAILY_FILE, ORACLE_FILE, SYNTH_FILE) if (raw / name).is_file()]
    return optional, [BIG, SMALL, USER_FILE, ITEM_FILE, *optional]


def sources_record(files: dict[str, Any], digests: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``sources``: each file's sha256 (futures of it) and size, by its name
    relative to the raw directory."""
    return {name: {"sha256": digest.result(), "bytes": files[name].stat().st_size}
            for name, digest in digests.items()}


def read_user_features(path: Path, fields: tuple[str, ...]) -> pd.DataFrame:
    """user_id plus the named profile fields: strings stay strings, numbers are float64 with
    NaN for gaps (integer-valued, checked)."""
    kinds = {"user_id": "int", **{f: "str" if f in USER_STRING_FIELDS else "int"
                                  for f in fields}}
    table = read_csv(path, kinds)
    frame = pd.DataFrame({name: column_array(table, name) for name in kinds})
    user = frame["user_id"].to_numpy()
    check_rule(path, "user_id", ~np.isfinite(user) | (user < 0), "non-negative integer id", user)
    frame["user_id"] = user.astype(np.int64)
    dup = frame["user_id"].duplicated().to_numpy()
    check_rule(path, "user_id", dup, "one row per user", user)
    return frame


def read_item_tags(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(video ids, tags [n, 4] with -1 where a video has fewer tags), parsing the ``feat``
    list literals such as ``"[27, 9]"`` with a pattern, never ``eval``."""
    table = read_csv(path, {"video_id": "int", "feat": "str"})
    video = column_array(table, "video_id")
    check_rule(path, "video_id", ~np.isfinite(video) | (video < 0), "non-negative integer id",
               video)
    check_rule(path, "video_id", pd.Series(video).duplicated().to_numpy(), "one row per video",
               video)
    feat = table.column("feat")
    ok = pc.fill_null(pc.match_substring_regex(feat, TAG_LIST), False).to_numpy(
        zero_copy_only=False)
    check_rule(path, "feat", ~ok, "a list literal of integer tags such as [27, 9]",
               feat.to_numpy(zero_copy_only=False))
    inner = pc.replace_substring_regex(feat, r"[\[\]\s]", "")
    parts = pc.split_pattern(inner, ",")
    counts = np.where(pc.equal(inner, "").to_numpy(zero_copy_only=False), 0,
                      pc.list_value_length(parts).to_numpy(zero_copy_only=False))
    check_rule(path, "feat", counts > MAX_TAGS, f"at most {MAX_TAGS} tags per video",
               feat.to_numpy(zero_copy_only=False))
    flat = pc.list_flatten(parts).to_numpy(zero_copy_only=False)
    flat = flat[flat != ""].astype(np.int64)
    tags = np.full((len(video), MAX_TAGS), -1, dtype=np.int64)
    row = np.repeat(np.arange(len(video)), counts)
    slot = np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts)
    tags[row, slot] = flat
    return video.astype(np.int64), tags


def read_item_daily(path: Path, fields: tuple[str, ...]) -> pd.DataFrame:
    """One row per video: the static ``fields`` as of the video's earliest date."""
    table = read_csv(path, {"video_id": "int", "date": "float",
                            **dict.fromkeys(fields, "str")}, null_strings=True)
    frame = table.to_pandas()
    video = frame["video_id"].to_numpy()
    check_rule(path, "video_id", ~np.isfinite(video) | (video < 0), "non-negative integer id",
               video)
    frame["video_id"] = video.astype(np.int64)
    frame = frame.sort_values(["video_id", "date"], kind="stable")
    return frame.drop_duplicates("video_id").reset_index(drop=True)


def read_matrix(path: Path) -> dict[str, np.ndarray]:
    """An interaction matrix as float64 numpy columns, checked against the row rules.

    Integer columns stay float64 (checked whole): exact-duplicate detection and the seconds
    conversions need no cast, and ids are cast once where they are written.
    """
    table = read_csv(path, MATRIX_COLUMNS)
    out = {}
    for name in MATRIX_COLUMNS:
        out[name] = column_array(table, name)
        table = table.drop_columns([name])  # frees each column's Arrow buffers as it goes
    for name in ("user_id", "video_id"):
        values = out[name]
        check_rule(path, name, ~np.isfinite(values) | (values < 0),
                   "non-negative integer id, never missing", values)
    for name in ("play_duration", "watch_ratio"):
        values = out[name]
        check_rule(path, name, ~np.isfinite(values) | (values < 0),
                   "non-negative, never missing", values)
    duration = out["video_duration"]
    check_rule(path, "video_duration", ~np.isfinite(duration) | (duration <= 0),
               "positive milliseconds, never missing", duration)
    check_rule(path, "timestamp", np.isinf(out["timestamp"]), "finite seconds or missing",
               out["timestamp"])
    return out


def exact_duplicates(matrix: dict[str, np.ndarray]) -> np.ndarray:
    """True for every row equal in all columns to an earlier row (the first copy stays False).

    Rows are sorted by a 64-bit hash of their values (packed with the row number into one
    integer, which sorts far faster than an argsort), and each row is compared, column by
    column, with its neighbour of the same hash. A hash group that holds two different rows
    (a collision) is settled by a full comparison, so the result is exact.
    """
    columns = [np.ascontiguousarray(matrix[name], dtype=np.float64).view(np.uint64)
               for name in MATRIX_COLUMNS]
    n = len(columns[0])
    digest = np.zeros(n, dtype=np.uint64)
    for bits in columns:
        digest ^= bits
        digest *= np.uint64(0x9E3779B97F4A7C15)
        digest ^= digest >> np.uint64(29)
    row_bits = np.uint64(max(1, (n - 1).bit_length()))
    packed = (digest >> row_bits << row_bits) | np.arange(n, dtype=np.uint64)
    packed.sort()
    order = (packed & ((np.uint64(1) << row_bits) - np.uint64(1))).astype(np.int64)
    prefix = packed >> row_bits
    del packed, digest
    same = np.flatnonzero(prefix[1:] == prefix[:-1])
    earlier, later = order[same], order[same + 1]
    equal = np.ones(len(same), dtype=bool)
    for bits in columns:
        equal &= bits[earlier] == bits[later]
    duplicate = np.zeros(n, dtype=bool)
    duplicate[later[equal]] = True
    if not equal.all():
        rows = np.sort(order[np.isin(prefix, prefix[same[~equal]])])
        subset = pd.DataFrame({i: bits[rows] for i, bits in enumerate(columns)})
        duplicate[rows] = subset.duplicated().to_numpy()
    return duplicate


def factorize_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int32 position of each row's id among the sorted distinct ids, those ids as int64).

    Whole-number ids up to a few times the row count use a lookup table (linear time);
    sparser ids fall back to a sort.
    """
    ids = ids.astype(np.int64)
    if len(ids) and ids.max() < max(4 * len(ids), 1 << 20):
        present = np.zeros(int(ids.max()) + 1, dtype=bool)
        present[ids] = True
        position = np.cumsum(present, dtype=np.int64) - 1
        return position[ids].astype(np.int32), np.flatnonzero(present)
    values, inverse = np.unique(ids, return_inverse=True)
    return inverse.astype(np.int32), values

