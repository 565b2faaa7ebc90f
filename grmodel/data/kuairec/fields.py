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
    seconds = rows["video_duration"] / 1000.0
    train_sum = np.bincount(item_index[train], seconds[train], minlength=n)
    train_count = np.bincount(item_index[train], minlength=n)
    all_sum = np.bincount(item_index, seconds, minlength=n)
    all_count = np.bincount(item_index, minlength=n)
    mean = np.where(train_count > 0, train_sum / np.maximum(train_count, 1),
                    all_sum / np.maximum(all_count, 1))
    return bucket_field("item_duration_bucket", "item", mean, item_train,
                        buckets, item_index, optional=False)


def daily_fields(daily: pd.DataFrame, names: tuple[str, ...], item_values: np.ndarray,
                 item_train: np.ndarray, item_index: np.ndarray) -> list[EncodedField]:
    position = pd.Index(daily["video_id"]).get_indexer(item_values)
    return [categorical_field(f"item_{name}", "item", _lookup(daily[name].to_numpy(), position),
                              item_train, item_index) for name in names]


def label_column(rows: dict[str, np.ndarray], item_index: np.ndarray, train: np.ndarray,
                 mode: str) -> tuple[np.ndarray, dict[str, Any]]:
    info: dict[str, Any] = {"mode": mode, "unit": LABEL_UNITS[mode], "column": LABEL_COLUMN}
    if mode == "watch_time":
        label = rows["play_duration"] / 1000.0
        info["definition"] = "play_duration / 1000 (seconds)"
    elif mode == "watch_ratio":
        label = rows["watch_ratio"]
        info["definition"] = "watch_ratio = play_duration / video_duration"
    else:
        # The GR authors' label: per-video min-max over BOTH matrices, test rows included.
        ratio = rows["watch_ratio"]
        grouped = pd.Series(ratio).groupby(item_index).agg(["min", "max"])
        low = grouped["min"].to_numpy()[item_index]
        span = grouped["max"].to_numpy()[item_index] - low
        label = np.where(span > 0, (ratio - low) / np.where(span > 0, span, 1.0), 0.0)
        info["definition"] = ("(watch_ratio - min) / (max - min) per video over both matrices;"
                              " 0 where a video's max equals its min")
        info["leaks_test_statistics"] = True
    info.setdefault("leaks_test_statistics", False)
    info["train_stats"] = label_stats(label[train])
    return label, info

