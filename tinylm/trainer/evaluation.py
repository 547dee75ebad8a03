"""Validation loss and perplexity over a whole eval set.

The loss is the token-weighted mean over every labelled token of the set,
so perplexity = exp(loss) is the set's perplexity, whatever the batching.
"""
from __future__ import annotations

import math

import numpy as np

from tinylm.data import Dataset
from tinylm.trainer.batches import as_batch, label_count

# Bytes of logits one forward() may materialise on the dropout-free path.
_LOGITS_BUDGET = 64 << 20


def eval_batches(data, batch_size: int):
    """One pass over the eval set, in order."""
    if isinstance(data, Dataset):
        return data.batches(batch_size, shuffle=False, epochs=1)
    return iter(data)


def evaluate(model, data, batch_size: int) -> dict:
    """{"eval_loss", "eval_ppl", "eval_tokens"} of `model` on `data`.

    Model.loss() applies the active adapter's LoRA dropout (it is the
    training loss), so with dropout > 0 the loss is computed from forward()
    logits instead, which never drop out. Either way the model's RNG counter
    is left as it was, so evaluating does not change later dropout masks.
    """
    counter = model._core.rng_counter()
    dropout = _lora_dropout(model)
    total, tokens = 0.0, 0
    try:
        for raw in eval_batches(data, batch_size):
            batch = as_batch(raw)
            n = label_count(batch)
            if n == 0:
                continue
            if dropout:
                total += _forward_nll(model, batch)
            else:
                total += model.loss(batch["input_ids"], batch["labels"], batch.get("attention_mask"),
                                    batch.get("position_ids")) * n
            tokens += n
    finally:
        model._core.rng_counter(counter)
    if tokens == 0:
        raise ValueError("eval_data has no labelled tokens (every label is -100, or it yielded no batches)")
    loss = total / tokens
    return {"eval_loss": loss, "eval_ppl": math.exp(loss) if loss < 700 else math.inf, "eval_tokens": tokens}


def _lora_dropout(model) -> float:
    # The adapter's dropout is not exposed by Model's public surface yet.
    name = model.active_adapter
    return float(model._adapters[name][1].lora_dropout) if name is not None else 0.0


def _forward_nll(model, batch: dict) -> float:
    """Summed cross-entropy of the labelled tokens, from forward() logits,
    a few rows at a time so the [rows, T, V] logits stay within budget."""
    ids, labels = batch["input_ids"], batch["labels"]
    B, T = ids.shape
    rows = max(1, _LOGITS_BUDGET // (T * model.config["vocab_size"] * 4))
    total = 0.0
    for r in range(0, B, rows):
        part = slice(r, r + rows)
        logits = model.forward(ids[part], _rows(batch, "attention_mask", part), _rows(batch, "position_ids", part))
        targets = labels[part, 1:]
        keep = targets != -100
        picked = logits[:, :-1][keep].astype(np.float64)          # [n, V]
        top = picked.max(axis=1, keepdims=True)
        lse = np.log(np.exp(picked - top).sum(axis=1)) + top[:, 0]
        total += float((lse - picked[np.arange(len(picked)), targets[keep]]).sum())
    return total


def _rows(batch: dict, key: str, part: slice):
    return batch[key][part] if key in batch else None
