"""Offline distillation: a teacher's top-k next-token log-probabilities at
every labelled position of a Dataset, computed once into an HDF5 file
(build_teacher_cache, `tinylm distill cache`) and read in step with the
data while training (TeacherCache, `Trainer(teacher=TeacherCache(...))`).

The file (csrc/io/hdf5_topk.c) holds row r of the dataset as the positions
t with labels[t + 1] != -100, in order: the positions the loss reads. Its
manifest records what made it: the teacher (name, weights hash), the
tokenizer's fingerprint, the dataset's fingerprint (source files, layout
and row order), seq_len, k and the temperature of the stored log-probs. A
cache is refused, naming the field, for data, a tokenizer or a seq_len it
was not made from.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
from tqdm import tqdm

from tinylm import _core
from tinylm.data.cache import tokenizer_fingerprint
from tinylm.distill import IGNORE_INDEX, topk_logprobs
from tinylm.errors import FormatError

__all__ = ["build_teacher_cache", "TeacherCache", "CacheMismatchError", "positions_of"]

MANIFEST = "manifest"        # the root attribute holding the manifest's JSON
FORMAT = "tinylm teacher top-k cache"
LOGITS_BUDGET = 256 << 20    # bytes of teacher logits held at once while building


class CacheMismatchError(ValueError):
    """A teacher cache made from other data, tokenizer or layout than the
    training run's; the message names the field and both values."""


def positions_of(labels: np.ndarray) -> np.ndarray:
    """The positions of one row [T] whose logits the loss reads: t with
    labels[t + 1] != -100 (Hugging Face's shift)."""
    return np.flatnonzero(np.asarray(labels)[1:] != IGNORE_INDEX)


def build_teacher_cache(teacher, dataset, path, *, tokenizer, top_k=32, temperature=1.0, batch_size=8,
                        teacher_name=None, progress=False) -> dict:
    """Runs `teacher` (a tinylm.Model, forward only) over every row of
    `dataset` (a tinylm.data.Dataset, in row order) and writes its top_k
    ids, log-probs at `temperature` and tail log-mass per labelled position
    to `path`, atomically. Returns what it measured: rows, positions,
    tokens (input tokens run), bytes, bytes_per_position, seconds,
    tokens_per_s."""
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if not float(temperature) > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    path = os.fspath(path)
    V = int(teacher.config["vocab_size"])
    if top_k > V:
        raise ValueError(f"top_k={top_k} exceeds the teacher's vocabulary of {V}")
    T = dataset.seq_len
    # rows per forward: a batch's logits [b, T, V] stay within the budget
    step = max(1, min(int(batch_size), LOGITS_BUDGET // (T * V * 4)))
    start = time.perf_counter()
    teacher.eval()
    writer = _core.topk_create(path, top_k, V)
    positions = tokens = 0
    try:
        bar = tqdm(total=len(dataset), desc="teacher cache", unit="row", disable=not progress)
        for first in range(0, len(dataset), step):
            batch = dataset.rows(range(first, min(first + step, len(dataset))))
            logits = teacher.forward(batch["input_ids"], batch["attention_mask"], batch["position_ids"])
            where = [positions_of(lab) for lab in batch["labels"]]
            picked = np.concatenate([logits[b, w] for b, w in enumerate(where)]) if where else logits[:0, 0]
            ids, logp, tail = topk_logprobs(picked, top_k, temperature)
            writer.append(np.array([len(w) for w in where], np.int64), ids.reshape(-1), logp.reshape(-1), tail)
            positions += len(picked)
            tokens += int(batch["attention_mask"].sum())
            bar.update(len(where))
        bar.close()
        manifest = {
            "format": FORMAT,
            "teacher": {"name": teacher_name, "architecture": (teacher.config.get("architectures") or [None])[0],
                        "vocab_size": V, "quant": teacher.quant, "adapter": teacher.active_adapter,
                        "weights_hash": teacher.fingerprint()},
            "tokenizer_hash": tokenizer_fingerprint(tokenizer),
            "data_hash": dataset.fingerprint(),
            "data_files": [f.path for f in dataset.files],
            "seq_len": T, "packing": dataset.packing, "rows": len(dataset), "positions": positions,
            "k": top_k, "temperature": float(temperature),
        }
        writer.set_attr(MANIFEST, json.dumps(manifest, sort_keys=True))
        writer.commit()
    finally:
        writer.close()   # after commit: nothing left; on error: removes the temporary file
    seconds = time.perf_counter() - start
    size = os.path.getsize(path)
    return {"rows": len(dataset), "positions": positions, "tokens": tokens, "bytes": size,
            "bytes_per_position": size / max(positions, 1), "seconds": seconds, "tokens_per_s": tokens / seconds}


class TeacherCache:
    """An open teacher cache, read row by row in step with a Dataset.

        with TeacherCache("cache.h5") as cache:
            cache.check(train, tokenizer=tok)
            ids, logp = cache.topk(batch["row_ids"], batch["labels"])

    k, temperature, vocab_size and manifest describe it."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._file = _core.topk_open(self.path)
        try:
            raw = self._file.attrs.get(MANIFEST)
            self.manifest = json.loads(raw) if raw is not None else None
        except ValueError:
            self.manifest = None
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != FORMAT:
            self._file.close()
            raise FormatError(f"teacher cache {self.path}: attribute {MANIFEST!r} is not a {FORMAT} manifest")
        self.k, self.vocab_size, self.rows = self._file.k, self._file.vocab_size, self._file.rows
        self.temperature = float(self.manifest.get("temperature", 1.0))
        self._offsets = np.asarray(self._file.row_offsets)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._file.close()

    def __repr__(self):
        return f"TeacherCache({self.path!r}, rows={self.rows}, k={self.k}, temperature={self.temperature})"

    def check(self, dataset, *, tokenizer=None, vocab_size=None) -> None:
        """Raises CacheMismatchError unless the cache was made from this
        dataset (content, layout, rows), this tokenizer and a vocabulary of
        vocab_size (when given)."""
        def refuse(field, ours, theirs):
            raise CacheMismatchError(f"teacher cache {self.path}: {field} does not match: the cache has {theirs!r}, "
                                     f"the training data has {ours!r} (rebuild it with `tinylm distill cache`)")
        m = self.manifest
        if m.get("seq_len") != dataset.seq_len:
            refuse("seq_len", dataset.seq_len, m.get("seq_len"))
        if tokenizer is not None and m.get("tokenizer_hash") != tokenizer_fingerprint(tokenizer):
            refuse("tokenizer_hash (the tokenizer)", tokenizer_fingerprint(tokenizer), m.get("tokenizer_hash"))
        if self.rows != len(dataset):
            refuse("rows", len(dataset), self.rows)
        if m.get("data_hash") != dataset.fingerprint():
            refuse("data_hash (the data files, their layout or row order)", dataset.fingerprint(), m.get("data_hash"))
        if vocab_size is not None and self.vocab_size != vocab_size:
            refuse("vocab_size", vocab_size, self.vocab_size)

    def topk(self, row_ids, labels, k=None):
        """(ids int32 [B, T, k], logprobs float32 [B, T, k]) for the rows
        row_ids of a batch whose labels are [B, T]: the stored values at
        each labelled position, id 0 with log-prob 0 elsewhere (positions
        the loss skips). k (at most the cache's) keeps the k most likely of
        the stored ids. A row whose labelled positions differ in number
        from what was stored raises CacheMismatchError."""
        k = self.k if k is None else int(k)
        if not 1 <= k <= self.k:
            raise ValueError(f"teacher cache {self.path} holds the top {self.k} ids; cannot serve top {k}")
        labels = np.asarray(labels)
        row_ids = np.asarray(row_ids, np.int64).reshape(-1)
        B, T = labels.shape
        if len(row_ids) != B:
            raise ValueError(f"{len(row_ids)} row ids for a batch of {B} rows")
        ids, logp = np.zeros((B, T, k), np.int32), np.zeros((B, T, k), np.float32)
        for b, r in enumerate(row_ids):
            if not 0 <= r < self.rows:
                raise CacheMismatchError(f"teacher cache {self.path}: row {r} is outside its {self.rows} rows")
            where = positions_of(labels[b])
            n = int(self._offsets[r + 1] - self._offsets[r])
            if n != len(where):
                raise CacheMismatchError(f"teacher cache {self.path}: row {r} has {n} stored positions but the "
                                         f"batch labels {len(where)} (the cache was made from other data)")
            row_ids_k, row_logp, row_tail = np.empty(n * self.k, np.int32), np.empty(n * self.k, np.float32), \
                np.empty(n, np.float32)
            self._file.read(int(r), row_ids_k, row_logp, row_tail)
            ids[b, where] = row_ids_k.reshape(n, self.k)[:, :k]   # stored most likely first
            logp[b, where] = row_logp.reshape(n, self.k)[:, :k]
        return ids, logp
