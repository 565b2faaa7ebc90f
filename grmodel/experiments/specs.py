"""What each experiment trains: its rows, and how command-line overrides reach each row's config.

An experiment is a list of rows (the lines of the paper's table). A row names a zoo model and the
overrides that define it: table1's rows are the models, table3's the vocabulary kinds, table4's
the CLEM ablations of ``CLEM_ABLATIONS``. A row's config is built, later items winning, from

1. the base config (``--config FILE`` or the library defaults),
2. the common ``key=value`` overrides (every row),
3. the ``MODEL:key=value`` overrides of the row's model (``tpm:head.tpm_w_var=0.1``),
4. the row's defining overrides (``vocab.kind=manual``),
5. the ``ROW:key=value`` overrides of that row (``manual:train.lr=1e-3``),

then the runner sets the dataset and the seed. A common or model-scoped override may not touch a
key that defines rows (it would silently turn the experiment into copies of one row), and seeds
are shared by every row so that rows are compared seed by seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from grmodel.config import CLEM_ABLATIONS, ConfigError, RunConfig

# Keys the runner sets itself (--data, the row's model).
RUNNER_KEYS = ("model_name", "data.processed_dir")
SEED_KEY = "train.seed"


@dataclass(frozen=True)
class Row:
    """One line of an experiment's table."""

    name: str  # the row label and its run directory name
    model_name: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    rows: tuple[Row, ...]
    reference: str  # the row every other row is compared with (the paper's method)

    @property
    def row_names(self) -> list[str]:
        return [r.name for r in self.rows]

    def defining_keys(self) -> set[str]:
        """Config keys that some row sets to define itself."""
        return {item.partition("=")[0].strip() for row in self.rows for item in row.overrides}

    def select(self, names: list[str] | None) -> Experiment:
        """The same experiment restricted to ``names`` (in the order given)."""
        if not names:
            return self
        by_name = {r.name: r for r in self.rows}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ConfigError(f"experiment {self.name}: unknown row(s) {unknown}; rows: {self.row_names}")
        if len(set(names)) != len(names):
            raise ConfigError(f"experiment {self.name}: rows {names} name a row twice")
        return dataclasses.replace(self, rows=tuple(by_name[n] for n in names))


# The paper's row order: baselines first, GR last.
TABLE1_MODELS = ("vr", "wlr", "d2q", "tpm", "cread", "gr")
TABLE3_VOCABS = ("manual", "binary", "dynamic_quantile")

EXPERIMENTS: dict[str, Experiment] = {
    "table1": Experiment(
        "table1", "GR against the baselines (the paper's Table 1)",
        tuple(Row(m, m) for m in TABLE1_MODELS), reference="gr",
    ),
    "table3": Experiment(
        "table3", "GR vocabularies (the paper's Table 3)",
        tuple(Row(kind, "gr", (f"vocab.kind={kind}",)) for kind in TABLE3_VOCABS),
        reference="dynamic_quantile",
    ),
    "table4": Experiment(
        "table4", "CLEM ablations (the paper's Table 4)",
        tuple(Row(name, "gr", tuple(items)) for name, items in CLEM_ABLATIONS.items()),
        reference="full",
    ),
}


def experiment_spec(name: str, rows: list[str] | None = None) -> Experiment:
    """The named experiment, optionally restricted to some of its rows."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; experiments: {list(EXPERIMENTS)}")
    return EXPERIMENTS[name].select(rows)


@dataclass(frozen=True)
class Overrides:
    """Command-line ``key=value`` items, sorted by scope (see the module docstring)."""

    common: tuple[str, ...] = ()
    scoped: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (row or model name, items)

    @classmethod
    def parse(cls, items: list[str], experiment: Experiment) -> Overrides:
        from grmodel.models import MODELS  # here, so the command line's --help needs no torch

        all_rows = EXPERIMENTS[experiment.name].row_names
        defining = experiment.defining_keys()
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
                                  f" {experiment.name} ({all_rows}) nor a model ({sorted(MODELS)})")
            if colon and key == SEED_KEY:
                raise ConfigError(f"override {item!r}: every row shares the seeds; set {SEED_KEY}"
                                  " without a prefix (the first seed) and --seeds (how many)")
            row_scoped = colon and scope in all_rows and scope not in MODELS
            if key in defining and not row_scoped:
                raise ConfigError(f"override {item!r}: {experiment.name} sets {key} per row; write"
                                  f" ROW:{key}=... to change one row")
            if colon:
                scoped.setdefault(scope, []).append(f"{key}={value}")
            else:
                common.append(f"{key}={value}")
        return cls(tuple(common), tuple((k, tuple(v)) for k, v in scoped.items()))

    def for_scope(self, scope: str) -> tuple[str, ...]:
        return dict(self.scoped).get(scope, ())

    def row_items(self, row: Row) -> list[str]:
        """Every override of ``row``, in the order they apply (module docstring, steps 2-5)."""
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
        *overrides.row_items(row),
        f"model_name={row.model_name}",
        f"data.processed_dir={processed_dir}",
        f"{SEED_KEY}={seed}",
    ])
