"""tinylm.data: JSONL / text files to numpy training batches.

    train, val = tinylm.data.load_dataset("train.jsonl", tok, seq_len=256, validation=0.1)
    for batch in train.batches(8, seed=0, epochs=3): ...   # int32 [8, 256] arrays

Formats, labels, packing, caching and errors are described in docs/data.md.
"""
from tinylm.data.cache import default_cache_dir
from tinylm.data.dataset import IGNORE, Batches, Dataset, DatasetStats
from tinylm.data.formats import ALPACA_PROMPT, ALPACA_PROMPT_NO_INPUT, FORMATS
from tinylm.data.loader import Splits, load_dataset

__all__ = ["load_dataset", "Dataset", "DatasetStats", "Batches", "Splits", "IGNORE", "FORMATS",
           "ALPACA_PROMPT", "ALPACA_PROMPT_NO_INPUT", "default_cache_dir"]
