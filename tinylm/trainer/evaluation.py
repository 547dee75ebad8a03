"""Validation loss and perplexity over a whole eval set.

The loss is the token-weighted mean over every labelled token of the set,
so perplexity = exp(loss) is the set's perplexity, whatever the batching.
"""
from __future__ import annotations

import math

from tinylm.data import Dataset
from tinylm.trainer.batches import as_batch, label_count

def eval_batches(data, batch_size: int):
    """One pass over the eval set, in order."""
    if isinstance(data, Dataset):
        return data.batches(batch_size, shuffle=False, epochs=1)
    return iter(data)


def evaluate(model, data, batch_size: int) -> dict:
    """{"eval_loss", "eval_ppl", "eval_tokens"} of `model` on `data`, in
    evaluation mode (no dropout, no dropout masks drawn, so the run's later
    masks are the same with or without evaluations)."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    try:
        for raw in eval_batches(data, batch_size):
            batch = as_batch(raw)
            n = label_count(batch)
            if n == 0:
                continue
            total += model.loss(batch["input_ids"], batch["labels"], batch.get("attention_mask"),
                                batch.get("position_ids")) * n
            tokens += n
    finally:
        model.train(was_training)
    if tokens == 0:
        raise ValueError("eval_data has no labelled tokens (every label is -100, or it yielded no batches)")
    loss = total / tokens
    return {"eval_loss": loss, "eval_ppl": math.exp(loss) if loss < 700 else math.inf, "eval_tokens": tokens}
