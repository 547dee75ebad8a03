"""Micro-batches for the Trainer, grouped into optimizer steps, with a data
position that a checkpoint records and a resumed run starts from.

A tinylm.data.Dataset is served by its own seeded iterator, so a resumed run
sees exactly the batches an uninterrupted one would. Any other iterable of
batch dicts is re-iterated once per epoch, and a resumed run skips the
batches already used: that is exact only if every pass yields the same
batches in the same order (a list does; a generator can be passed once).
"""
from __future__ import annotations

import itertools

import numpy as np

from tinylm.data import Dataset

KEYS = ("input_ids", "labels", "attention_mask", "position_ids")


def as_batch(batch) -> dict:
    """A batch dict of int32 [B, T] arrays (a 1-D array is one row);
    input_ids and labels are required; a Dataset's row_ids (int64 [B]) are
    kept for an offline teacher cache."""
    if not isinstance(batch, dict):
        raise TypeError(f"a batch must be a dict of arrays, got {type(batch).__name__}")
    missing = [k for k in ("input_ids", "labels") if k not in batch]
    if missing:
        raise ValueError(f"a batch needs {missing[0]!r} (it has {sorted(batch)})")
    out = {k: np.atleast_2d(np.asarray(batch[k], dtype=np.int32)) for k in KEYS if batch.get(k) is not None}
    if batch.get("row_ids") is not None:
        out["row_ids"] = np.asarray(batch["row_ids"], dtype=np.int64).reshape(-1)
    return out


def label_count(batch: dict) -> int:
    """Tokens the loss counts in an as_batch() dict: labels[:, 1:] != -100
    (Hugging Face's shift)."""
    return int(np.count_nonzero(batch["labels"][:, 1:] != -100))


def input_count(batch: dict) -> int:
    """Non-padding input tokens (the throughput measure)."""
    mask = batch.get("attention_mask")
    return int(np.count_nonzero(mask)) if mask is not None else int(batch["input_ids"].size)


class BatchStream:
    """Endless micro-batches of `data` (epoch after epoch) from `start`,
    {"epoch", "batch"}, the position of the next micro-batch."""

    def __init__(self, data, batch_size: int, seed: int, start: dict | None = None):
        start = dict(start or {"epoch": 0, "batch": 0})
        self._dataset = data if isinstance(data, Dataset) else None
        if self._dataset is not None:
            self.per_epoch = -(-len(data) // batch_size)
            self._it = data.batches(batch_size, shuffle=True, seed=seed, epochs=None, start=start)
        else:
            self.per_epoch = len(data) if hasattr(data, "__len__") else None
            self._data, self._epoch, self._batch = data, int(start["epoch"]), int(start["batch"])
            self._it = itertools.islice(iter(data), self._batch, None)

    @property
    def position(self) -> dict:
        return self._it.position if self._dataset is not None else {"epoch": self._epoch, "batch": self._batch}

    def epoch_float(self) -> float:
        """Epochs done, with the fraction of the current one when its length is known."""
        pos = self.position
        return pos["epoch"] + (pos["batch"] / self.per_epoch if self.per_epoch else 0.0)

    def next_step(self, accumulation: int) -> list[dict]:
        """The micro-batches of one optimizer step: `accumulation` of them,
        fewer when the epoch ends first (as the Hugging Face Trainer does)."""
        out = []
        while len(out) < accumulation:
            batch = self._next()
            if batch is None:  # an iterable without len() ended its epoch
                if out:
                    break
                continue
            out.append(as_batch(batch))
            if self.position["batch"] == 0:
                break
        return out

    def _next(self):
        if self._dataset is not None:
            return next(self._it)
        try:
            batch = next(self._it)
        except StopIteration:
            if self._batch == 0:
                raise ValueError("train_data yielded no batches in an epoch (a generator can be iterated "
                                 "only once: pass a list or a tinylm.data.Dataset)") from None
            self._new_epoch()
            return None
        self._batch += 1
        if self._batch == self.per_epoch:
            self._new_epoch()
        return batch

    def _new_epoch(self) -> None:
        self._epoch, self._batch = self._epoch + 1, 0
        self._it = iter(self._data)
