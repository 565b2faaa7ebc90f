"""Drift: the new data (each split: its window and its test day) against the champion's training
reference (grmodel/data/profile.py), with great_expectations' distribution expectations. Where
the split protocol makes the test split a population of its own (:data:`OWN_POPULATION_SPLITS`),
each split is compared with the same split of the champion's data instead.

Per split and compared column:

* a number (the label, ``duration_s``): ``expect_column_kl_divergence_to_be_less_than`` on the
  reference's decile bins, and ``expect_column_quantile_values_to_be_between`` on its 10/25/
  50/75/90% quantiles;
* a categorical field: ``expect_column_kl_divergence_to_be_less_than`` on the reference's most
  frequent values, ``(other)`` and ``(missing)``, and ``expect_column_mean_to_be_between`` on
  the share of rows whose value the reference never had.

Thresholds. Each check has an effect-size floor from :class:`DriftBounds` (``max_kl``; the
quantile tolerance as a fraction of the reference's inter-decile range, q90 - q10) and is widened
for sampling noise, so that a same-distribution sample of the size at hand passes every check
of a run with probability ``1 - false_alarm``: twice the effective row count times the KL
divergence is close to a chi-square statistic (the G-test), and a sample quantile is close to
normal with variance p(1-p)/n on the probability scale; ``false_alarm`` is split evenly over the
run's KL and quantile checks (Bonferroni). The effective count is n·N/(n+N) for n new rows and
N reference rows (both sides are samples). The bounds each check used are in the report.

The reference weights are smoothed (half a row per cell) so that a value the reference never
had gives a large but finite divergence. Results go into a :class:`DriftReport`, a validation
report whose verdict is ``no reference``, ``no drift`` or ``drift``; a run's ``drift_policy``
decides what a drift does (``warn``: reported; ``stop``: :class:`DriftFailed`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy import stats

from grmodel.data.profile import (
    MISSING,
    QUANTILE_LEVELS,
    ColumnPlan,
    categories,
    column_plan,
    read_column,
)
from grmodel.features import LABEL_COLUMN, read_encoders, read_manifest
from grmodel.validation.checks import Check, TableSuite
from grmodel.validation.gx import make_report, run_suite
from grmodel.validation.report import (
    CheckResult,
    Section,
    ValidationFailed,
    ValidationReport,
    plain,
)
from grmodel.validation.tables import LoadedTable

DriftPolicy = Literal["warn", "stop"]
DRIFT_POLICIES: tuple[str, ...] = ("warn", "stop")
OTHER = "(other)"
SMOOTHING = 0.5  # rows added to every reference cell
UNSEEN_SUFFIX = ":unseen"  # the derived column of a field's unseen share
KL = "expect_column_kl_divergence_to_be_less_than"
QUANTILES = "expect_column_quantile_values_to_be_between"
UNSEEN = "expect_column_mean_to_be_between"
NO_REFERENCE, NO_DRIFT, DRIFT = "no reference", "no drift", "drift"


class DriftFailed(ValidationFailed):
    """Raised under ``drift_policy=stop``; the message names the drifted columns and the rule."""


@dataclass(frozen=True)
class DriftBounds:
    """Thresholds of the drift checks (the pipeline's ``drift_*`` parameters)."""

    max_kl: float = 0.05  # KL(new || reference) floor, any column
    quantile_tolerance: float = 0.1  # x the reference's q90 - q10, each compared quantile
    max_unseen: float = 0.5  # share of a field's rows with a value the reference never had
    false_alarm: float = 0.01  # chance that a same-distribution run is flagged (noise widening)
    top_values: int = 20  # a categorical field's most frequent reference values compared
    quantiles: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
    min_rows: int = 30  # a column with fewer values in a split is not compared (skipped)
    max_rows: int = 1_000_000  # larger splits are compared on a seeded sample of this many
    # Every split: a forward split's train and valid are the new window (valid its last day),
    # test the as-of day.
    splits: tuple[str, ...] = ("train", "valid", "test")

    def __post_init__(self) -> None:
        for name in ("max_kl", "quantile_tolerance"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"drift bounds: {name}={getattr(self, name)} (rule: >= 0)")
        for name in ("max_unseen", "false_alarm"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"drift bounds: {name}={getattr(self, name)} (rule: in (0, 1])")
        if self.top_values < 1 or self.min_rows < 1 or self.max_rows < self.min_rows:
            raise ValueError("drift bounds: top_values >= 1, min_rows >= 1, max_rows >= min_rows")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def rule(self) -> str:
        return (f"KL divergence from the reference <= {self.max_kl:g} and quantiles within"
                f" {self.quantile_tolerance:g} x its q90 - q10, both widened for sampling noise at"
                f" a {self.false_alarm:g} false-alarm rate; share of values the reference never"
                f" had <= {self.max_unseen:g}")


def check_policy(policy: str) -> DriftPolicy:
    if policy not in DRIFT_POLICIES:
        raise ValueError(f"drift_policy {policy!r}: expected one of {list(DRIFT_POLICIES)}")
    return policy  # type: ignore[return-value]


@dataclass
class DriftReport(ValidationReport):
    """A validation report of the drift checks, with the reference it used (None: there was
    none, and ``no_reference`` says why) and one comparison row per split and column."""

    FILE_STEM: ClassVar[str] = "drift"

    reference: dict[str, Any] | None = None
    no_reference: str = ""
    comparisons: list[dict[str, Any]] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.reference is None:
            return NO_REFERENCE
        return NO_DRIFT if self.success else DRIFT

    def drifted(self) -> dict[str, list[str]]:
        """Split table -> drifted columns (each once, in check order)."""
        out: dict[str, list[str]] = {}
        for check in self.checks:
            if check.status == "failed" and check.column:
                columns = out.setdefault(check.table, [])
                name = check.column.removesuffix(UNSEEN_SUFFIX)
                if name not in columns:
                    columns.append(name)
        return out

    def drift_line(self) -> str:
        """The drifted columns and the rule, in one line."""
        where = "; ".join(f"{table}: {', '.join(cols)}" for table, cols in self.drifted().items())
        source = (self.reference or {}).get("description", "the reference")
        return (f"drift against {source} in {where} (rule: "
                f"{self.params.get('rule', 'the drift bounds')})")

    def summary(self) -> str:
        if self.reference is None:
            return f"Drift check of {self.source}: no reference ({self.no_reference}); nothing compared."
        counts = self.counts()
        text = (f"Drift check of {self.source} against {self.reference.get('description')}: "
                f"{self.verdict.upper() if self.verdict == DRIFT else self.verdict}; "
                f"{counts['failed']} of {counts['failed'] + counts['passed']} checks failed"
                f" ({counts['skipped']} skipped).")
        if self.verdict == DRIFT:
            line = self.drift_line()
            text += f" {line[0].upper()}{line[1:]}."
        return text

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "title": f"Drift check: {self.verdict}",
                "verdict": self.verdict, "reference": plain(self.reference),
                "no_reference": self.no_reference, "drifted": self.drifted(),
                "comparisons": plain(self.comparisons)}

    def metrics(self) -> dict[str, float]:
        """What MLflow gets: the verdict as numbers, the check counts, and per split and
        column the KL divergence, the unseen share and the label's mean over the reference's
        (``drift.test.label.mean_ratio``)."""
        metrics = {f"checks_{k}": float(v) for k, v in self.counts().items()}
        metrics |= {"drift_reference": float(self.reference is not None),
                    "drift_detected": float(self.verdict == DRIFT),
                    "drift_columns": float(sum(len(c) for c in self.drifted().values()))}
        for c in self.comparisons:
            key = f"drift.{c['table'].removesuffix('.parquet')}.{c['column']}"
            if c.get("kl") is not None:
                metrics[f"{key}.kl"] = float(c["kl"])
            if c.get("unseen") is not None:
                metrics[f"{key}.unseen"] = float(c["unseen"])
            if c["column"] == LABEL_COLUMN and c.get("new_mean") and c.get("reference_mean"):
                metrics[f"{key}.mean_ratio"] = float(c["new_mean"] / c["reference_mean"])
        return metrics

    def sections(self) -> list[Section]:
        header = ["split", "column", "kind", "reference", "new", "KL", "KL bound",
                  "unseen share", "status"]
        rows = [[c["table"], c["column"], c["kind"], c["reference"], c["new"],
                 _number(c.get("kl")), _number(c.get("kl_bound")), _number(c.get("unseen")),
                 c["status"]] for c in self.comparisons]
        reference = self.reference or {}
        about = [[key, str(value)] for key, value in reference.items()]
        return [Section("Reference and new data", header, rows),
                Section("Reference", ["key", "value"], about)]

    def apply_policy(self, policy: str) -> DriftReport:
        """``stop`` with a drift: raise :class:`DriftFailed`; otherwise return the report."""
        if check_policy(policy) == "stop" and self.verdict == DRIFT:
            raise DriftFailed(self.drift_line() + "; drift_policy=stop")
        return self


def _number(value: Any) -> str:
    return "" if value is None else f"{value:.4g}"


# ---------------------------------------------------------------------------------- checks


def _n_eff(n: int, n_ref: int) -> float:
    return n * n_ref / (n + n_ref)


def kl_bound(bounds: DriftBounds, cells: int, n: int, n_ref: int, alpha: float) -> float:
    """The KL threshold: ``max_kl``, or the divergence a same-distribution sample exceeds with
    probability ``alpha`` if larger (2·n_eff·KL is about chi-square with cells - 1 df)."""
    noise = stats.chi2.ppf(1.0 - alpha, max(cells - 1, 1)) / (2.0 * _n_eff(n, n_ref))
    return float(max(bounds.max_kl, noise))


def quantile_ranges(bounds: DriftBounds, reference: list[float], n: int, n_ref: int,
                    alpha: float) -> list[list[float]]:
    """[low, high] per compared quantile p: the reference's quantiles at p -/+ the sampling band
    (a normal bound on the probability scale), widened by the tolerance x q90 - q10."""
    def at(p: float) -> float:
        return float(np.interp(np.clip(p, 0.0, 1.0), QUANTILE_LEVELS, reference))

    z = stats.norm.ppf(1.0 - alpha / (2 * len(bounds.quantiles)))
    slack = bounds.quantile_tolerance * (at(0.9) - at(0.1))
    ranges = []
    for p in bounds.quantiles:
        band = z * np.sqrt(p * (1 - p) / _n_eff(n, n_ref))
        ranges.append([at(p - band) - slack, at(p + band) + slack])
    return ranges


@dataclass(eq=False)  # compared by identity
class _Column:
    """One compared column of one split: its frame columns and checks."""

    plan: ColumnPlan
    reference: dict[str, Any]
    data: dict[str, Any]
    checks: list[Check]
    comparison: dict[str, Any]


def _numeric(plan: ColumnPlan, ref: dict[str, Any], values: np.ndarray) -> _Column:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    edges = ref["edges"]
    counts = np.asarray(ref["counts"], dtype=np.float64) + SMOOTHING
    partition = {"bins": [-np.inf, *edges, np.inf], "weights": (counts / counts.sum()).tolist()}
    reference = np.asarray(ref["quantiles"])
    comparison = {
        "kind": "numeric",
        "reference": f"mean {ref['mean']:.4g}, median {np.interp(0.5, QUANTILE_LEVELS, reference):.4g}",
        "new": (f"mean {finite.mean():.4g}, median {np.median(finite):.4g}" if len(finite)
                else "no finite value"),
        "reference_mean": ref["mean"], "new_mean": float(finite.mean()) if len(finite) else None,
        "cells": len(counts), "rows": int(len(finite)), "reference_rows": int(ref["count"]),
    }
    return _Column(plan, ref, {plan.name: values}, [
        Check(KL, {"column": plan.name, "partition_object": partition},
              f"{plan.name}'s distribution is close to the reference's (KL)"),
        Check(QUANTILES, {"column": plan.name},
              f"{plan.name}'s quantiles are near the reference's"),
    ], comparison)


def _categorical(plan: ColumnPlan, ref: dict[str, Any], values: np.ndarray,
                 encoders: dict[str, Any] | None, bounds: DriftBounds) -> _Column:
    codes, texts = categories(values, plan, encoders)
    top = ref["values"][: bounds.top_values]
    cells = [*top, OTHER, MISSING]
    position = {text: k for k, text in enumerate(cells)}
    cell_of_code = np.array([position.get(t, len(top)) for t in texts], dtype=np.int64)
    cell = cell_of_code[codes]
    seen = set(ref["values"])
    unseen_of_code = np.array([t != MISSING and t not in seen for t in texts], dtype=np.uint8)
    ref_counts = np.array([*ref["counts"][: bounds.top_values],
                           sum(ref["counts"][bounds.top_values:]) + ref["other"], ref["missing"]],
                          dtype=np.float64)
    new_counts = np.bincount(cell, minlength=len(cells))
    used = (ref_counts > 0) | (new_counts > 0)
    weights = ref_counts + SMOOTHING
    partition = {"values": cells, "weights": (weights / weights.sum()).tolist()}
    column = pd.Categorical.from_codes(cell, categories=cells)
    checks = [Check(KL, {"column": plan.name, "partition_object": partition},
                    f"{plan.name}'s mix of values is close to the reference's (KL)")]
    unseen = unseen_of_code[codes]
    data: dict[str, Any] = {plan.name: column}
    if not ref.get("truncated"):
        data[plan.name + UNSEEN_SUFFIX] = unseen
        checks.append(Check(UNSEEN, {"column": plan.name + UNSEEN_SUFFIX,
                                     "max_value": bounds.max_unseen},
                            f"at most {bounds.max_unseen:.0%} of {plan.name}'s rows have a value"
                            " the reference never had"))
    n = len(cell)
    comparison = {
        "kind": "categorical",
        "reference": _mix(ref_counts, cells),
        "new": _mix(new_counts.astype(np.float64), cells),
        "unseen": float(unseen.mean()) if len(unseen) else None,
        "cells": int(used.sum()), "rows": int(n),
        "reference_rows": int(ref["count"] + ref["missing"]),
    }
    return _Column(plan, ref, data, checks, comparison)


def _mix(counts: np.ndarray, cells: list[str], shown: int = 3) -> str:
    total = counts.sum()
    if total <= 0:
        return "no rows"
    order = np.argsort(-counts, kind="stable")[:shown]
    return ", ".join(f"{cells[k]} {counts[k] / total:.0%}" for k in order if counts[k] > 0)


def _read(parquet: pq.ParquetFile, sources: list[str], max_rows: int) -> pd.DataFrame:
    """The columns ``sources`` of a split, on a seeded sample of ``max_rows`` rows when it
    has more, read one column at a time."""
    n = parquet.metadata.num_rows
    rows = (None if n <= max_rows else
            np.sort(np.random.default_rng(0).choice(n, max_rows, replace=False)))
    return pd.DataFrame({source: read_column(parquet, source, rows) for source in sources},
                        index=pd.RangeIndex(min(n, max_rows)))


# Split protocols whose valid and test splits are populations of their own: KuaiRec's authors
# protocol tests on the small matrix (a dense block of other users and videos), a column split
# is whatever its column says. Their splits are compared with the same split of the reference
# (where it has one); every other protocol's splits continue the training rows (a forward
# split's valid and test days follow its window) and are compared with the training rows.
OWN_POPULATION_SPLITS = ("authors", "column")


def check_drift(processed_dir: str | Path, reference: dict[str, Any] | None,
                bounds: DriftBounds | None = None, *, about: dict[str, Any] | None = None,
                no_reference: str = "") -> DriftReport:
    """Compare ``processed_dir``'s splits with a reference profile (None: a report saying
    ``no_reference`` and comparing nothing). ``about`` describes the reference (its
    ``description`` is how the report names it: "champion version 3 of NAME")."""
    started = time.perf_counter()
    processed_dir, bounds = Path(processed_dir), bounds or DriftBounds()
    params = {**bounds.to_dict(), "rule": bounds.rule()}
    if reference is None:
        base = make_report("drift", str(processed_dir), params, [], [], started)
        return DriftReport(**_fields(base), reference=None,
                           no_reference=no_reference or "none given")
    manifest = read_manifest(processed_dir)
    encoders = read_encoders(processed_dir)
    own = manifest.get("splits", {}).get("kind") in OWN_POPULATION_SPLITS
    tables, columns_by_split, results = [], {}, []
    for split in bounds.splits:
        ref_columns = (reference.get("splits", {}).get(split, reference) if own
                       else reference)["columns"]
        path = processed_dir / f"{split}.parquet"
        parquet = pq.ParquetFile(path)
        plans = column_plan(manifest, encoders, parquet.schema_arrow.names)
        comparable = [p for p in plans if p.kind != "skipped"
                      and ref_columns.get(p.name, {}).get("kind") == p.kind]
        frame = _read(parquet, sorted({p.source for p in comparable}), bounds.max_rows)
        tables.append({"name": f"{split}.parquet", "path": str(path), "rows": len(frame),
                       "columns": [p.name for p in comparable]})
        for plan in plans:
            why = _not_compared(plan, ref_columns.get(plan.name))
            if why:
                results.append(_skipped(f"{split}.parquet", plan.name, why))
        built = [
            _numeric(p, ref_columns[p.name], frame[p.source].to_numpy())
            if p.kind == "numeric" else
            _categorical(p, ref_columns[p.name], frame[p.source].to_numpy(), encoders, bounds)
            for p in comparable
        ]
        few = [c for c in built if c.comparison["rows"] < bounds.min_rows]
        results += [_skipped(f"{split}.parquet", c.plan.name, f"{c.comparison['rows']} values,"
                             f" fewer than min_rows={bounds.min_rows}") for c in few]
        columns_by_split[split] = [c for c in built if c not in few]
    noisy = sum(1 for cols in columns_by_split.values() for c in cols for k in c.checks
                if k.expectation in (KL, QUANTILES))
    alpha = bounds.false_alarm / max(noisy, 1)
    comparisons = []
    for split, cols in columns_by_split.items():
        table = f"{split}.parquet"
        checks, data = [], {}
        for col in cols:
            n, n_ref = col.comparison["rows"], col.comparison["reference_rows"]
            col.checks = [_with_bounds(k, col, bounds, n, n_ref, alpha) for k in col.checks]
            checks += col.checks
            data.update(col.data)
        frame = pd.DataFrame(data)
        found = run_suite(LoadedTable(table, processed_dir / table, frame),
                          TableSuite(table, {}, tuple(checks)))
        results += found
        by_id = {r.check_id: r for r in found}
        for col in cols:
            comparisons.append(_comparison(table, col, by_id))
    base = make_report("drift", str(processed_dir), params, tables, results, started)
    return DriftReport(**_fields(base), reference=about or {"description": "the reference"},
                       comparisons=comparisons)


def _fields(report: ValidationReport) -> dict[str, Any]:
    return {f.name: getattr(report, f.name) for f in dataclasses.fields(ValidationReport)}


def _not_compared(plan: ColumnPlan, ref: dict[str, Any] | None) -> str:
    if plan.kind == "skipped":
        return plan.reason
    if ref is None:
        return "the reference has no profile of it"
    if ref.get("kind") != plan.kind:
        why = ref.get("reason") or f"profiled as {ref.get('kind')}"
        return f"the reference did not profile it as {plan.kind} ({why})"
    return ""


def _with_bounds(check: Check, col: _Column, bounds: DriftBounds, n: int, n_ref: int,
                 alpha: float) -> Check:
    if check.expectation == KL:
        bound = kl_bound(bounds, col.comparison["cells"], n, n_ref, alpha)
        col.comparison["kl_bound"] = bound
        return dataclasses.replace(check, kwargs={**check.kwargs, "threshold": bound},
                                   rule=f"{check.rule} <= {bound:.4g}")
    if check.expectation == QUANTILES:
        ranges = quantile_ranges(bounds, col.reference["quantiles"], n, n_ref, alpha)
        return dataclasses.replace(check, kwargs={**check.kwargs, "quantile_ranges": {
            "quantiles": list(bounds.quantiles), "value_ranges": ranges}})
    return check


def _comparison(table: str, col: _Column, by_id: dict[str, CheckResult]) -> dict[str, Any]:
    found = [by_id[k.check_id] for k in col.checks if k.check_id in by_id]
    kl = next((r.observed_value for r in found if r.expectation == KL), None)
    status = "drift" if any(r.status == "failed" for r in found) else "ok"
    return {"table": table, "column": col.plan.name, "status": status,
            "kl": kl if isinstance(kl, float) else None,
            **{k: v for k, v in col.comparison.items() if k not in ("cells",)}}


def _skipped(table: str, column: str, reason: str) -> CheckResult:
    return CheckResult(table=table, check_id=f"compared({column})", expectation="compared",
                       rule=f"{column} is compared with the reference", severity="warning",
                       status="skipped", column=column, note=f"not run: {reason}")
