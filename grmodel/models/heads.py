"""What the five baselines share, so that only their output heads and losses differ.

* :class:`BaselineModel`: GR's field embeddings → an MLP backbone (``mlp`` + ReLU) → one
  linear layer with as many outputs as the head needs. Optionally the row's duration group
  (D2Q, TPM's per-duration leaves) is embedded and fed to the backbone beside the fields.
* Head options: each baseline reads a small frozen dataclass from ``config.head``. Keys are
  ``<model>_<option>`` (``cread_M=50``, ``tpm_depth=5``) or a shared option such as
  ``duration_field``; a key naming another zoo model is left to that model, anything else is
  rejected. The parsed options go into the label state, so a checkpoint records (and is
  rebuilt with) the options it was trained with.
* Duration groups: K equal-frequency groups of a categorical duration-bucket field's ids over
  the training rows, plus per-group quantile tables.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from grmodel.config import ConfigError, RunConfig, _coerce
from grmodel.features import FIRST_KNOWN_ID, FeatureSchema
from grmodel.models.base import WatchTimeModel
from grmodel.models.embedding import ENCODER_POOLING, FieldEmbedding, mlp

# Every model of the zoo: a head key with one of these prefixes belongs to that model.
ZOO_NAMES = ("gr", "vr", "wlr", "d2q", "tpm", "cread", "gbdt")
# Unprefixed head keys, used by every baseline whose options have a field of that name.
SHARED_OPTIONS = ("duration_field",)
DEFAULT_DURATION_FIELD = "item_duration_bucket"


def parse_head_options(options_cls: type, model_name: str, head: dict[str, Any]) -> Any:
    """The ``options_cls`` instance for ``model_name`` from ``config.head`` (types checked)."""
    hints = typing.get_type_hints(options_cls)
    fields = [f.name for f in dataclasses.fields(options_cls)]
    values: dict[str, Any] = {}
    for key, value in head.items():
        prefix, _, option = key.partition("_")
        if key in SHARED_OPTIONS:
            if key in fields:
                values[key] = _coerce(hints[key], value, f"head.{key}")
            continue
        if prefix == model_name and option in fields:
            values[option] = _coerce(hints[option], value, f"head.{key}")
        elif prefix not in ZOO_NAMES or prefix == model_name:
            known = sorted(f"{model_name}_{name}" for name in fields if name not in SHARED_OPTIONS)
            raise ConfigError(
                f"config head.{key}: not an option of model {model_name!r} (its options: "
                f"{known}; shared: {list(SHARED_OPTIONS)}; rule: head keys are <model>_<option>)"
            )
    return options_cls(**values)


def check_option(ok: bool, model_name: str, option: str, value: Any, rule: str) -> None:
    """Raise a ConfigError naming ``head.<model>_<option>`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"config head.{model_name}_{option}={value!r}: {rule}")


# -- duration groups ------------------------------------------------------------------------
def duration_field_index(schema: FeatureSchema, field_name: str) -> int:
    """Column of the duration-bucket field in the schema's id arrays."""
    if field_name not in schema.names:
        raise ValueError(
            f"duration field {field_name!r} is not in the feature schema (fields: {schema.names});"
            " set head.duration_field to the item duration bucket field the ingest wrote"
        )
    return schema.names.index(field_name)


def fit_duration_groups(bucket_ids: np.ndarray, cardinality: int, n_groups: int) -> list[int]:
    """Group of every bucket id: ``n_groups`` equal-frequency groups of the training rows.

    Buckets are kept whole and in id order (the ingest numbers duration buckets in duration
    order), so with at least as many groups as buckets each bucket is its own group. Groups
    that would be empty are dropped, so the number of groups G may be below ``n_groups``.
    Ids without training rows (missing, out-of-vocabulary, unused) get the fallback group G,
    whose tables are fitted on all training rows.
    """
    counts = np.bincount(bucket_ids, minlength=cardinality)[:cardinality]
    seen = np.flatnonzero(counts)
    seen = seen[seen >= FIRST_KNOWN_ID]
    if len(seen) == 0:
        return [0] * cardinality  # no known bucket: everything is the fallback group
    weight = counts[seen]
    centre = (np.cumsum(weight) - weight / 2) / weight.sum()  # each bucket's middle row
    raw = np.minimum((centre * n_groups).astype(np.int64), n_groups - 1)
    _, groups = np.unique(raw, return_inverse=True)  # renumbered 0..G-1, in duration order
    group_of_id = np.full(cardinality, groups.max() + 1, dtype=np.int64)
    group_of_id[seen] = groups
    return group_of_id.tolist()


def grouped_quantiles(labels: np.ndarray, groups: np.ndarray, n_groups: int,
                      levels: np.ndarray) -> np.ndarray:
    """Quantile tables [n_groups + 1, len(levels)]: one per group (each has training rows, by
    construction), then one over all rows for the fallback group."""
    tables = [np.quantile(labels[groups == g], levels) for g in range(n_groups)]
    return np.stack([*tables, np.quantile(labels, levels)])


def row_groups(
    train_ids: np.ndarray | None, schema: FeatureSchema | None, field_name: str, n_groups: int,
    model_name: str,
) -> tuple[list[int], np.ndarray, int]:
    """(group_of_id, each training row's group, G) for a model that needs duration groups."""
    if train_ids is None or schema is None:
        raise ValueError(
            f"{model_name}: duration groups need the training feature ids; the trainer must call"
            " fit_label_state(train_labels, config, train_ids=..., schema=...)"
        )
    column = duration_field_index(schema, field_name)
    cardinality = schema.fields[column].cardinality
    group_of_id = fit_duration_groups(train_ids[:, column], cardinality, n_groups)
    # The fallback group's index is the number of real groups.
    return group_of_id, np.asarray(group_of_id)[train_ids[:, column]], max(group_of_id)


class DurationGroups(nn.Module):
    """Maps a row's duration-bucket id to its group and embeds the group as a model input."""

    def __init__(self, schema: FeatureSchema, field_name: str, group_of_id: list[int], dim: int):
        super().__init__()
        self.column = duration_field_index(schema, field_name)
        self.register_buffer("group_of_id", torch.tensor(group_of_id, dtype=torch.long),
                             persistent=False)
        self.embedding = nn.Embedding(max(group_of_id) + 1, dim)

    def group(self, ids: torch.Tensor) -> torch.Tensor:
        """Group index per row, [B]; the fallback group for ids unseen in training."""
        return self.group_of_id[ids[:, self.column]]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.group(ids))


# -- the shared model body ------------------------------------------------------------------
class BaselineModel(WatchTimeModel):
    """Embeddings → MLP backbone → ``n_outputs`` linear outputs; subclasses add head and loss.

    Subclasses set ``Options`` (a frozen dataclass) and call ``options_state`` in their
    ``fit_label_state``; ``__init__`` rebuilds the options from the label state.
    """

    Options: ClassVar[type]

    @classmethod
    def parse_options(cls, config: RunConfig) -> Any:
        return parse_head_options(cls.Options, cls.name, config.head)

    @classmethod
    def options_state(cls, options: Any) -> dict[str, Any]:
        return {"options": dataclasses.asdict(options)}

    @classmethod
    def fit_label_state(
        cls, train_labels: np.ndarray, config: RunConfig,
        train_ids: np.ndarray | None = None, schema: FeatureSchema | None = None,
    ) -> dict[str, Any]:
        return cls.options_state(cls.parse_options(config))

    @classmethod
    def label_state_fields(cls, config: RunConfig) -> tuple[str, ...]:
        field_name = getattr(cls.parse_options(config), "duration_field", None)
        return (field_name,) if field_name else ()

    def __init__(
        self, schema: FeatureSchema, config: RunConfig, label_state: dict[str, Any],
        n_outputs: int, group_of_id: list[int] | None = None,
    ):
        super().__init__(schema, config, label_state)
        self.options = self.Options(**label_state["options"])
        mc = config.model
        self.embedding = FieldEmbedding(schema, mc.emb_dim, ENCODER_POOLING[mc.encoder])
        self.duration: DurationGroups | None = None
        in_dim = self.embedding.out_dim
        if group_of_id is not None:
            self.duration = DurationGroups(schema, self.options.duration_field, group_of_id,
                                           mc.emb_dim)
            in_dim += mc.emb_dim
        self.backbone = nn.Sequential(
            mlp(in_dim, mc.encoder_hidden, mc.encoder_hidden, mc.dropout), nn.ReLU()
        )
        self.head = nn.Linear(mc.encoder_hidden, n_outputs)
        # GR's initialisation of the shared embedding tables; linear layers keep torch's.
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                nn.init.uniform_(module.weight, -mc.init_range, mc.init_range)

    def outputs(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Raw head outputs, [B, n_outputs], float32 (also under bf16 autocast)."""
        x = self.embedding(ids, mask)
        if self.duration is not None:
            x = torch.cat([x, self.duration(ids)], dim=-1)
        return self.head(self.backbone(x)).float()
