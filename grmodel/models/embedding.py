"""Field embeddings with masked mean pooling per side (the paper) or per field, shared by GR and
every baseline."""

from __future__ import annotations

import torch
from torch import nn

from grmodel.features import FeatureSchema

# How field embeddings are grouped before the FFN (``model.encoder``): "ffn", the paper's, mean-
# pools the user fields and the item fields into two vectors; "field_ffn" gives every embedding
# table its own slot (fields sharing a table, the item tags, pooled into it), so the FFN sees each
# field apart and can learn how they interact (docs/deviations.md).
ENCODER_POOLING = {"ffn": "side", "field_ffn": "table"}


class FieldEmbedding(nn.Module):
    """Embeds every categorical field and mean-pools the fields of each group under their masks:
    groups are the two sides (``pooling="side"``, user then item) or the embedding tables
    (``"table"``, in schema order).

    All tables live in one ``nn.Embedding`` with per-field row offsets, so a batch needs a
    single lookup. Fields that name the same ``table`` (item tags) share rows. The output is the
    groups' vectors side by side, shape ``[B, groups * emb_dim]``.
    """

    def __init__(self, schema: FeatureSchema, emb_dim: int, pooling: str = "side"):
        super().__init__()
        table_rows = schema.tables()
        table_offset: dict[str, int] = {}
        total = 0
        for table, rows in table_rows.items():
            table_offset[table] = total
            total += rows
        self.table = nn.Embedding(total, emb_dim)
        self.register_buffer(
            "offsets",
            torch.tensor([table_offset[f.table_name] for f in schema.fields], dtype=torch.long),
            persistent=False,
        )
        if pooling == "side":
            groups = torch.tensor([[f.side == "user", f.side == "item"] for f in schema.fields])
        elif pooling == "table":
            names = list(table_rows)
            groups = torch.tensor([[f.table_name == name for name in names] for f in schema.fields])
        else:
            raise ValueError(f"pooling {pooling!r}: expected one of 'side', 'table'")
        self.register_buffer("group_onehot", groups.float(), persistent=False)  # [F, G]
        self.out_dim = groups.shape[1] * emb_dim

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        vectors = self.table(ids + self.offsets)  # [B, F, D]
        # weights[b, f, g] = mask[b, f] if field f is in group g
        weights = mask.unsqueeze(-1) * self.group_onehot  # [B, F, G]
        pooled = torch.einsum("bfg,bfd->bgd", weights, vectors)
        counts = weights.sum(dim=1).clamp_min(1.0).unsqueeze(-1)  # [B, G, 1]
        return (pooled / counts).flatten(1)


def mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    """The FFN used as GR's encoder and as the baselines' backbone: in -> hidden -> out."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, out_dim),
    )
