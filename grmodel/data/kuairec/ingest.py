"""KuaiRec 2.0 ingest: the raw CSV files -> the processed-dataset contract (features.py).

Columnar throughout: the matrices are read with pyarrow.csv under explicit types, encoders are
fitted per *entity* (user, video) over the entities that occur in training rows, and each
row's ids are gathered from those small tables while the split files are written in chunks.
What the ingest did and why is recorded in the manifest (see ``ingest_kuairec``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from grmodel.data import splits
from grmodel.data.encoding import EncodedField, categorical_field
from grmodel.data.io import (
    DataSpecError,
    RawDataError,
    check_rule,
    column_array,
    read_csv,
    sha256_file,
)
from grmodel.data.kuairec.fields import (
    LABEL_UNITS,
    LabelMode,
    daily_fields,
    duration_field,
    label_column,
    tag_fields,
    user_fields,
)
from grmodel.data.kuairec.layout import RawLayout, raw_layout
from grmodel.data.kuairec.readers import (
    exact_duplicates,
    factorize_ids,
    read_item_daily,
    read_item_tags,
    read_matrix,
    read_user_features,
    sources_record,
)
from grmodel.data.kuairec.schema import (
    DAILY_FILE,
    DAY_MS,
    DEFAULT_DAILY_FIELDS,
    DEFAULT_USER_FIELDS,
    ITEM_FILE,
    MATRIX_COLUMNS,
    ORACLE_COLUMNS,
    ORACLE_FILE,
    SYNTH_FILE,
    USER_FILE,
    UTC_PLUS_8_MS,
)
from grmodel.data.processed import ROW_GROUP_ROWS, split_rows_summary, write_processed
from grmodel.data.storage import local_path
from grmodel.data.windows import (
    Window,
    check_window,
    day_of,
    resolve_window,
    rows_by_day,
    window_entry,
)
from grmodel.features import LABEL_COLUMN, OOV_ID

log = logging.getLogger(__name__)

SplitKind = Literal["authors", "random", "chronological", "forward"]


@dataclass
class IngestConfig:
    """Every option of the KuaiRec ingest; the manifest records it under ``options``."""

    label_mode: LabelMode = "watch_time"
    # authors: big matrix -> train + valid, small matrix -> test (the GR paper's protocol);
    # random: 80/10/10 over both matrices; chronological: 80/10/10 by timestamp;
    # forward: by day (grmodel/data/windows.py): train on the window before as_of, valid its
    # last day, test the as_of day (logs by day: a row's day is its partition's; the flat
    # layout: its timestamp's UTC+8 day).
    split: SplitKind = "authors"
    as_of: str = ""  # forward: the test day (YYYY-MM-DD); "" = the newest day of the data
    window_days: int = 0  # forward: the days before as_of learnt from; 0 = every earlier day
    valid_mode: Literal["random", "last"] = "random"  # authors: how valid leaves the big matrix
    valid_fraction: float = 0.1
    test_fraction: float = 0.1  # random / chronological
    seed: int = 2024
    # How the seeded random draws (random; authors with valid_mode random) are made:
    # permutation: exact sizes, numpy's draw over all rows; hash: splits.hash_split, each row
    # by a hash of (seed, its row index), binomial sizes, nothing row-sized on a Spark driver.
    # Time-based splits draw nothing and ignore it.
    split_draw: Literal["permutation", "hash"] = "permutation"
    dedupe: bool = False  # drop exact duplicate rows within each matrix
    user_fields: tuple[str, ...] = DEFAULT_USER_FIELDS
    daily_fields: tuple[str, ...] = DEFAULT_DAILY_FIELDS  # used when item_daily_features.csv is there
    duration_buckets: int = 20
    unknown_as_missing: bool = True  # user_active_degree "UNKNOWN" -> id 0 (missing)
    chunk_rows: int = 1_000_000
    row_group_rows: int = ROW_GROUP_ROWS  # Parquet row group size of the processed splits

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> IngestConfig:
        """The config from JSON-like values (lists for the tuple fields), checked; unknown
        names are an error that lists the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DataSpecError(f"IngestConfig: unknown option(s) {unknown}; known: {sorted(known)}")
        config = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        config.validate()
        return config

    def validate(self) -> None:
        def choice(name: str, allowed: tuple[str, ...]) -> None:
            if getattr(self, name) not in allowed:
                raise DataSpecError(f"IngestConfig.{name}={getattr(self, name)!r}: expected one"
                                    f" of {list(allowed)}")

        choice("label_mode", tuple(LABEL_UNITS))
        choice("split", ("authors", "random", "chronological", "forward"))
        choice("valid_mode", ("random", "last"))
        choice("split_draw", splits.SPLIT_DRAWS)
        splits.check_fractions(self.valid_fraction,
                               0.0 if self.split == "authors" else self.test_fraction)
        if self.split != "forward" and (self.as_of or self.window_days):
            raise DataSpecError(f"IngestConfig: as_of={self.as_of!r}, window_days="
                                f"{self.window_days} apply to split forward only (split is"
                                f" {self.split!r})")
        check_window(self.as_of, self.window_days, "IngestConfig")
        unknown = sorted(set(self.user_fields) - set(DEFAULT_USER_FIELDS))
        if unknown:
            raise DataSpecError(f"IngestConfig.user_fields: unknown field(s) {unknown}; known:"
                                f" {list(DEFAULT_USER_FIELDS)}")
        if self.duration_buckets < 2:
            raise DataSpecError("IngestConfig.duration_buckets must be >= 2")
        if self.chunk_rows < 1:
            raise DataSpecError("IngestConfig.chunk_rows must be >= 1")
        if self.row_group_rows < 1:
            raise DataSpecError("IngestConfig.row_group_rows must be >= 1")


# ----------------------------------------------------------------------------------- ingest


def ingest_kuairec(raw_dir: str | Path, out_dir: str | Path,
                   config: IngestConfig | None = None) -> dict[str, Any]:
    """Read a KuaiRec 2.0 directory, write a processed dataset to ``out_dir``, return its
    manifest (also written as ``out_dir/manifest.json``).

    Manifest keys beyond the contract's: ``dataset``, ``options`` (this config), ``sources``
    (per file: sha256, bytes), ``raw`` (per matrix: rows, exact duplicates, dropped,
    missing timestamps), ``label`` (mode, unit, train-only statistics, leak flag),
    ``splits`` (protocol, rows and OOV rows per split, what happened to rows without a
    time), ``side_coverage``, ``oracle`` and, for generated data, ``generator``.
    """
    config = config or IngestConfig()
    config.validate()
    raw = local_path(raw_dir)
    layout = raw_layout(raw, config.split, config.as_of, config.window_days)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Hashing overlaps the parsing (hashlib releases the GIL).
        digests = {name: pool.submit(sha256_file, file) for name, file in layout.files().items()}
        users, item_ids, item_tags, daily = read_side_files(layout.side, layout.optional, config)
        rows, raw_summary = _read_interactions(layout, config.dedupe)
        sources = sources_record(layout.files(), digests)
    log.info("read %d interactions from %s", len(rows["user_id"]), raw)

    window = layout.window
    if config.split == "forward" and window is None:  # the flat layout: the rows' days
        present = np.unique(rows["day"][np.isfinite(rows["day"])])
        window = resolve_window(config.as_of, config.window_days, [day_of(d) for d in present])
    codes = _split_codes(rows, config, window)
    train = codes == splits.TRAIN
    user_index, user_values = factorize_ids(rows["user_id"])
    item_index, item_values = factorize_ids(rows["video_id"])
    user_train = np.bincount(user_index[train], minlength=len(user_values)) > 0
    item_train = np.bincount(item_index[train], minlength=len(item_values)) > 0

    fields = [categorical_field("user_id", "user", user_values, user_train, user_index,
                                optional=False)]
    fields += user_fields(users, user_values, user_train, user_index, config.user_fields,
                          config.unknown_as_missing)
    fields.append(categorical_field("item_id", "item", item_values, item_train, item_index,
                                    optional=False))
    fields += tag_fields(item_ids, item_tags, item_values, item_train, item_index)
    fields.append(duration_field(rows, train, item_index, item_values, item_train,
                                 config.duration_buckets))
    if daily is not None:
        fields += daily_fields(daily, config.daily_fields, item_values, item_train, item_index)

    label, label_info = label_column(rows, item_index, train, config.label_mode)
    user_raw = rows["user_id"].astype(np.int64)
    item_raw = rows["video_id"].astype(np.int64)

    def columns(part: np.ndarray) -> dict[str, np.ndarray]:
        return {
            LABEL_COLUMN: label[part],
            "watch_ratio": rows["watch_ratio"][part],
            "watch_time_s": rows["play_duration"][part] / 1000.0,
            "duration_s": rows["video_duration"][part] / 1000.0,
            "timestamp": rows["timestamp"][part],
            "user_id_raw": user_raw[part],
            "item_id_raw": item_raw[part],
        }

    ordered_by = rows["timestamp"] if config.split in ("chronological", "forward") else None
    split_rows = splits.rows_by_split(codes, ordered_by)
    oracle, oracle_info = _oracle(layout, config.label_mode, user_raw, item_raw, rows,
                                  split_rows["test"])
    manifest = kuairec_manifest(
        layout, config, sources, raw_summary, label_info,
        _split_manifest(config, codes, split_rows, rows["timestamp"], fields, window,
                        layout.days is not None),
        (user_values, users, item_values, item_ids), oracle_info,
        window_entry(window, rows_by_day(rows["day"], codes)))
    result = write_processed(out_dir, fields, columns, split_rows, manifest, oracle,
                             config.chunk_rows, config.row_group_rows)
    log.info("ingested %s: %s", out_dir, manifest["splits"]["rows"])
    return result


def kuairec_manifest(layout: RawLayout, config: IngestConfig,
                     sources: dict[str, Any], raw_summary: dict[str, Any],
                     label_info: dict[str, Any], split_entry: dict[str, Any],
                     entities: tuple[np.ndarray, pd.DataFrame, np.ndarray, np.ndarray],
                     oracle_info: dict[str, Any], window: dict[str, Any] | None
                     ) -> dict[str, Any]:
    """The ingest's manifest entries (write_manifest adds the contract's). ``entities``: the
    users and videos of the interactions, the user feature table, the videos with categories;
    ``window``: the forward split's days (``window_entry``), else None (no entry)."""
    user_values, users, item_values, item_ids = entities
    optional = layout.optional
    extra = {} if window is None else {"window": window}
    return {
        "dataset": "kuairec",
        "options": dataclasses.asdict(config),
        "sources": sources,
        "raw": raw_summary,
        "label": label_info,
        "splits": split_entry,
        "side_coverage": {
            "users_without_features": int((~np.isin(user_values, users["user_id"])).sum()),
            "videos_without_categories": int((~np.isin(item_values, item_ids)).sum()),
            "item_daily_features": DAILY_FILE in optional and bool(config.daily_fields),
        },
        "oracle": oracle_info,
        "generator": _generator(layout),
        **extra,
    }


def read_side_files(raw: Path, optional: list[str], config: IngestConfig
                    ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, pd.DataFrame | None]:
    """(user features, video ids, their tags, the daily file's static fields or None)."""
    users = read_user_features(raw / USER_FILE, tuple(config.user_fields))
    item_ids, item_tags = read_item_tags(raw / ITEM_FILE)
    daily = (read_item_daily(raw / DAILY_FILE, tuple(config.daily_fields))
             if DAILY_FILE in optional and config.daily_fields else None)
    return users, item_ids, item_tags, daily


def _read_interactions(layout: RawLayout, dedupe: bool
                       ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every interaction file of ``layout`` as one set of columns (in the layout's order: big
    then small, or day by day) plus ``is_small`` and ``day`` (days since 1970-01-01: the
    partition's, else the timestamp's UTC+8 day; NaN without one); duplicates counted per
    file and dropped when asked."""
    parts, summary = [], {}
    for name, path in layout.matrices.items():
        matrix = read_matrix(path)
        duplicate = exact_duplicates(matrix)
        summary[name] = {
            "rows": int(len(duplicate)),
            "exact_duplicate_rows": int(duplicate.sum()),
            "dropped_duplicate_rows": int(duplicate.sum()) if dedupe else 0,
            "nan_timestamp_rows": int(np.isnan(matrix["timestamp"]).sum()),
            "users": int(len(factorize_ids(matrix["user_id"])[1])),
            "videos": int(len(factorize_ids(matrix["video_id"])[1])),
        }
        if dedupe and duplicate.any():
            matrix = {k: v[~duplicate] for k, v in matrix.items()}
        if layout.days is not None:
            matrix["day"] = np.full(len(matrix["user_id"]), float(layout.days[name]))
        else:
            matrix["day"] = local_days(matrix["timestamp"])
        parts.append(matrix)
    rows = {name: np.concatenate([p[name] for p in parts]) for name in (*MATRIX_COLUMNS, "day")}
    small = [layout.days is None and name == "small_matrix" for name in layout.matrices]
    rows["is_small"] = np.repeat(small, [len(p["user_id"]) for p in parts])
    return rows, summary


def local_days(timestamps: np.ndarray) -> np.ndarray:
    """The UTC+8 day of each Unix-seconds timestamp, as days since 1970-01-01 (NaN stays)."""
    return np.floor((timestamps * 1000.0 + UTC_PLUS_8_MS) / DAY_MS)


def _split_codes(rows: dict[str, np.ndarray], config: IngestConfig, window: Window | None
                 ) -> np.ndarray:
    if window is not None:
        return window.codes(rows["day"])
    hashed = config.split_draw == "hash"
    if hashed and (config.split == "random"
                   or config.split == "authors" and config.valid_mode == "random"):
        # The rows' index here is the Spark engine's row number (both matrices, big first).
        index = np.arange(len(rows["user_id"]))
        if config.split == "random":
            return splits.hash_split(index, config.valid_fraction, config.test_fraction,
                                     config.seed)
        codes = splits.hash_split(index, config.valid_fraction, 0.0, config.seed)
        codes[rows["is_small"]] = splits.TEST
        return codes
    if config.split == "authors":
        return splits.holdout_split(rows["is_small"], rows["timestamp"], config.valid_fraction,
                                    config.valid_mode, config.seed)
    if config.split == "random":
        return splits.random_split(len(rows["user_id"]), config.valid_fraction,
                                   config.test_fraction, config.seed)
    return splits.chronological_split(rows["timestamp"], config.valid_fraction,
                                      config.test_fraction)


def _split_manifest(config: IngestConfig, codes: np.ndarray, split_rows: dict[str, np.ndarray],
                    timestamps: np.ndarray, fields: list[EncodedField],
                    window: Window | None, partitioned: bool) -> dict[str, Any]:
    untimed = np.isnan(timestamps)
    protocol, nan_policy = split_protocol(config, window, partitioned)
    by_name = {f.spec.name: f for f in fields}
    per_split = {}
    for name, rows in split_rows.items():
        per_split[name] = {
            "rows": int(len(rows)),
            "oov_user_rows": int((by_name["user_id"].rows(rows) == OOV_ID).sum()),
            "oov_item_rows": int((by_name["item_id"].rows(rows) == OOV_ID).sum()),
            "nan_timestamp_rows": int(untimed[rows].sum()),
        }
    return {
        "kind": config.split,
        "protocol": protocol,
        "seed": config.seed,
        "rows": split_rows_summary(split_rows),
        "per_split": per_split,
        "dropped_rows": int((codes == splits.DROPPED).sum()),
        "nan_timestamp_rows": {"total": int(untimed.sum()), "policy": nan_policy},
    }


def split_protocol(config: IngestConfig, window: Window | None = None,
                   partitioned: bool = False) -> tuple[str, str]:
    """(the split protocol, the policy for rows without a timestamp), as the manifest says;
    ``window``: the forward split's, over day partitions when ``partitioned``."""
    if window is not None:
        return window.protocol(), ("kept: a row's day is its partition's" if partitioned else
                                   "dropped: a row without a timestamp has no day")
    hashed = config.split_draw == "hash"
    seeded, by = (("about", " by a seeded hash of the row index, sizes binomial") if hashed
                  else ("seeded random", ""))
    if config.split == "authors":
        valid = (f"{'' if hashed else 'a '}{seeded} {config.valid_fraction:g} of big-matrix"
                 f" rows{by}"
                 if config.valid_mode == "random" else
                 f"the newest {config.valid_fraction:g} of big-matrix rows by timestamp")
        protocol = f"big matrix -> train + valid ({valid}); small matrix -> test"
        nan_policy = ("kept in their split" if config.valid_mode == "random" else
                      "kept: big-matrix rows without a timestamp stay in train")
    elif config.split == "random":
        protocol = (f"{seeded} {1 - config.valid_fraction - config.test_fraction:g} /"
                    f" {config.valid_fraction:g} / {config.test_fraction:g} of both"
                    f" matrices{by}")
        nan_policy = "kept in their split"
    else:
        protocol = (f"oldest {1 - config.valid_fraction - config.test_fraction:g} train, next"
                    f" {config.valid_fraction:g} valid, newest {config.test_fraction:g} test,"
                    " over both matrices; each split sorted by timestamp")
        nan_policy = "dropped: rows without a timestamp cannot be placed in time"
    return protocol, nan_policy


def _oracle(layout: RawLayout, mode: str, user_raw: np.ndarray, item_raw: np.ndarray,
            rows: dict[str, np.ndarray], test_rows: np.ndarray) -> tuple[Any, dict[str, Any]]:
    """A function adding oracle_median / oracle_mean (label units) to test rows, and the
    manifest entry; (None, reason) when there is no oracle or the label mode has none. In the
    days layout the oracle is the newest day's (a forward split's test day)."""
    info = oracle_info(layout.optional, mode)
    if not info["present"]:
        return None, info
    path = layout.side_file(ORACLE_FILE)
    table = read_csv(path, ORACLE_COLUMNS)
    o_user, o_item = column_array(table, "user_id"), column_array(table, "video_id")
    median = column_array(table, "oracle_median_ratio")
    mean = column_array(table, "oracle_mean_ratio")
    for name, values in (("oracle_median_ratio", median), ("oracle_mean_ratio", mean)):
        check_rule(path, name, ~np.isfinite(values) | (values < 0), "non-negative, finite",
                   values)
    width = int(max(o_item.max(), item_raw.max())) + 1
    keys = o_user.astype(np.int64) * width + o_item.astype(np.int64)
    if not (keys[1:] > keys[:-1]).all():  # generated files are sorted and unique already
        order = np.argsort(keys, kind="stable")
        keys, median, mean = keys[order], median[order], mean[order]
    wanted = user_raw[test_rows] * width + item_raw[test_rows]
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    found = keys[at] == wanted
    if not found.all():
        raise RawDataError(f"{path}: no oracle row for {int((~found).sum())} test rows (rule:"
                           " the oracle covers every (user_id, video_id) of the test split)")
    position = np.full(len(user_raw), -1, dtype=np.int64)
    position[test_rows] = at
    scale_by_duration = mode == "watch_time"

    def oracle_columns(part: np.ndarray) -> dict[str, np.ndarray]:
        at = position[part]
        scale = rows["video_duration"][part] / 1000.0 if scale_by_duration else 1.0
        return {"oracle_median": median[at] * scale, "oracle_mean": mean[at] * scale}

    return oracle_columns, info


def oracle_info(optional: list[str], mode: str) -> dict[str, Any]:
    """The manifest's oracle entry: present (test rows get oracle_median / oracle_mean in label
    units; watch_time scales the ratio by the video's duration), or why not."""
    if ORACLE_FILE not in optional:
        return {"present": False, "reason": f"no {ORACLE_FILE} (real data)"}
    if mode == "norm_ratio":
        return {"present": False, "reason": "norm_ratio depends on every row of a video,"
                " so no per-row oracle is defined; omitted"}
    unit = "seconds (ratio x video_duration)" if mode == "watch_time" else "ratio"
    return {"present": True, "source": ORACLE_FILE, "unit": unit,
            "columns": ["oracle_median", "oracle_mean"]}


def _generator(layout: RawLayout) -> dict[str, Any] | None:
    if SYNTH_FILE not in layout.optional:
        return None
    path = layout.side_file(SYNTH_FILE)
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RawDataError(f"{path}: not valid JSON ({exc})") from None
    entry = {"config": record.get("config"), "sha256": record.get("sha256")}
    if "days" in record:  # generated days: their settings and the drifts on the newest day
        entry |= {"days": record["days"], "drifts": record.get("drifts", [])}
    return entry


