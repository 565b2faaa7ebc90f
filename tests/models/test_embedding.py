"""Field embeddings pooled per side (the paper's encoder) or kept one slot per table."""

from __future__ import annotations

import torch

from grmodel.features import FeatureSchema, FieldSpec
from grmodel.models.embedding import FieldEmbedding

SCHEMA = FeatureSchema((
    FieldSpec("user_id", "user", 5), FieldSpec("age", "user", 4),
    FieldSpec("item_id", "item", 6), FieldSpec("tag_0", "item", 7, "tag_0_mask", "tag"),
    FieldSpec("tag_1", "item", 7, "tag_1_mask", "tag"),
))


def test_per_table_slots_keep_fields_apart_and_pool_a_shared_table():
    torch.manual_seed(0)
    side = FieldEmbedding(SCHEMA, 3, "side")
    table = FieldEmbedding(SCHEMA, 3, "table")
    table.load_state_dict(side.state_dict())  # the same parameters: only the pooling differs
    ids = torch.tensor([[2, 3, 4, 5, 6], [2, 3, 4, 5, 0]])
    mask = (ids != 0).float()
    assert side(ids, mask).shape == (2, 6) and table(ids, mask).shape == (2, 12)  # 4 tables
    rows = table.table.weight[ids + table.offsets]  # [B, F, D]
    out = table(ids, mask).view(2, 4, 3)
    torch.testing.assert_close(out[:, 0], rows[:, 0])  # user_id alone in its slot
    torch.testing.assert_close(out[:, 2], rows[:, 2])
    torch.testing.assert_close(out[0, 3], (rows[0, 3] + rows[0, 4]) / 2)  # the tags, pooled
    torch.testing.assert_close(out[1, 3], rows[1, 3])  # a missing tag is masked out
    # The paper's pooling: the user side is the mean of its two fields.
    torch.testing.assert_close(side(ids, mask).view(2, 2, 3)[:, 0], (rows[:, 0] + rows[:, 1]) / 2)
