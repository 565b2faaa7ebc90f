"""A comparison of models: its rows, and how command-line overrides reach each row's config.

A comparison is a list of rows, each trained for the same seeds and scored on one test split.
A row names a zoo model and the overrides that define it (the pipeline's rows are plain models;
the paper's tables in grmodel/experiments add vocabulary kinds and CLEM ablations). A row's
config is built, later items winning, from

1. the base config (``--config FILE`` or the library defaults),
2. the model's named defaults (``grmodel.config.MODEL_DEFAULTS``, e.g. TPM's ``head.tpm_w_var``),
3. the common ``key=value`` overrides (every row),
4. the ``MODEL:key=value`` overrides of the row's model (``tpm:head.tpm_w_var=0.5``),
5. the row's defining overrides (``vocab.kind=manual``),
6. the ``ROW:key=value`` overrides of that row (``manual:train.lr=1e-3``),

then the plan sets the dataset and the seed. A common or model-scoped override may not touch a
key that defines rows (it would silently turn the comparison into copies of one row), and seeds
are shared by every row so that rows are compared seed by seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from grmodel.config import ConfigError, RunConfig, model_defaults
from grmodel.models import MODELS

# Keys the plan sets itself (the dataset, the row's model).
RUNNER_KEYS = ("model_name", "data.processed_dir")
SEED_KEY = "train.seed"


@dataclass(frozen=True)
class Row:
    """One line of a comparison's table."""

    name: str  # the row label and its run directory name
    model_name: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comparison:
    name: str
    title: str
    rows: tuple[Row, ...]
    reference: str  # the row every other row is compared with
    # Every row name an override may be scoped to (the full list, when ``rows`` is a selection).
    scopes: tuple[str, ...] = ()

    @property
    def row_names(self) -> list[str]:
        return [r.name for r in self.rows]

    @property
    def scope_names(self) -> list[str]:
        return list(self.scopes) or self.row_names

    def defining_keys(self) -> set[str]:
        """Config keys that some row sets to define itself."""
        return {item.partition("=")[0].strip() for row in self.rows for item in row.overrides}

    def select(self, names: list[str] | None) -> Comparison:
        """The same comparison restricted to ``names`` (in the order given)."""
        if not names:
            return self
        by_name = {r.name: r for r in self.rows}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ConfigError(f"experiment {self.name}: unknown row(s) {unknown}; rows: {self.row_names}")
        if len(set(names)) != len(names):
            raise ConfigError(f"experiment {self.name}: rows {names} name a row twice")
        return dataclasses.replace(self, rows=tuple(by_name[n] for n in names),
                                   scopes=tuple(self.scope_names))


def model_comparison(name: str, title: str, models: list[str], reference: str) -> Comparison:
    """A comparison whose rows are plain zoo models (a row per model, named after it)."""
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown model(s) {unknown}; models: {sorted(MODELS)}")
    return Comparison(name, title, tuple(Row(m, m) for m in models), reference)


@dataclass(frozen=True)
class Overrides:
    """Command-line ``key=value`` items, sorted by scope (see the module docstring)."""

    common: tuple[str, ...] = ()
    scoped: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (row or model name, items)

    @classmethod
    def parse(cls, items: list[str], comparison: Comparison) -> Overrides:
        all_rows = comparison.scope_names
        defining = comparison.defining_keys()
        common: list[str] = []
        scoped: dict[str, list[str]] = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"override {item!r}: expected [ROW_OR_MODEL:]section.key=value")
            scope, colon, key = key.strip().rpartition(":")
            key = key.strip()
            if key in RUNNER_KEYS:
                raise ConfigError(f"override {item!r}: the experiment sets {key} itself (use --data"
                                  " for the dataset and --rows for the rows)")
            if colon and scope not in all_rows and scope not in MODELS:
                raise ConfigError(f"override {item!r}: {scope!r} is neither a row of"
                                  f" {comparison.name} ({all_rows}) nor a model ({sorted(MODELS)})")
            if colon and key == SEED_KEY:
                raise ConfigError(f"override {item!r}: every row shares the seeds; set {SEED_KEY}"
                                  " without a prefix (the first seed) and --seeds (how many)")
            row_scoped = colon and scope in all_rows and scope not in MODELS
            if key in defining and not row_scoped:
                raise ConfigError(f"override {item!r}: {comparison.name} sets {key} per row; write"
                                  f" ROW:{key}=... to change one row")
            if colon:
                scoped.setdefault(scope, []).append(f"{key}={value}")
            else:
                common.append(f"{key}={value}")
        return cls(tuple(common), tuple((k, tuple(v)) for k, v in scoped.items()))

    def for_scope(self, scope: str) -> tuple[str, ...]:
        return dict(self.scoped).get(scope, ())

    def row_items(self, row: Row) -> list[str]:
        """Every override of ``row``, in the order they apply (module docstring, steps 3-6)."""
        items = [*self.common, *self.for_scope(row.model_name), *row.overrides]
        if row.name != row.model_name:
            items += self.for_scope(row.name)
        return items


def base_seed(base: RunConfig, overrides: Overrides) -> int:
    """The first seed: the base config's ``train.seed`` after the common overrides."""
    return base.with_overrides(list(overrides.common)).train.seed


def row_config(base: RunConfig, row: Row, overrides: Overrides, processed_dir: str, seed: int
               ) -> RunConfig:
    """The full config of one (row, seed) run."""
    return base.with_overrides([
        *model_defaults(row.model_name),
        *overrides.row_items(row),
        f"model_name={row.model_name}",
        f"data.processed_dir={processed_dir}",
        f"{SEED_KEY}={seed}",
    ])


@dataclass
class ComparisonPlan:
    """Every (row, seed) run of a comparison with its full config, built before any training."""

    comparison: Comparison
    overrides: Overrides
    base: RunConfig
    data_dir: Path
    seeds: list[int]
    runs: list[tuple[Row, int, RunConfig]]

    @property
    def common(self) -> RunConfig:
        """The base config with the common overrides: evaluation settings and label column."""
        return self.base.with_overrides(list(self.overrides.common))

    def runs_of(self, row: str) -> list[tuple[Row, int, RunConfig]]:
        return [run for run in self.runs if run[0].name == row]


def plan_comparison(
    comparison: Comparison,
    data_dir: str | Path,
    *,
    seeds: int = 1,
    base_config: RunConfig | None = None,
    overrides: list[str] | None = None,
) -> ComparisonPlan:
    """The runs of ``comparison`` on ``data_dir``; a bad override fails here, at once."""
    base = base_config or RunConfig()
    scoped = Overrides.parse(list(overrides or []), comparison)
    if seeds < 1:
        raise ConfigError(f"seeds={seeds}: must be >= 1")
    first_seed = base_seed(base, scoped)
    seed_list = [first_seed + k for k in range(seeds)]
    runs = [(row, seed, row_config(base, row, scoped, str(data_dir), seed))
            for row in comparison.rows for seed in seed_list]
    return ComparisonPlan(comparison, scoped, base, Path(data_dir), seed_list, runs)
