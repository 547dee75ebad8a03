"""The tokenized-dataset cache: one HDF5 file per data file (written by the C
core, tinylm._core.TokenCache), named by a hash of the file's bytes, the
tokenizer's behaviour and the options that change tokenization. A second run
with the same three opens the file instead of tokenizing again; options that
only change how examples are laid out in rows (seq_len, packing,
truncation, train_on_prompt) are applied after the cache, so changing them
costs no tokenization either.

The C writer fills a temporary file and renames it into place, so a cache
file that exists is complete; processes building the same cache at once
each rename a complete file of their own (docs/reliability.md, "Crash-safe writes").
"""
import hashlib
import json
import os
import warnings

import numpy as np

from tinylm import _core
from tinylm.atomic import remove_stale
from tinylm.data import formats
from tinylm.data.reader import Skips, bad_line, is_text_file, read_records
from tinylm.errors import FormatError

# Bump when what gets cached for the same inputs changes (templates, rules).
PIPELINE_VERSION = "1"
# Examples tokenized per encode_batch call and written per append.
CHUNK = 512

# Exercises what tells tokenizers apart: merges, bytes, digits, whitespace,
# scripts, special-token handling.
_PROBE = ("Hello, world! The quick brown fox jumps over the lazy dog. 0123456789 3.14159 -42 "
          "\n\n\t  indented\tcode: def f(x): return x ** 2  # émigré naïve Straße Ελληνικά "
          "中文字符 日本語 한국어 😀👍🏽 <s></s><|im_start|><|endoftext|>[INST] ")


def default_cache_dir():
    """$TINYLM_CACHE_DIR, else $XDG_CACHE_HOME/tinylm/datasets (~/.cache by default)."""
    if os.environ.get("TINYLM_CACHE_DIR"):
        return os.environ["TINYLM_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tinylm", "datasets")


def file_digest(path):
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer):
    """A hash of how the tokenizer behaves (the protocol exposes no file to hash)."""
    ids = list(tokenizer.encode(_PROBE, add_special_tokens=True))
    plain = list(tokenizer.encode(_PROBE, add_special_tokens=False))
    parts = [ids, plain, tokenizer.decode(plain), tokenizer.bos_token_id, tokenizer.eos_token_id,
             tokenizer.pad_token_id, _chat_probe(tokenizer)]
    return hashlib.blake2b(json.dumps(parts).encode(), digest_size=16).hexdigest()


def _chat_probe(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}]
    try:
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))
    except Exception as exc:  # no template: tokenizers differ in what they raise, and that is all we learn
        return f"no chat template: {type(exc).__name__}"


def cache_key(path, fingerprint, fmt, on_error):
    options = {"pipeline": PIPELINE_VERSION, "data": file_digest(path), "tokenizer": fingerprint,
               "format": fmt, "on_error": on_error}
    return hashlib.blake2b(json.dumps(options, sort_keys=True).encode(), digest_size=16).hexdigest(), options


class CachedFile:
    """A data file's tokenized examples, opened from its cache."""

    def __init__(self, path, cache, cache_path, hit):
        self.path = path               # the data file (for messages)
        self.cache = cache             # tinylm._core.TokenCache, open for reading
        self.cache_path = cache_path
        self.cache_hit = hit
        attrs = cache.attrs
        self.format = attrs["format"]
        self.skipped = int(attrs["skipped"])
        self.prompt_mismatch = int(attrs["prompt_mismatch"])
        self.masked_turns = int(attrs["masked_turns"])
        self.offsets = np.asarray(cache.offsets)   # int64 [n+1]
        self.lines = np.asarray(cache.lines)       # int64 [n]
        self.lengths = np.diff(self.offsets)       # int64 [n]
        self._ids = self._mask = None              # int32, uint8 [N] once in memory

    def load_all(self):
        """Reads every token into memory (for data that fits); example() then slices."""
        if self._ids is None:
            n = self.cache.n_tokens
            ids, mask = np.empty(n, np.int32), np.empty(n, np.uint8)
            self.cache.read(0, len(self.lengths), ids, mask)
            self._ids, self._mask = ids, mask

    def example(self, i):
        """(ids int32 [L], loss mask uint8 [L]) of example i, from memory or from the file."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        if self._ids is not None:
            return self._ids[a:b], self._mask[a:b]
        ids, mask = np.empty(b - a, np.int32), np.empty(b - a, np.uint8)
        self.cache.read(int(i), 1, ids, mask)
        return ids, mask


def load(path, tokenizer, fmt, on_error, cache_dir, fingerprint):
    """Opens the cache for path, tokenizing the file first when it has none
    (or when the one there is corrupt or was made from other inputs)."""
    path = os.fspath(path)
    if fmt is not None and fmt not in formats.FORMATS:
        raise ValueError(f"format must be None (detect) or one of {formats.FORMATS}, got {fmt!r}")
    if is_text_file(path) and fmt not in (None, "text"):
        raise ValueError(f"{path}: a .txt file holds plain text; format={fmt!r} needs a JSONL file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file not found: {path}")
    key, options = cache_key(path, fingerprint, fmt, on_error)
    os.makedirs(cache_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(path))[0]
    cache_path = os.path.join(cache_dir, f"{stem}-{key[:20]}.h5")
    if os.path.exists(cache_path):
        try:
            cache = _core.cache_open(cache_path)
            if cache.attrs.get("key") == key:
                return CachedFile(path, cache, cache_path, True)
            reason = "it was made from other inputs"
            cache.close()
        except FormatError as exc:
            reason = str(exc)
        warnings.warn(f"rebuilding token cache {cache_path}: {reason}", stacklevel=3)
    remove_stale(cache_dir, os.path.basename(cache_path))  # what a killed build left
    _build(path, tokenizer, fmt, on_error, cache_path, key, options)
    return CachedFile(path, _core.cache_open(cache_path), cache_path, False)


def _checked_records(path, fmt, on_error, skips, found):
    """Yields (line, record) that fit the format, detecting it from the first
    record when fmt is None; found["format"] gets the format in use."""
    for line, record in read_records(path, on_error, skips):
        use = fmt or found.get("format") or formats.detect(record)
        if use is None:
            bad_line(path, line, f"cannot tell the format from fields {sorted(record)}; expected "
                     f"{formats.describe_fields()}, or pass format=", on_error, skips)
            continue
        message = formats.problem(use, record)
        if message:
            bad_line(path, line, message, on_error, skips)
            continue
        found["format"] = use
        yield line, record


def _build(path, tokenizer, fmt, on_error, cache_path, key, options):
    skips, counts, found = Skips(), formats.Counts(), {}
    records = _checked_records(path, fmt, on_error, skips, found)
    writer = _core.cache_create(cache_path)
    try:
        n = 0
        while True:
            chunk = [item for _, item in zip(range(CHUNK), records)]
            if not chunk:
                break
            _append(writer, formats.tokenize(found["format"], [r for _, r in chunk], tokenizer, counts),
                    [line for line, _ in chunk])
            n += len(chunk)
        if n == 0:
            why = f"; {skips.count} lines skipped, the first: {skips.first}" if skips.count else ""
            raise FormatError(f"{path}: no examples in the file{why}")
        attrs = {"key": key, "options": json.dumps(options), "source": path, "format": found["format"],
                 "skipped": str(skips.count), "prompt_mismatch": str(counts.prompt_mismatch),
                 "masked_turns": str(counts.masked_turns)}
        for k, v in attrs.items():
            writer.set_attr(k, v)
        writer.commit()
    finally:
        writer.close()   # after commit: nothing left; on error: removes the temporary file


def _append(writer, tokenized, lines):
    lengths = np.array([len(ids) for ids, _ in tokenized], np.int64)
    ids = np.fromiter((t for ids, _ in tokenized for t in ids), np.int32, count=int(lengths.sum()))
    mask = np.concatenate([m for _, m in tokenized]) if tokenized else np.zeros(0, np.uint8)
    writer.append(ids, mask, lengths, np.array(lines, np.int64))
