"""load_dataset: files in, train/validation Datasets out."""
import numbers
import os
from typing import NamedTuple, Optional

import numpy as np

from tinylm.data import cache as cache_mod
from tinylm.data.dataset import Dataset

# Cached files whose tokens fit in this many bytes are read into memory
# once; larger ones stream example by example from the HDF5 file.
IN_MEMORY_BYTES = 512 << 20


class Splits(NamedTuple):
    train: Dataset
    validation: Optional[Dataset]


def _paths(p):
    return [os.fspath(x) for x in p] if isinstance(p, (list, tuple)) else [os.fspath(p)]


def load_dataset(path_or_paths, tokenizer, *, format=None, seq_len=512, packing=False, train_on_prompt=False,
                 truncation="truncate", on_error="raise", validation=None, seed=0, cache_dir=None,
                 in_memory=None):
    """Tokenizes (or opens the cache of) JSONL / .txt files and returns
    Splits(train, validation).

    format: None detects it per file from the first record; or "text",
      "prompt_completion", "alpaca", "chat" (docs/data.md).
    seq_len: tokens per row. packing: fill rows with several examples.
    train_on_prompt: labels on prompt tokens too (default: responses only).
    truncation: "truncate" | "drop" | "error" for examples over seq_len.
    on_error: "raise" | "skip" for malformed lines.
    validation: None; a fraction in (0, 1) of the examples, drawn with seed;
      or a path (or list of paths) loaded with the same options.
    seed: the validation draw and the packing order.
    cache_dir: where token caches live (default tinylm.data.default_cache_dir()).
    in_memory: True / False, or None to load files whose tokens take at
      most 512 MiB and stream the rest.
    """
    if not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive integer, got {seq_len!r}")
    cache_dir = os.fspath(cache_dir) if cache_dir is not None else cache_mod.default_cache_dir()
    fingerprint = cache_mod.tokenizer_fingerprint(tokenizer)
    pad = tokenizer.pad_token_id
    pad = pad if pad is not None else tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    layout = dict(seq_len=int(seq_len), packing=bool(packing), train_on_prompt=bool(train_on_prompt),
                  truncation=truncation, seed=seed, pad_id=pad)

    def open_files(paths):
        files = [cache_mod.load(p, tokenizer, format, on_error, cache_dir, fingerprint) for p in paths]
        for f in files:
            if in_memory or (in_memory is None and f.cache.n_tokens * 5 <= IN_MEMORY_BYTES):
                f.load_all()
        return files

    def all_examples(files):
        file_of = np.concatenate([np.full(len(f.lengths), i, np.int32) for i, f in enumerate(files)])
        index = np.concatenate([np.arange(len(f.lengths), dtype=np.int64) for f in files])
        return file_of, index

    def make(files, file_of, index, what):
        ds = Dataset(files, file_of, index, **layout)
        if len(ds) == 0:
            raise ValueError(f"the {what} split is empty: all {len(index)} examples are longer than "
                             f"seq_len={seq_len} and truncation='drop' left them out")
        return ds

    files = open_files(_paths(path_or_paths))
    file_of, index = all_examples(files)
    if validation is None:
        return Splits(make(files, file_of, index, "train"), None)
    if isinstance(validation, numbers.Real) and not isinstance(validation, bool):
        if not 0.0 < validation < 1.0:
            raise ValueError(f"validation as a fraction must be in (0, 1), got {validation}")
        n = len(index)
        n_val = int(round(validation * n))
        if n_val == 0 or n_val == n:
            raise ValueError(f"validation={validation} of {n} examples leaves an empty split")
        pick = np.zeros(n, bool)
        pick[np.random.default_rng([seed, 0]).permutation(n)[:n_val]] = True
        return Splits(make(files, file_of[~pick], index[~pick], "train"),
                      make(files, file_of[pick], index[pick], "validation"))
    val_files = open_files(_paths(validation))
    return Splits(make(files, file_of, index, "train"), make(val_files, *all_examples(val_files), "validation"))
