"""Corpus metrics: perplexity, bits per byte and word perplexity of a text file.

The file is one document, encoded without special tokens and preceded by the
BOS id (EOS when there is none) so its first token is scored too, as
lm-evaluation-harness' rolling log-likelihood does. Every token is then
scored exactly once, in windows of at most `window` tokens fed to the model:

- disjoint (the default, stride = window - 1): each window scores the tokens
  after its first; consecutive windows share one token, the previous
  window's last, as context (the harness' rolling windows);
- stride s < window - 1: each window scores s new tokens, each with at
  least window - s earlier tokens as context (fewer at the start of the
  file): a sliding window, as in transformers' perplexity guide, but every
  token scored exactly once.

With LL the summed log-likelihood (natural log): perplexity =
exp(-LL / tokens), word_perplexity = exp(-LL / words), byte_perplexity =
exp(-LL / bytes), bits_per_byte = -LL / bytes / ln 2; words are
len(re.split(r"\\s+", text)) and bytes the UTF-8 length, as the harness
counts them.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import numpy as np

from tinylm.evaluate.choice import prefix_token_id

DEFAULT_MAX_WINDOW = 2048


def windows(n_targets: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, first, end) per window over a sequence of n_targets + 1 tokens:
    the model reads tokens [start, end) and tokens [first, end) are scored
    (each from the token before it)."""
    if window < 2:
        raise ValueError(f"window must be >= 2 tokens, got {window}")
    if not 1 <= stride <= window - 1:
        raise ValueError(f"stride must be in [1, window - 1 = {window - 1}], got {stride}")
    out = []
    for first in range(1, n_targets + 1, stride):
        end = min(first + stride, n_targets + 1)
        out.append((max(0, end - window), first, end))
    return out


def default_window(config: dict) -> int:
    return min(int(config.get("max_position_embeddings") or DEFAULT_MAX_WINDOW), DEFAULT_MAX_WINDOW)


def corpus_tokens(tok, text: str) -> list[int]:
    """The scored sequence: the prefix id, then the text's tokens."""
    return [prefix_token_id(tok)] + [int(i) for i in tok.encode(text, add_special_tokens=False)]


@dataclass
class Corpus:
    """A text file made ready for scoring: its token sequence and windows."""
    path: str
    text: str
    seq: list[int]
    window: int
    stride: int
    spans: list[tuple[int, int, int]]


def load_corpus(model, tok, path: str | os.PathLike, window: int | None = None, stride: int | None = None) -> Corpus:
    """Reads and tokenizes a UTF-8 text file; window defaults to the model's
    max_position_embeddings (at most 2048), stride to window - 1."""
    path = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not text.strip():
        raise ValueError(f"{path}: the corpus is empty")
    window = window or default_window(model.config)
    stride = stride or window - 1
    seq = corpus_tokens(tok, text)
    return Corpus(path, text, seq, window, stride, windows(len(seq) - 1, window, stride))


def corpus_loglikelihood(model, corpus: Corpus, batch_size: int = 1, progress=None) -> float:
    """Summed log-likelihood of every scored token; windows of equal length
    are batched. progress(n) is called after each batch of n windows."""
    total = 0.0
    by_len: dict[int, list] = {}
    for span in corpus.spans:
        by_len.setdefault(span[2] - span[0], []).append(span)
    for group in by_len.values():
        for i in range(0, len(group), batch_size):
            batch = group[i:i + batch_size]
            ids = np.array([corpus.seq[s:e] for s, _, e in batch], dtype=np.int32)
            labels = ids.copy()
            for row, (s, first, _) in enumerate(batch):
                labels[row, :first - s] = -100
            total += float(model.token_logprobs(ids, labels).astype(np.float64).sum())
            if progress is not None:
                progress(len(batch))
    return total


def corpus_metrics(model, corpus: Corpus, batch_size: int = 1, progress=None) -> dict:
    """Perplexity, bits per byte and word perplexity of a loaded corpus."""
    ll = corpus_loglikelihood(model, corpus, batch_size, progress)
    text = corpus.text
    n_tokens, n_bytes, n_words = len(corpus.seq) - 1, len(text.encode("utf-8")), len(re.split(r"\s+", text))
    return {
        "path": corpus.path, "window": corpus.window, "stride": corpus.stride, "tokens": n_tokens, "bytes": n_bytes,
        "words": n_words, "loglikelihood": ll, "perplexity": math.exp(-ll / n_tokens),
        "word_perplexity": math.exp(-ll / n_words), "byte_perplexity": math.exp(-ll / n_bytes),
        "bits_per_byte": -ll / n_bytes / math.log(2),
    }
