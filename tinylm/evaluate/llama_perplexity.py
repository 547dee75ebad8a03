"""Perplexity as llama.cpp's llama-perplexity computes it, so a GGUF file
scored by tinylm and by llama.cpp gives comparable numbers (its default
mode, tools/perplexity/perplexity.cpp): the token ids cut into
len // n_ctx chunks of n_ctx tokens, each chunk's first token replaced by
BOS, each chunk evaluated on its own, and in each the logits at positions
n_ctx // 2 .. n_ctx - 2 scoring the next token (the first half is context
only); perplexity = exp(mean NLL over every scored token)."""
from __future__ import annotations

import math

import numpy as np

from tinylm.data.dataset import IGNORE


def llama_perplexity(model, ids, n_ctx: int, bos_token_id: int, batch_size: int = 4) -> dict:
    """{"perplexity", "nll", "tokens", "chunks"} of token ids (tokenized as
    llama-perplexity does: the text with BOS) under llama.cpp's chunking."""
    ids = np.asarray(ids, dtype=np.int64)
    n_chunks = len(ids) // n_ctx
    if n_ctx < 4 or n_chunks < 1:
        raise ValueError(f"llama_perplexity: {len(ids)} tokens make no chunk of n_ctx={n_ctx} (n_ctx >= 4)")
    chunks = ids[:n_chunks * n_ctx].reshape(n_chunks, n_ctx).copy()
    chunks[:, 0] = bos_token_id
    labels = chunks.copy()
    labels[:, :n_ctx // 2 + 1] = IGNORE  # logits i >= n_ctx // 2 score token i + 1
    nll, tokens = 0.0, 0
    for b in range(0, n_chunks, batch_size):
        loss = model.loss(chunks[b:b + batch_size], labels[b:b + batch_size])
        nll += float(loss) * model.last_num_tokens
        tokens += model.last_num_tokens
    return {"perplexity": math.exp(nll / tokens), "nll": nll / tokens, "tokens": tokens, "chunks": n_chunks}
