"""What each of the paper's experiments trains: its rows (grmodel/comparison/plan.py says how
command-line overrides reach each row's config).

table1's rows are the models, table3's the vocabulary kinds, table4's the CLEM ablations of
``CLEM_ABLATIONS``.
"""

from __future__ import annotations

from grmodel.comparison.plan import Comparison, Row
from grmodel.config import CLEM_ABLATIONS, ConfigError

# The paper's row order: baselines first, GR last; the GBDT, not in the paper, before GR.
TABLE1_MODELS = ("vr", "wlr", "d2q", "tpm", "cread", "gbdt", "gr")
TABLE3_VOCABS = ("manual", "binary", "dynamic_quantile")

EXPERIMENTS: dict[str, Comparison] = {
    "table1": Comparison(
        "table1", "GR against the baselines (the paper's Table 1)",
        tuple(Row(m, m) for m in TABLE1_MODELS), reference="gr",
    ),
    "table3": Comparison(
        "table3", "GR vocabularies (the paper's Table 3)",
        tuple(Row(kind, "gr", (f"vocab.kind={kind}",)) for kind in TABLE3_VOCABS),
        reference="dynamic_quantile",
    ),
    "table4": Comparison(
        "table4", "CLEM ablations (the paper's Table 4)",
        tuple(Row(name, "gr", tuple(items)) for name, items in CLEM_ABLATIONS.items()),
        reference="full",
    ),
}


def experiment_spec(name: str, rows: list[str] | None = None) -> Comparison:
    """The named experiment, optionally restricted to some of its rows."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; experiments: {list(EXPERIMENTS)}")
    return EXPERIMENTS[name].select(rows)
