"""Field embeddings with masked mean pooling per side, shared by GR and every baseline."""

from __future__ import annotations

import torch
from torch import nn

from grmodel.features import FeatureSchema


class FieldEmbedding(nn.Module):
    """Embeds every categorical field, mean-pools user and item fields under their masks.

    All tables live in one ``nn.Embedding`` with per-field row offsets, so a batch needs a
    single lookup. Fields that name the same ``table`` (item tags) share rows. The output is
    ``[user_pool, item_pool]``, shape ``[B, 2 * emb_dim]``.
    """

    def __init__(self, schema: FeatureSchema, emb_dim: int):
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
        sides = torch.tensor([[f.side == "user", f.side == "item"] for f in schema.fields])
        self.register_buffer("side_onehot", sides.float(), persistent=False)  # [F, 2]
        self.out_dim = 2 * emb_dim

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        vectors = self.table(ids + self.offsets)  # [B, F, D]
        # weights[b, f, s] = mask[b, f] if field f is on side s
        weights = mask.unsqueeze(-1) * self.side_onehot  # [B, F, 2]
        pooled = torch.einsum("bfs,bfd->bsd", weights, vectors)
        counts = weights.sum(dim=1).clamp_min(1.0).unsqueeze(-1)  # [B, 2, 1]
        return (pooled / counts).flatten(1)


def mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    """The FFN used as GR's encoder and as the baselines' backbone: in -> hidden -> out."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, out_dim),
    )
