"""Trains a byte-level BPE tokenizer and writes it as a Hugging Face
tokenizer.json (+ tokenizer_config.json with a chat template).

    from tinylm.tokenizer_train import train_bpe, save_tokenizer
    vocab, merges = train_bpe(texts, vocab_size=4096)
    save_tokenizer("out/", vocab, merges)

The pipeline is SmolLM's: digits split one by one, then GPT-2's regex and
byte-to-unicode mapping (ByteLevel). Training is the algorithm of the
`tokenizers` library's BpeTrainer, step for step (the same pair counts,
the same order of candidates: highest count, then lowest pair of ids), so on
the same words it learns the same merges (tests/test_tokenizer_train.py
checks that). Pair counts are kept up to date incrementally: a merge only
revisits the words that contain its pair.
"""
from __future__ import annotations

import collections
import heapq
import json
import os
import re
from collections.abc import Iterable

from tinylm.atomic import atomic_write_text

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# ChatML, as SmolLM2-Instruct writes it, without the default system prompt.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# GPT-2's pre-tokenizer pattern in Python's `re`: \p{L} is [^\W\d_] and \p{N}
# is \d. They agree on ASCII; elsewhere (numerals such as '½', letters that
# Unicode and Python classify differently) a training text may be split a
# little differently from the runtime, which only changes which merges are
# learned, never how tokenizer.json encodes.
_PIECE = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")
_DIGIT = re.compile(r"(\d)")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from bytes to printable characters (ByteLevel): printable
    Latin-1 bytes stand for themselves, the rest are shifted to U+0100 on."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, shift = dict(zip(keep, keep)), 0
    for b in range(256):
        if b not in chars:
            chars[b] = 256 + shift
            shift += 1
    return {b: chr(c) for b, c in chars.items()}


_BYTE_CHARS = bytes_to_unicode()


def pretokenize(text: str) -> list[str]:
    """The byte-level pieces of text (Digits(individual) then ByteLevel)."""
    pieces = []
    for segment in _DIGIT.split(text):
        for piece in _PIECE.findall(segment):
            pieces.append("".join(_BYTE_CHARS[b] for b in piece.encode("utf-8")))
    return pieces


def count_words(texts: Iterable[str], special_tokens=SPECIAL_TOKENS) -> collections.Counter:
    """How often each pre-tokenized piece occurs. Special token strings in a
    text are cut out first, as the tokenizer splits them off before
    pre-tokenizing."""
    special = re.compile("|".join(re.escape(t) for t in special_tokens)) if special_tokens else None
    counts = collections.Counter()
    for text in texts:
        for part in special.split(text) if special else (text,):
            counts.update(pretokenize(part))
    return counts


def train_bpe(texts: Iterable[str], vocab_size: int, special_tokens=SPECIAL_TOKENS,
              min_frequency: int = 2) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab {token: id}, merges [(left, right), ...]) learned from texts.

    Ids: the special tokens, then the 256 byte characters in code-point
    order, then one per merge until vocab_size is reached or no pair occurs
    min_frequency times. A merge whose result is already a token reuses its
    id (as `tokenizers` does), so the vocabulary can be a little smaller."""
    special_tokens = list(special_tokens)
    if len(set(special_tokens)) != len(special_tokens):
        raise ValueError(f"special_tokens has duplicates: {special_tokens}")
    floor = len(special_tokens) + 256
    if vocab_size < floor:
        raise ValueError(f"vocab_size={vocab_size} is smaller than the {len(special_tokens)} special tokens "
                         f"plus 256 byte tokens ({floor})")
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    id_to_token = special_tokens + sorted(_BYTE_CHARS.values())
    token_to_id = {t: i for i, t in enumerate(id_to_token)}
    counted = count_words(texts, special_tokens)
    if not counted:
        raise ValueError("train_bpe: the texts hold no characters to learn from")
    words = [[token_to_id[c] for c in word] for word in counted]
    freq = list(counted.values())

    pair_count: dict[tuple[int, int], int] = collections.defaultdict(int)
    where: dict[tuple[int, int], set[int]] = collections.defaultdict(set)
    for w, (word, n) in enumerate(zip(words, freq)):
        for pair in zip(word, word[1:]):
            pair_count[pair] += n
            where[pair].add(w)
    # Max-heap by count, then smallest pair, via (-count, pair). Counts of a
    # pair only fall once it exists (new pairs always hold the new token),
    # so a stale entry overstates its count: it is refreshed when popped.
    heap = [(-n, pair) for pair, n in pair_count.items()]
    heapq.heapify(heap)
    merges = []
    while len(id_to_token) < vocab_size and heap:
        negative, pair = heapq.heappop(heap)
        if -negative != pair_count[pair]:
            if pair_count[pair] > 0:
                heapq.heappush(heap, (-pair_count[pair], pair))
            continue
        if -negative < max(1, min_frequency):
            break
        left, right = id_to_token[pair[0]], id_to_token[pair[1]]
        merged = left + right
        new_id = token_to_id.get(merged)
        if new_id is None:
            new_id = token_to_id[merged] = len(id_to_token)
            id_to_token.append(merged)
        merges.append((left, right))
        touched = set()
        for w in sorted(where.pop(pair)):
            touched |= _merge_word(words, w, pair, new_id, freq[w], pair_count, where)
        pair_count.pop(pair, None)
        for p in touched:
            if pair_count[p] > 0:
                heapq.heappush(heap, (-pair_count[p], p))
    return token_to_id, merges


def _merge_word(words, w, pair, new_id, n, pair_count, where) -> set:
    """Merges `pair` left to right in words[w] (non-overlapping), updates the
    counts by the word's frequency n, and returns the pairs that gained
    occurrences (all hold new_id)."""
    word = words[w]
    a, b = pair
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    if len(out) == len(word):
        return set()
    before = collections.Counter(zip(word, word[1:]))
    after = collections.Counter(zip(out, out[1:]))
    gained = set()
    for p in before.keys() | after.keys():
        delta = after[p] - before[p]
        if delta:
            pair_count[p] += delta * n
        if after[p] == 0 and p != pair:
            where[p].discard(w)
        elif before[p] == 0:
            where[p].add(w)
            gained.add(p)
    words[w] = out
    return gained


def tokenizer_json(vocab: dict[str, int], merges: list[tuple[str, str]], special_tokens=SPECIAL_TOKENS) -> dict:
    """The tokenizer.json document, laid out as `tokenizers` saves SmolLM2's."""
    added = [{"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for t in special_tokens]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                                byte_level]},
        "post_processor": dict(byte_level, trim_offsets=False),
        "decoder": dict(byte_level),
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": dict(sorted(vocab.items(), key=lambda kv: kv[1])),
                  "merges": [list(m) for m in merges]},
    }


def save_tokenizer(path: str | os.PathLike, vocab: dict[str, int], merges: list[tuple[str, str]], *,
                   special_tokens=SPECIAL_TOKENS, eos_token: str = "<|endoftext|>",
                   chat_template: str | None = CHATML_TEMPLATE, model_max_length: int = 2048) -> None:
    """Writes path/tokenizer.json and path/tokenizer_config.json (transformers'
    fields; BOS, EOS, PAD and UNK are eos_token, as in GPT-2 and SmolLM, and
    no BOS is added when encoding)."""
    path = os.fspath(path)
    if eos_token not in special_tokens:
        raise ValueError(f"eos_token {eos_token!r} is not one of the special tokens {list(special_tokens)}")
    os.makedirs(path, exist_ok=True)
    atomic_write_text(os.path.join(path, "tokenizer.json"),
                      json.dumps(tokenizer_json(vocab, merges, special_tokens), ensure_ascii=False, indent=2) + "\n")
    # PreTrainedTokenizerFast, not GPT2Tokenizer: transformers 5 rebuilds a
    # GPT2Tokenizer's pipeline from vocab and merges, dropping the Digits step.
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "bos_token": eos_token, "eos_token": eos_token, "pad_token": eos_token, "unk_token": eos_token,
        "additional_special_tokens": [t for t in special_tokens if t != eos_token],
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "added_tokens_decoder": {str(vocab[t]): {"content": t, "lstrip": False, "normalized": False,
                                                 "rstrip": False, "single_word": False, "special": True}
                                 for t in special_tokens},
    }
    if chat_template is not None:
        config["chat_template"] = chat_template
    atomic_write_text(os.path.join(path, "tokenizer_config.json"), json.dumps(config, indent=2) + "\n")
