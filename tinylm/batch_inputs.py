"""Token-id arguments of the model's methods (input_ids, labels, masks,
positions) as the core takes them; shared by tinylm.model and
tinylm.generate, which depend on it and not on each other."""
from __future__ import annotations

import numpy as np


def as_ids(array, name: str, shape: tuple | None = None) -> np.ndarray:
    """int32 [B, T] from a list, a 1-D sequence (one row) or an array."""
    out = np.asarray(array)
    if out.ndim == 1:
        out = out[None, :]
    if out.ndim != 2:
        raise ValueError(f"{name} must be [batch, seq_len], got shape {list(out.shape)}")
    if out.size and not np.issubdtype(out.dtype, np.integer) and not np.issubdtype(out.dtype, np.bool_):
        raise TypeError(f"{name} must hold integers, got {out.dtype}")
    if shape is not None and out.shape != shape:
        raise ValueError(f"{name} has shape {list(out.shape)} but input_ids has {list(shape)}")
    if out.shape[0] == 0 or out.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {list(out.shape)})")
    return np.ascontiguousarray(out, dtype=np.int32)
