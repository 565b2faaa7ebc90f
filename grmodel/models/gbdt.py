"""A gradient-boosted tree baseline (LightGBM): what a practitioner fits first on a table.

The L1 objective learns the conditional median, the point MAE rewards; every processed id
column is a categorical feature (its ids are categories, not numbers: id 0 "missing" and 1
"unseen" are categories of their own); the validation split stops the boosting when its MAE
has not improved for ``head.gbdt_early_stop`` rounds, and the model keeps the best round.
The learning rate is ``train.lr`` (so the tuning grid and ``--tune`` treat it as every other
model's) and the seed ``train.seed``; the rest are ``head.gbdt_<option>`` (:class:`GBDTOptions`).

The fitted model is LightGBM's own text format (``model.txt`` in a checkpoint, digested in
``checkpoint.json`` like ``model.pt``): LightGBM parses it, nothing is unpickled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

from grmodel.config import RunConfig
from grmodel.features import FeatureSchema
from grmodel.models.base import ArrayModel
from grmodel.models.heads import check_option, parse_head_options


@dataclass(frozen=True)
class GBDTOptions:
    """``head.gbdt_leaves`` (63) leaves per tree, at least ``gbdt_min_leaf_rows`` (20) rows
    per leaf; ``gbdt_rounds`` (5000) rounds at most, stopped after ``gbdt_early_stop`` (100)
    rounds without a validation gain; each round bags ``gbdt_bagging`` (0.9) of the rows;
    ``gbdt_threads`` (1) threads: the result depends on it (LightGBM sums histograms per
    thread), so it is an option of the model, not of the machine."""

    leaves: int = 63
    min_leaf_rows: int = 20
    rounds: int = 5000
    early_stop: int = 100
    bagging: float = 0.9
    threads: int = 1


class GBDTModel(ArrayModel):
    name = "gbdt"
    weights_file = "model.txt"

    @classmethod
    def fit_label_state(
        cls,
        train_labels: np.ndarray,
        config: RunConfig,
        train_ids: np.ndarray | None = None,
        schema: FeatureSchema | None = None,
    ) -> dict[str, Any]:
        return {"options": asdict(parse_options(config))}

    def __init__(self, schema: FeatureSchema, config: RunConfig, label_state: dict[str, Any]):
        super().__init__(schema, config, label_state)
        self.options = GBDTOptions(**label_state["options"])
        self.booster: lgb.Booster | None = None

    def params(self) -> dict[str, Any]:
        """LightGBM's parameters of this model (deterministic for the same data and options)."""
        o, tc = self.options, self.config.train
        return {
            "objective": "l1", "metric": "l1", "learning_rate": tc.lr,
            "num_leaves": o.leaves, "min_data_in_leaf": o.min_leaf_rows,
            "bagging_fraction": o.bagging, "bagging_freq": 1 if o.bagging < 1.0 else 0,
            "seed": tc.seed, "num_threads": o.threads, "deterministic": True,
            "force_row_wise": True, "verbosity": -1,
        }

    def fit(self, train_ids: np.ndarray, train_label: np.ndarray, valid_ids: np.ndarray,
            valid_label: np.ndarray) -> list[float]:
        categorical = list(range(len(self.schema.fields)))
        names = self.schema.names
        train = lgb.Dataset(train_ids, train_label, feature_name=names,
                            categorical_feature=categorical, free_raw_data=True)
        valid = lgb.Dataset(valid_ids, valid_label, reference=train)
        scores: dict[str, Any] = {}
        self.booster = lgb.train(
            self.params(), train, num_boost_round=self.options.rounds, valid_sets=[valid],
            valid_names=["valid"],
            callbacks=[lgb.early_stopping(self.options.early_stop, verbose=False),
                       lgb.record_evaluation(scores)],
        )
        return [float(v) for v in scores["valid"]["l1"]]

    @property
    def kept_steps(self) -> int:
        booster = self._fitted()
        # A fit that stopped early knows its best round; a loaded model (-1) holds only those.
        return booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()

    def predict_ids(self, ids: np.ndarray, steps: int | None = None) -> np.ndarray:
        booster = self._fitted()
        pred = booster.predict(np.asarray(ids, dtype=np.float64), num_iteration=steps or self.kept_steps,
                               num_threads=self.options.threads)
        return np.maximum(np.asarray(pred, dtype=np.float64), 0.0)

    def staged_predictions(self, ids: np.ndarray, steps: list[int]) -> list[np.ndarray]:
        """Each stage adds its rounds' trees to the previous stage's raw score (the L1 objective's
        raw score is the prediction), so the history costs one prediction of the whole model."""
        booster, x = self._fitted(), np.asarray(ids, dtype=np.float64)
        raw, done, out = np.zeros(len(x)), 0, []
        for step in steps:
            if step > done:
                raw = raw + booster.predict(x, start_iteration=done, num_iteration=step - done,
                                            raw_score=True, num_threads=self.options.threads)
                done = step
            out.append(np.maximum(raw, 0.0))
        return out

    def to_text(self) -> str:
        return self._fitted().model_to_string(num_iteration=self.kept_steps)

    def load_text(self, text: str) -> None:
        self.booster = lgb.Booster(model_str=text)

    def _fitted(self) -> lgb.Booster:
        if self.booster is None:
            raise RuntimeError("gbdt: the model has not been fitted or loaded")
        return self.booster


def parse_options(config: RunConfig) -> GBDTOptions:
    options = parse_head_options(GBDTOptions, GBDTModel.name, config.head)
    for option in ("leaves", "min_leaf_rows", "rounds", "early_stop", "threads"):
        value = getattr(options, option)
        check_option(value >= 1 and not (option == "leaves" and value < 2), "gbdt", option, value,
                     "must be >= 1 (leaves >= 2)")
    check_option(0.0 < options.bagging <= 1.0, "gbdt", "bagging", options.bagging,
                 "must be in (0, 1]")
    return options
