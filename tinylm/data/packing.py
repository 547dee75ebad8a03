"""Fitting examples into rows of seq_len tokens: the truncation policy, and
packing several short examples into one row."""
import numpy as np

TRUNCATION = ("truncate", "drop", "error")


def fit(lengths, seq_len, truncation, where):
    """Applies the truncation policy to examples of the given lengths.

    Returns (keep, used, truncated, dropped): keep indexes the examples that
    stay (int64), used [len(keep)] their lengths after truncation. where(i)
    names example i as "file:line" for the error under truncation="error".
    Truncation keeps the first seq_len tokens (the prompt side, for SFT).
    """
    if truncation not in TRUNCATION:
        raise ValueError(f"truncation must be one of {TRUNCATION}, got {truncation!r}")
    lengths = np.asarray(lengths, np.int64)
    long = np.flatnonzero(lengths > seq_len)
    if truncation == "error" and len(long):
        first = int(long[0])
        raise ValueError(f"{where(first)}: example has {lengths[first]} tokens, more than seq_len={seq_len} "
                         f"({len(long)} such examples; pass truncation='truncate' or 'drop')")
    if truncation == "drop":
        keep = np.flatnonzero(lengths <= seq_len)
        return keep, lengths[keep], 0, len(long)
    return np.arange(len(lengths), dtype=np.int64), np.minimum(lengths, seq_len), len(long), 0


def pack(used, seq_len):
    """Row boundaries for next-fit packing of examples, in the given order,
    into rows of at most seq_len tokens: row r holds examples
    [bounds[r], bounds[r+1]). No example is split. Next-fit keeps the order
    and needs one pass, so it streams."""
    bounds = [0]
    fill = 0
    for i, n in enumerate(used.tolist()):
        if fill and fill + n > seq_len:
            bounds.append(i)
            fill = 0
        fill += n
    bounds.append(len(used))
    return np.array(bounds, np.int64) if len(used) else np.zeros(1, np.int64)
