"""The reference profile of a model's training data: what the drift check compares new data with.

A profile summarises one split of a processed dataset, column by column, in *raw* values:

* the label and ``duration_s`` (and a bucketed field whose split keeps its raw numbers in a
  ``<field>_raw`` column) as numbers: a histogram on the split's own decile edges, 101
  quantiles (0%, 1%, .., 100%), count, missing, mean and standard deviation;
* every categorical field as category frequencies of its raw values, most frequent first.

Raw values, never ids: an id is a position in encoders fitted on each run's own training
rows, so id 7 of today's run and id 7 of the champion's are unrelated values (a value inserted
in the middle of a sorted vocabulary shifts every later id). A field's raw values come from its
``<field>_raw`` column where the split has one (``user_id_raw``, ``item_id_raw``), else from
inverting the dataset's ``encoders.json``: id 0 is a missing value, id 1 a value this run's
training rows never had (its raw value is not kept: :data:`UNKNOWN`), id ``k >= 2`` is the
encoder's value ``k - 2``. A bucketed number without a raw column is not profiled: its
buckets are quantiles of each run's own training rows, so they cannot be compared either.

Profiles are built when a model is registered (``grmodel.registry.log_model`` stores
:data:`PROFILE_FILE` beside the weights, so the reference travels with the model) and for the
new data when the drift stage runs; both sides go through :func:`column_plan` and
:func:`categories`, so both are read the same way. Columns are read one at a time: memory stays
at one column of the split.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from grmodel import __version__
from grmodel.atomic import write_json_atomic
from grmodel.features import (
    FIRST_KNOWN_ID,
    LABEL_COLUMN,
    DatasetError,
    FeatureSchema,
    read_encoders,
    read_manifest,
)

PROFILE_FILE = "drift_reference.json"
PROFILE_FORMAT = "grmodel.drift_profile/1"
HISTOGRAM_BINS = 10  # decile bins of the reference: equal mass, so every bin is well estimated
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 101)
MAX_VALUES = 50_000  # categories kept per field; the rest are summed (the profile says so)
# Columns outside the feature schema profiled as numbers (when they hold any finite value).
NUMERIC_COLUMNS = (LABEL_COLUMN, "duration_s")
RAW_SUFFIX = "_raw"  # a split's raw values of field F, where it keeps them: column F_raw
MISSING = "(missing)"
UNKNOWN = "(unknown)"  # id 1 without a raw column: a value this run's training never had

Kind = Literal["numeric", "categorical", "skipped"]


class ProfileError(ValueError):
    """A profile that cannot be built or read (names the file and the rule)."""


@dataclass(frozen=True)
class ColumnPlan:
    """How one profiled column's raw values are read from a split."""

    name: str  # the label, a numeric column or a feature field
    kind: Kind
    source: str  # the split column read
    role: Literal["label", "feature"] = "feature"
    reason: str = ""  # why a column is skipped

    @property
    def from_encoder(self) -> bool:
        return self.kind == "categorical" and self.source == self.name


def column_plan(manifest: dict[str, Any], encoders: dict[str, Any] | None,
                columns: list[str]) -> list[ColumnPlan]:
    """Every column the drift check compares, in a fixed order: the label, the numeric
    columns, then the feature fields in schema order."""
    plans = [ColumnPlan(name, "numeric", name, "label" if name == LABEL_COLUMN else "feature")
             for name in NUMERIC_COLUMNS if name in columns]
    fields = (encoders or {}).get("fields", {})
    for spec in FeatureSchema.from_dict(manifest["features"]).fields:
        raw = spec.name + RAW_SUFFIX
        encoder = fields.get(spec.name)
        bucketed = encoder is not None and "edges" in encoder
        if raw in columns:
            plans.append(ColumnPlan(spec.name, "numeric" if bucketed else "categorical", raw))
        elif encoder is None:
            plans.append(ColumnPlan(spec.name, "skipped", spec.name, reason=(
                "the dataset has no encoder for it, so its ids cannot be read as raw values")))
        elif bucketed:
            plans.append(ColumnPlan(spec.name, "skipped", spec.name, reason=(
                "bucketed number without a raw column: its buckets are quantiles of each"
                " run's own training rows")))
        else:
            plans.append(ColumnPlan(spec.name, "categorical", spec.name))
    return plans


def read_column(parquet: pq.ParquetFile, source: str, rows: np.ndarray | None = None
                ) -> np.ndarray:
    """One column of a split as numpy (``rows``: only those rows), read alone: memory stays
    at one column of the split."""
    column = parquet.read(columns=[source]).column(0)
    if rows is not None:
        column = column.take(rows)
    return column.to_numpy()


def category_text(value: Any) -> str:
    """A raw category as text, the same for equal values of any type (3, 3.0 and "3")."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


def categories(values: np.ndarray, plan: ColumnPlan, encoders: dict[str, Any] | None
               ) -> tuple[np.ndarray, np.ndarray]:
    """(codes, texts): each row's code and the raw text of every code. Encoder ids are their
    own codes (0 missing, 1 unknown, 2.. the vocabulary); a raw column is factorised."""
    if plan.from_encoder:
        vocab = (encoders or {})["fields"][plan.name]["values"]
        texts = np.array([MISSING, UNKNOWN, *(category_text(v) for v in vocab)], dtype=object)
        codes = np.asarray(values, dtype=np.int64)
        if len(codes) and (codes.min() < 0 or codes.max() >= FIRST_KNOWN_ID + len(vocab)):
            raise DatasetError(f"column {plan.name!r}: ids outside its encoder's"
                               f" [0, {FIRST_KNOWN_ID + len(vocab)}) (rule: ids of this dataset's"
                               " encoders.json)")
        return codes, texts
    codes, uniques = pd.factorize(pd.Series(values), use_na_sentinel=True)
    texts = np.array([*(category_text(v) for v in np.asarray(uniques)), MISSING], dtype=object)
    return np.where(codes < 0, len(texts) - 1, codes), texts


def category_counts(codes: np.ndarray, texts: np.ndarray) -> pd.Series:
    """Rows per raw text (equal texts of different codes summed), most frequent first."""
    counts = pd.Series(np.bincount(codes, minlength=len(texts)), index=texts)
    counts = counts.groupby(level=0, sort=False).sum()
    counts = counts[counts > 0]
    order = np.lexsort((counts.index.to_numpy(dtype=str), -counts.to_numpy()))
    return counts.iloc[order]


def numeric_profile(values: np.ndarray) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    entry: dict[str, Any] = {"kind": "numeric", "count": int(len(finite)),
                             "missing": int(len(values) - len(finite))}
    if len(finite) == 0:
        return {**entry, "kind": "skipped", "reason": "no finite value"}
    edges = np.unique(np.quantile(finite, np.arange(1, HISTOGRAM_BINS) / HISTOGRAM_BINS))
    counts, _ = np.histogram(finite, [-np.inf, *edges, np.inf])
    return {**entry, "edges": edges.tolist(), "counts": counts.tolist(),
            "quantiles": np.quantile(finite, QUANTILE_LEVELS).tolist(),
            "mean": float(finite.mean()), "std": float(finite.std())}


def categorical_profile(counts: pd.Series) -> dict[str, Any]:
    missing = int(counts.get(MISSING, 0))
    seen = counts.drop(MISSING, errors="ignore")
    kept = seen.iloc[:MAX_VALUES]
    return {"kind": "categorical", "count": int(seen.sum()), "missing": missing,
            "distinct": int(len(seen)), "values": [str(v) for v in kept.index],
            "counts": [int(c) for c in kept], "other": int(seen.iloc[MAX_VALUES:].sum()),
            "truncated": len(seen) > MAX_VALUES}


def profile_split(processed_dir: str | Path, split: str = "train") -> dict[str, Any]:
    """The profile of one split of a processed dataset (by default the training rows)."""
    processed_dir = Path(processed_dir)
    manifest = read_manifest(processed_dir)
    encoders = read_encoders(processed_dir)
    path = processed_dir / f"{split}.parquet"
    if not path.is_file():
        raise DatasetError(f"{path}: not found (rule: every split is present)")
    parquet = pq.ParquetFile(path)
    profiled: dict[str, Any] = {}
    for plan in column_plan(manifest, encoders, parquet.schema_arrow.names):
        entry: dict[str, Any] = {"role": plan.role, "source": plan.source}
        if plan.kind == "skipped":
            profiled[plan.name] = {**entry, "kind": "skipped", "reason": plan.reason}
            continue
        values = read_column(parquet, plan.source)
        if plan.kind == "numeric":
            entry.update(numeric_profile(np.asarray(values, dtype=np.float64)))
        else:
            entry.update(categorical_profile(category_counts(*categories(values, plan, encoders))))
        profiled[plan.name] = entry
    return {
        "format": PROFILE_FORMAT,
        "grmodel_version": __version__,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "split": split,
        "rows": parquet.metadata.num_rows,
        "dataset": {key: manifest[key] for key in ("dataset", "window", "data_version")
                    if key in manifest},
        "label": {key: manifest.get("label", {}).get(key) for key in ("mode", "unit")},
        "histogram_bins": HISTOGRAM_BINS,
        "columns": profiled,
    }


# The splits profiled beside the training rows (see :func:`profile_dataset`).
OTHER_SPLITS = ("valid", "test")


def profile_dataset(processed_dir: str | Path) -> dict[str, Any]:
    """The training rows' profile, and under ``splits`` each other split's rows and columns
    (what the drift check compares a split with where the split protocol makes it a population
    of its own)."""
    profile = profile_split(processed_dir, "train")
    profile["splits"] = {split: {"rows": other["rows"], "columns": other["columns"]}
                         for split in OTHER_SPLITS
                         for other in [profile_split(processed_dir, split)]}
    return profile


def write_profile(processed_dir: str | Path, out_dir: str | Path) -> Path:
    """Write :func:`profile_dataset` of ``processed_dir`` as ``out_dir/PROFILE_FILE``."""
    path = Path(out_dir) / PROFILE_FILE
    write_json_atomic(path, profile_dataset(processed_dir))
    return path


def read_profile(directory: str | Path) -> dict[str, Any] | None:
    """``directory/PROFILE_FILE`` checked (None when the directory has none)."""
    path = Path(directory) / PROFILE_FILE
    if not path.is_file():
        return None
    try:
        profile = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(profile, dict) or profile.get("format") != PROFILE_FORMAT:
        found = profile.get("format") if isinstance(profile, dict) else type(profile).__name__
        raise ProfileError(f"{path}: format {found!r}, expected {PROFILE_FORMAT!r}")
    return profile
