"""The encoded feature fields and the label of a processed KuaiRec dataset, each fitted on the
training rows (user profile fields, video tags, duration buckets, daily item fields)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from grmodel.data.encoding import (
    EncodedField,
    bucket_field,
    categorical_field,
    label_stats,
    vocabulary,
)
from grmodel.data.kuairec.schema import MAX_TAGS
from grmodel.features import LABEL_COLUMN

LabelMode = Literal["watch_time", "watch_ratio", "norm_ratio"]
LABEL_UNITS = {"watch_time": "s", "watch_ratio": "ratio", "norm_ratio": "normalised ratio"}


def _lookup(values: np.ndarray, position: np.ndarray) -> np.ndarray:
    """values[position], missing (None / NaN) where position is -1."""
    out = values[np.maximum(position, 0)]
    if out.dtype.kind in "fc":
        out = np.where(position >= 0, out, np.nan)
    else:
        out = out.astype(object)
        out[position < 0] = None
    return out


def user_fields(users: pd.DataFrame, user_values: np.ndarray, user_train: np.ndarray,
                user_index: np.ndarray, names: tuple[str, ...], unknown_as_missing: bool
                ) -> list[EncodedField]:
    position = pd.Index(users["user_id"]).get_indexer(user_values)
    fields = []
    for name in names:
        values = _lookup(users[name].to_numpy(), position)
        if name == "user_active_degree" and unknown_as_missing:
            values[values == "UNKNOWN"] = None
        fields.append(categorical_field(name, "user", values, user_train, user_index))
    return fields


def tag_fields(item_ids: np.ndarray, item_tags: np.ndarray, item_values: np.ndarray,
               item_train: np.ndarray, item_index: np.ndarray) -> list[EncodedField]:
    """item_tag_0..3: one vocabulary (the tags of training videos) and one embedding table."""
    position = pd.Index(item_ids).get_indexer(item_values)
    tags = np.where(position[:, None] >= 0, item_tags[np.maximum(position, 0)], -1)
    tags = np.where(tags >= 0, tags, np.nan)
    vocab = vocabulary(tags[item_train].ravel(), np.ones(int(item_train.sum()) * MAX_TAGS, bool))
    return [categorical_field(f"item_tag_{k}", "item", tags[:, k], item_train, item_index,
                              table="item_tag", vocab=vocab) for k in range(MAX_TAGS)]


def duration_field(rows: dict[str, np.ndarray], train: np.ndarray, item_index: np.ndarray,
                   item_values: np.ndarray, item_train: np.ndarray, buckets: int
                   ) -> EncodedField:
    """Each video's mean duration (s) over its training rows -- over all its rows when it
    has none (a video's length is known when it is served) -- in quantile buckets fitted on
    the training videos."""
    n = len(item_values)
    ms = rows["video_duration"]
    return duration_field_from_sums(np.bincount(item_index[train], ms[train], minlength=n),
                                    np.bincount(item_index[train], minlength=n),
                                    np.bincount(item_index, ms, minlength=n),
                                    np.bincount(item_index, minlength=n), item_train, item_index,
                                    buckets)


def duration_field_from_sums(train_ms: np.ndarray, train_count: np.ndarray, all_ms: np.ndarray,
                             all_count: np.ndarray, item_train: np.ndarray,
                             item_index: np.ndarray | None, buckets: int) -> EncodedField:
    """The duration buckets from each video's summed milliseconds and row counts (train rows,
    all rows). Sums of whole milliseconds are exact in float64 in any order, so a distributed
    engine (grmodel/data/spark/) gets the same means bit for bit."""
    mean = np.where(train_count > 0, train_ms / np.maximum(train_count, 1),
                    all_ms / np.maximum(all_count, 1)) / 1000.0
    return bucket_field("item_duration_bucket", "item", mean, item_train,
                        buckets, item_index, optional=False)


def daily_fields(daily: pd.DataFrame, names: tuple[str, ...], item_values: np.ndarray,
                 item_train: np.ndarray, item_index: np.ndarray) -> list[EncodedField]:
    position = pd.Index(daily["video_id"]).get_indexer(item_values)
    return [categorical_field(f"item_{name}", "item", _lookup(daily[name].to_numpy(), position),
                              item_train, item_index) for name in names]


def label_column(rows: dict[str, np.ndarray], item_index: np.ndarray, train: np.ndarray,
                 mode: str) -> tuple[np.ndarray, dict[str, Any]]:
    if mode == "watch_time":
        label = rows["play_duration"] / 1000.0
    elif mode == "watch_ratio":
        label = rows["watch_ratio"]
    else:
        # The GR authors' label: per-video min-max over BOTH matrices, test rows included.
        ratio = rows["watch_ratio"]
        grouped = pd.Series(ratio).groupby(item_index).agg(["min", "max"])
        low = grouped["min"].to_numpy()[item_index]
        span = grouped["max"].to_numpy()[item_index] - low
        label = np.where(span > 0, (ratio - low) / np.where(span > 0, span, 1.0), 0.0)
    return label, {**label_info(mode), "train_stats": label_stats(label[train])}


def label_info(mode: str) -> dict[str, Any]:
    """The manifest's description of a label mode (its statistics are added by the ingest)."""
    definition = {
        "watch_time": "play_duration / 1000 (seconds)",
        "watch_ratio": "watch_ratio = play_duration / video_duration",
        "norm_ratio": ("(watch_ratio - min) / (max - min) per video over both matrices;"
                       " 0 where a video's max equals its min"),
    }[mode]
    return {"mode": mode, "unit": LABEL_UNITS[mode], "column": LABEL_COLUMN,
            "definition": definition, "leaks_test_statistics": mode == "norm_ratio"}
