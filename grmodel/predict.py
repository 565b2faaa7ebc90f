"""Batch prediction over arrays or DataFrames, for any model in the zoo."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from grmodel.distributed import autocast
from grmodel.models import WatchTimeModel


@torch.no_grad()
def predict_arrays(
    model: WatchTimeModel,
    ids: np.ndarray,
    mask: np.ndarray,
    batch_size: int = 4096,
    progress: bool = False,
) -> np.ndarray:
    """Predictions (float64, label units) for feature arrays from ``FeatureSchema.arrays``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = np.empty(len(ids), dtype=np.float64)
    starts = range(0, len(ids), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="predict", unit="batch")
    use_amp = model.config.train.amp_bf16
    for start in starts:
        stop = start + batch_size
        batch_ids = torch.as_tensor(ids[start:stop], device=device, dtype=torch.long)
        batch_mask = torch.as_tensor(mask[start:stop], device=device, dtype=torch.float32)
        with autocast(device, use_amp):
            out[start:stop] = model.predict(batch_ids, batch_mask).float().cpu().numpy()
    model.train(was_training)
    return out


def predict_frame(
    model: WatchTimeModel, frame: pd.DataFrame, batch_size: int = 4096, progress: bool = False
) -> np.ndarray:
    """Predictions for a DataFrame holding the model's feature columns."""
    ids, mask = model.schema.arrays(frame)
    return predict_arrays(model, ids, mask, batch_size=batch_size, progress=progress)
