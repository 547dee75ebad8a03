"""A GGUF file's tokenizer metadata (tokenizer.ggml.*, tokenizer.chat_template)
<-> a tinylm.Tokenizer, both ways, with llama.cpp's semantics.

    tok  = tokenizer_from_metadata(meta, source)        # GGUF -> Tokenizer
    tj, tc = hf_tokenizer_files(meta, source)           # GGUF -> tokenizer.json, tokenizer_config.json dicts
    keys = tokenizer_metadata(tok_or_files, source)      # Tokenizer (or the two dicts) -> tokenizer.* keys

`meta` maps key -> value as tinylm.gguf.file or gguf.GGUFReader decode them
(strings, string arrays as lists of str, numeric arrays as numpy arrays or
lists).
tokenizer_metadata's values carry their GGUF type: str, list of str, bool,
numpy.uint32 (token ids), numpy int32 array (token types), numpy float32
array (scores).

Two tokenizer models:

- "gpt2": byte-level BPE from tokens and merges, split first by the
  pre-tokenizer tokenizer.ggml.pre names (pretokenizers.py).
- "llama": llama.cpp's SentencePiece tokenizer (llm_tokenizer_spm): spaces
  become U+2581, one is prepended to every text piece (add_space_prefix,
  default true; Gemma's files say false), then neighbouring pieces whose
  concatenation is a token merge, the highest-scoring such token first and
  the leftmost among equal scores, and pieces left outside the vocabulary
  become <0xNN> byte tokens. That is a BPE whose merges are every split of
  every token, ranked by the token's score, with ties going leftmost:
  tinylm's BPE with "merge_ranks" (equal ranks apply leftmost first).
  transformers' GGUF loader instead breaks ties by rank and prepends U+2581
  to the first piece only, and not before a leading space (Metaspace
  prepend_scheme "first"); where the two differ (equal scores, text after a
  special token or starting with a space) tinylm follows llama.cpp.

Control, unknown and user-defined tokens, and the end-of-generation and
fill-in-the-middle texts llama.cpp makes control tokens whatever the file
says, are matched whole in the raw text before anything else, as
llama.cpp's tokenizer_st_partition does with special tokens parsed.

Not modelled: llama.cpp matches special tokens longest first over the
whole text where tokenizers (and tinylm) take the leftmost longest, which
differs only when two special tokens overlap; and a character outside the
vocabulary can still join a neighbour into a token in llama.cpp's
SentencePiece merging, where tinylm makes it <0xNN> bytes first (real
vocabularies hold every character their tokens are made of).
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping

import numpy as np

from tinylm import _core
from tinylm.errors import FormatError, UnsupportedError
from tinylm.gguf import pretokenizers
from tinylm.tokenizer import Tokenizer

__all__ = ["tokenizer_from_metadata", "hf_tokenizer_files", "tokenizer_metadata", "MODEL", "PRE", "TOKENS",
           "SCORES", "TOKEN_TYPE", "MERGES", "ADD_BOS", "ADD_EOS", "ADD_SPACE_PREFIX", "CHAT_TEMPLATE",
           "SPECIAL_IDS", "NORMAL", "UNKNOWN", "CONTROL", "USER_DEFINED", "UNUSED", "BYTE"]

MODEL = "tokenizer.ggml.model"
PRE = "tokenizer.ggml.pre"
TOKENS = "tokenizer.ggml.tokens"
SCORES = "tokenizer.ggml.scores"
TOKEN_TYPE = "tokenizer.ggml.token_type"
MERGES = "tokenizer.ggml.merges"
ADD_BOS = "tokenizer.ggml.add_bos_token"
ADD_EOS = "tokenizer.ggml.add_eos_token"
ADD_SPACE_PREFIX = "tokenizer.ggml.add_space_prefix"
CHAT_TEMPLATE = "tokenizer.chat_template"
CHAT_TEMPLATES = "tokenizer.chat_templates"          # names of the extra templates
CHAT_TEMPLATE_NAMED = "tokenizer.chat_template.{}"
# tokenizer_config.json's names -> llama.cpp's keys ("seperator" is llama.cpp's spelling).
SPECIAL_IDS = {
    "bos_token": "tokenizer.ggml.bos_token_id", "eos_token": "tokenizer.ggml.eos_token_id",
    "unk_token": "tokenizer.ggml.unknown_token_id", "sep_token": "tokenizer.ggml.seperator_token_id",
    "pad_token": "tokenizer.ggml.padding_token_id", "mask_token": "tokenizer.ggml.mask_token_id",
}

# tokenizer.ggml.token_type values (llama_token_type; 0 is "undefined").
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# Tokens matched whole in the raw text (llama.cpp's cache_special_tokens).
_MATCHED_WHOLE = (UNKNOWN, CONTROL, USER_DEFINED)
# Token texts llama.cpp makes control tokens whatever their type says, as
# end-of-generation and fill-in-the-middle markers (llama_vocab::impl::load).
_LLAMACPP_CONTROL = frozenset([
    "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "</s>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<\uff5cend\u2581of\u2581sentence\uff5c>", "[e~[",
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\uff5cfim\u2581begin\uff5c>", "<PRE>", "\u2581<PRE>",
    "<|code_prefix|>", "<|prefix|>", "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\uff5cfim\u2581hole\uff5c>",
    "<SUF>", "\u2581<SUF>", "<|code_suffix|>", "<|suffix|>", "<|fim_middle|>", "<fim-middle>", "<fim_middle>",
    "<\uff5cfim\u2581end\uff5c>", "<MID>", "\u2581<MID>", "<|code_middle|>", "<|middle|>", "<|fim_pad|>", "<fim-pad>",
    "<fim_pad>", "<PAD>", "[PAD]", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>",
    "<|file_sep|>",
])
# ...except "</s>" beside these (Gemma 4, PLaMo), where it is a plain token.
_PLAIN_END_OF_SENTENCE = ("<|tool_response>", "<|plamo:eos|>")
# llama.cpp's defaults for a SentencePiece vocabulary that names no ids.
_SPM_DEFAULT_IDS = {"bos_token": 1, "eos_token": 2, "unk_token": 0}
METASPACE = "\u2581"
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
# Score of a token no merge makes: below every merged token's.
_UNMERGED_SCORE = -1e9


# ------------------------------------------------------------------ reading

def _list(meta: Mapping, key: str, source: str, required: bool = True) -> list | None:
    v = meta.get(key)
    if v is None:
        if required:
            raise FormatError(f"{source}: missing required metadata key '{key}'")
        return None
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if not isinstance(v, (list, tuple)):
        raise FormatError(f"{source}: {key} must be an array, got {type(v).__name__}")
    return list(v)


def _strings(meta: Mapping, key: str, source: str, required: bool = True) -> list[str] | None:
    v = _list(meta, key, source, required)
    if v is not None and not all(isinstance(s, str) for s in v):
        raise FormatError(f"{source}: {key} must be an array of strings")
    return v


def _numbers(meta: Mapping, key: str, n: int, source: str, integer: bool) -> list | None:
    v = _list(meta, key, source, required=False)
    if v is None:
        return None
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if not all(isinstance(x, kinds) and not isinstance(x, bool) for x in v):
        raise FormatError(f"{source}: {key} must be an array of {'integers' if integer else 'numbers'}")
    if len(v) != n:
        raise FormatError(f"{source}: {key} has {len(v)} entries for {n} tokens in {TOKENS}")
    return v


def _flag(meta: Mapping, key: str, default: bool, source: str) -> bool:
    v = meta.get(key, default)
    if not isinstance(v, (bool, np.bool_)):
        raise FormatError(f"{source}: {key} must be a bool, got {v!r}")
    return bool(v)


def _special_id(meta: Mapping, key: str, n: int, source: str) -> int | None:
    v = meta.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= int(v) < n:
        raise FormatError(f"{source}: {key} = {v!r} is not a token id (the vocabulary has {n} tokens)")
    return int(v)


def _vocab(tokens: list[str], source: str) -> tuple[list[str], dict[str, int]]:
    # llama.cpp renames empty tokens (a map key cannot be empty in its loader either).
    tokens = [t if t else f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        j = vocab.setdefault(t, i)
        if j != i:
            raise FormatError(f"{source}: {TOKENS} holds {t!r} twice (ids {j} and {i})")
    return tokens, vocab


def _bpe_merges(meta: Mapping, vocab: dict[str, int], source: str) -> list[list[str]]:
    merges = _strings(meta, MERGES, source)
    out = []
    for k, m in enumerate(merges):
        # llama.cpp splits at the first space after the first character.
        cut = m.find(" ", 1)
        if cut < 0:
            raise FormatError(f"{source}: {MERGES}[{k}] = {m!r} is not two tokens separated by a space")
        a, b = m[:cut], m[cut + 1:]
        for part in (a, b, a + b):
            if part not in vocab:
                raise FormatError(f"{source}: {MERGES}[{k}] = {m!r} names {part!r}, which is not in {TOKENS}")
        out.append([a, b])
    return out


def _spm_merges(tokens: list[str], vocab: dict[str, int], scores: list[float]) -> tuple[list[list[str]], list[int]]:
    """Every split (a, b) of every token into two tokens, ranked by the
    token's score (best first); equal scores share a rank."""
    scores32 = np.asarray(scores, dtype=np.float32).tolist()   # llama.cpp compares float32 scores
    rank_of = {s: r for r, s in enumerate(sorted(set(scores32), reverse=True))}
    found = []
    for i, t in enumerate(tokens):
        for k in range(1, len(t)):
            if t[:k] in vocab and t[k:] in vocab:
                found.append((rank_of[scores32[i]], i, k))
    found.sort()
    return [[tokens[i][:k], tokens[i][k:]] for _, i, k in found], [r for r, _, _ in found]


def _added(tokens: list[str], types: list[int], vocab: dict[str, int]) -> list[dict]:
    """The tokens llama.cpp matches whole, as tokenizer.json added tokens."""
    control = set(_LLAMACPP_CONTROL)
    if any(t in vocab for t in _PLAIN_END_OF_SENTENCE):
        control.discard("</s>")
    return [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": types[i] != USER_DEFINED}
            for i in range(len(tokens)) if types[i] in _MATCHED_WHOLE or tokens[i] in control]


def hf_tokenizer_files(meta: Mapping, source: str) -> tuple[dict, dict]:
    """(tokenizer.json, tokenizer_config.json) dicts that tinylm loads into
    the tokenizer the metadata describes. A "llama" vocabulary's model
    carries "merge_ranks", which only tinylm reads. Missing or malformed
    keys are FormatErrors naming the key; a tokenizer model or pre-tokenizer
    tinylm does not read is an UnsupportedError naming the key and value."""
    model = meta.get(MODEL)
    if model is None:
        raise FormatError(f"{source}: missing required metadata key '{MODEL}'")
    if model not in ("gpt2", "llama"):
        raise UnsupportedError(f"{source}: unsupported {MODEL} {model!r} (tinylm reads 'gpt2' and 'llama')")
    tokens = _strings(meta, TOKENS, source)
    if not tokens:
        raise FormatError(f"{source}: {TOKENS} is empty")
    tokens, vocab = _vocab(tokens, source)
    n = len(tokens)
    types = _numbers(meta, TOKEN_TYPE, n, source, integer=True) or [NORMAL] * n
    bad = next((t for t in types if not 0 <= t <= BYTE), None)
    if bad is not None:
        raise FormatError(f"{source}: {TOKEN_TYPE} holds {bad}, which is no llama.cpp token type (0-6)")
    ids = {name: _special_id(meta, key, n, source) for name, key in SPECIAL_IDS.items()}

    if model == "gpt2":
        pre = pretokenizers.lookup(meta.get(PRE, ""), PRE, source)
        merges = _bpe_merges(meta, vocab, source)
        bpe = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
               "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
               "ignore_merges": pre.ignore_merges, "vocab": vocab, "merges": merges}
        tokenizer = {"normalizer": None, "pre_tokenizer": pretokenizers.pre_tokenizer_json(pre),
                     "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                                 "use_regex": False}}
        add_bos = pre.add_bos
    else:
        scores = _numbers(meta, SCORES, n, source, integer=False) or [0.0] * n
        for name, default in _SPM_DEFAULT_IDS.items():
            if ids[name] is None and meta.get(SPECIAL_IDS[name]) is None and default < n:
                ids[name] = default
        merges, ranks = _spm_merges(tokens, vocab, scores)
        unk = None if ids["unk_token"] is None else tokens[ids["unk_token"]]
        bpe = {"type": "BPE", "dropout": None, "unk_token": unk, "continuing_subword_prefix": None,
               "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
               "vocab": vocab, "merges": merges, "merge_ranks": ranks}
        space = {"type": "Replace", "pattern": {"String": " "}, "content": METASPACE}
        prefix = _flag(meta, ADD_SPACE_PREFIX, True, source)
        decoder = [{"type": "Replace", "pattern": {"String": METASPACE}, "content": " "},
                   {"type": "ByteFallback"}, {"type": "Fuse"}]
        if prefix:
            decoder.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
        normalizer = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": METASPACE}, space]}
        tokenizer = {"normalizer": normalizer if prefix else space, "pre_tokenizer": None,
                     "decoder": {"type": "Sequence", "decoders": decoder}}
        add_bos = True
    tokenizer = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": _added(tokens, types, vocab),
                 **tokenizer, "post_processor": None, "model": bpe}

    config: dict = {name: tokens[i] for name, i in ids.items() if i is not None}
    config["add_bos_token"] = _flag(meta, ADD_BOS, add_bos, source)
    config["add_eos_token"] = _flag(meta, ADD_EOS, False, source)
    for flag, key, name in (("add_bos_token", ADD_BOS, "bos_token"), ("add_eos_token", ADD_EOS, "eos_token")):
        if config[flag] and name not in config:
            said = "is true" if key in meta else f"is absent, and llama.cpp adds {name[:3].upper()} to this vocabulary"
            raise FormatError(f"{source}: {key} {said}, but {SPECIAL_IDS[name]} is missing")
    return tokenizer, config


def _chat_template(meta: Mapping, source: str) -> str | dict[str, str] | None:
    default = meta.get(CHAT_TEMPLATE)
    names = _strings(meta, CHAT_TEMPLATES, source, required=False) or []
    templates = {name: meta.get(CHAT_TEMPLATE_NAMED.format(name)) for name in names}
    if default is not None:
        templates = {"default": default, **templates}
    for name, t in templates.items():
        if not isinstance(t, str):
            key = CHAT_TEMPLATE if name == "default" else CHAT_TEMPLATE_NAMED.format(name)
            raise FormatError(f"{source}: {key} must be a string, got {type(t).__name__}")
    if not templates:
        return None
    return templates["default"] if list(templates) == ["default"] else templates


def tokenizer_from_metadata(meta: Mapping, source: str) -> Tokenizer:
    """The tinylm.Tokenizer of a GGUF file's metadata (see hf_tokenizer_files
    for the errors); its chat template is tokenizer.chat_template (with the
    named ones of tokenizer.chat_templates, as {name: template})."""
    tokenizer, config = hf_tokenizer_files(meta, source)
    template = _chat_template(meta, source)
    core = _core.Tokenizer.from_json(json.dumps(tokenizer, ensure_ascii=False), json.dumps(config, ensure_ascii=False),
                                     source)
    kept = {k: v for k, v in meta.items() if k.startswith("tokenizer.")}
    return Tokenizer(core, source, template, source if template is not None else None, gguf_metadata=kept)


# ------------------------------------------------------------------ writing

def _looks_special(token: str) -> bool:
    """convert_hf_to_gguf.py's does_token_look_special: added tokens it
    marks control even when tokenizer.json says they are not special."""
    return (token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (token.startswith("<|") and token.endswith("|>"))
            or (token.startswith("<\uff5c") and token.endswith("\uff5c>"))
            or (token.startswith("<unused") and token.endswith(">")))


def _sequence(j: dict | None, key: str) -> list[dict]:
    if j is None:
        return []
    return [s for x in j.get(key, []) for s in _sequence(x, key)] if j.get("type") == "Sequence" else [j]


def _is_space_to_metaspace(step: dict) -> bool:
    return (step.get("type") == "Replace" and step.get("pattern") == {"String": " "}
            and step.get("content") == METASPACE)


def _spm_space_prefix(tj: dict, source: str) -> bool:
    """add_space_prefix of a SentencePiece-style tokenizer.json: its normalizer
    must be Prepend("▁") then Replace(" ", "▁") (true) or the Replace alone
    (false), with no pre-tokenizer: llama.cpp's SentencePiece tokenizer
    prepends "▁" to every text piece, also one starting with a space, which
    Metaspace does not."""
    if tj.get("pre_tokenizer") is not None:
        raise UnsupportedError(f"{source}: pre_tokenizer {tj['pre_tokenizer'].get('type')!r} on a byte-fallback BPE: "
                               f"llama.cpp's SentencePiece tokenizer has none (its '▁' prefix goes on every "
                               f"text piece, as the normalizer Prepend('▁') + Replace(' ', '▁') does)")
    steps = _sequence(tj.get("normalizer"), "normalizers")
    if len(steps) == 2 and steps[0] == {"type": "Prepend", "prepend": METASPACE} and _is_space_to_metaspace(steps[1]):
        return True
    if len(steps) == 1 and _is_space_to_metaspace(steps[0]):
        return False
    raise UnsupportedError(f"{source}: normalizer {tj.get('normalizer')!r} on a byte-fallback BPE: llama.cpp's "
                           f"SentencePiece tokenizer only replaces ' ' by '▁' and, optionally, prepends '▁'")


def _merge_pairs(model: dict, source: str) -> list[tuple[str, str]]:
    out = []
    for k, m in enumerate(model.get("merges", [])):
        pair = tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
        if len(pair) != 2 or any(" " in p for p in pair):
            raise UnsupportedError(f"{source}: merge {k + 1} {m!r} has a token with a space, which llama.cpp's "
                                   f"'a b' merges cannot spell")
        out.append(pair)
    return out


def _spm_scores(tokens: list[str], types: list[int], merges: list[tuple[str, str]], source: str) -> list[float]:
    """Scores under which llama.cpp's SentencePiece merging makes the BPE's
    merges: minus (1 + the rank of the merge that makes a token). That holds
    when, as in vocabularies converted from SentencePiece, every token a
    merge makes is made by all its splits into two tokens, at consecutive
    ranks, and no other token splits into two tokens; otherwise the BPE is
    refused, naming the token."""
    vocab = {t: i for i, t in enumerate(tokens)}
    first: dict[str, int] = {}
    count: dict[str, int] = {}
    for r, (a, b) in enumerate(merges):
        t = a + b
        if t in first and first[t] + count[t] != r:
            raise UnsupportedError(f"{source}: the merges of {t!r} are not consecutive (ranks {first[t] + 1} and "
                                   f"{r + 1}): llama.cpp merges by token score, so all splits of a token rank alike")
        first.setdefault(t, r)
        count[t] = count.get(t, 0) + 1
    scores = []
    for i, t in enumerate(tokens):
        splits = sum(t[:k] in vocab and t[k:] in vocab for k in range(1, len(t)))
        if t in first:
            if splits != count[t]:
                raise UnsupportedError(f"{source}: {t!r} splits into two tokens {splits} ways but {count[t]} merges "
                                       f"make it: llama.cpp merges any two pieces whose concatenation is a token")
            scores.append(-1.0 - first[t])
        else:
            if splits and types[i] not in _MATCHED_WHOLE:
                raise UnsupportedError(f"{source}: no merge makes {t!r}, but llama.cpp would merge its pieces "
                                       f"into it (it merges any two pieces whose concatenation is a token)")
            scores.append(_UNMERGED_SCORE)
    return scores


def _files(tok, source: str | None) -> tuple[dict, dict, Tokenizer, str | dict | None, str]:
    """(tokenizer.json, tokenizer_config.json, a Tokenizer of them, chat template, source)."""
    if isinstance(tok, Tokenizer):
        source = source or tok.path
        with open(os.path.join(tok.path, "tokenizer.json"), encoding="utf-8") as f:
            tj = json.load(f)
        config_file = os.path.join(tok.path, "tokenizer_config.json")
        tc = {}
        if os.path.exists(config_file):
            with open(config_file, encoding="utf-8") as f:
                tc = json.load(f)
        return tj, tc, tok, tok.chat_template, source
    tj, tc = tok
    tc = tc or {}
    source = source or "tokenizer.json"
    core = _core.Tokenizer.from_json(json.dumps(tj, ensure_ascii=False), json.dumps(tc, ensure_ascii=False), source)
    template = tc.get("chat_template")
    if isinstance(template, list):
        template = {t["name"]: t["template"] for t in template}
    return tj, tc, Tokenizer(core, source, template), template, source


def _bos_eos(t: Tokenizer, ids: dict[str, int], source: str) -> tuple[bool, bool]:
    """add_bos/add_eos: what the tokenizer puts around a text, which
    llama.cpp can only do with its BOS before and its EOS after (a token the
    post-processor adds becomes BOS or EOS when none is named)."""
    body, full = t.encode("x", add_special_tokens=False), t.encode("x")
    at = next(k for k in range(len(full) - len(body) + 1) if full[k:k + len(body)] == body)
    added = {"bos_token": full[:at], "eos_token": full[at + len(body):]}
    for name, extra in added.items():
        if len(extra) > 1 or (extra and ids.get(name, extra[0]) != extra[0]):
            where = "before" if name == "bos_token" else "after"
            raise UnsupportedError(f"{source}: the post-processor adds {extra} {where} a text, but llama.cpp adds "
                                   f"only its {name[:3]} token ({ids.get(name)})")
        if extra:
            ids[name] = extra[0]
    return bool(added["bos_token"]), bool(added["eos_token"])


def _chat_template_keys(template: str | dict[str, str] | None) -> dict:
    if template is None:
        return {}
    if isinstance(template, str):
        return {CHAT_TEMPLATE: template}
    # As gguf.GGUFWriter.add_chat_template writes a list of named templates.
    out = {}
    names = []
    for name, text in template.items():
        name = re.sub(r"[^A-Za-z0-9]", "_", name)
        if name == "default":
            out[CHAT_TEMPLATE] = text
        elif name:
            names.append(name)
            out[CHAT_TEMPLATE_NAMED.format(name)] = text
    if names:
        out[CHAT_TEMPLATES] = names
    return out


def tokenizer_metadata(tok, source: str | None = None, vocab_size: int | None = None,
                       config: Mapping | None = None) -> dict:
    """The tokenizer.* GGUF keys of a tokenizer, as convert_hf_to_gguf.py
    writes them, such that llama.cpp encodes as tinylm does.

    tok: a tinylm.Tokenizer (from a folder, or from GGUF metadata, which is
    given back as it was), or (tokenizer.json dict, tokenizer_config.json
    dict or None). vocab_size: the model's embedding rows, when more than
    the tokenizer's ids (the rest become "[PAD<id>]" unused tokens).
    config: the model's config.json, whose *_token_id fill special ids the
    tokenizer files leave unset, as the converter reads them.

    tokenizer.ggml.pre names the llama.cpp pre-tokenizer that splits as the
    tokenizer.json pre_tokenizer does, found from its structure. A normalizer
    is not part of llama.cpp's byte-level BPE; NFC is accepted (Qwen's), and
    text already in NFC encodes the same. A byte-fallback BPE whose
    normalizer replaces ' ' by '▁' is SentencePiece-style ("llama"), its
    scores made from the merge ranks. Anything llama.cpp cannot reproduce is
    an UnsupportedError naming the part."""
    if isinstance(tok, Tokenizer) and tok.gguf_metadata is not None:
        return dict(tok.gguf_metadata)
    tj, tc, t, template, source = _files(tok, source)
    model = tj.get("model", {})
    if model.get("type", "BPE") != "BPE":
        raise UnsupportedError(f"{source}: model {model.get('type')!r}: llama.cpp's 'gpt2' and 'llama' tokenizers "
                               f"are BPE")
    spm = bool(model.get("byte_fallback"))
    for entry in tj.get("added_tokens") or []:
        flags = [f for f in ("lstrip", "rstrip", "single_word") if entry.get(f)]
        if spm and entry.get("normalized", not entry.get("special")):
            flags.append("normalized")
        if flags:
            raise UnsupportedError(f"{source}: added token {entry['content']!r} is {'/'.join(flags)}: llama.cpp "
                                   f"matches added tokens exactly as written in the raw text")

    # id -> text, with the ids tinylm (as tokenizers) gives the added tokens.
    text = {i: s for s, i in model.get("vocab", {}).items()}
    added = {}
    for entry in tj.get("added_tokens") or []:
        i = t.token_to_id(entry["content"])
        text[i] = entry["content"]
        added[i] = entry
    n = max(text) + 1
    if vocab_size is not None:
        if vocab_size < n:
            raise FormatError(f"{source}: vocab_size {vocab_size} is less than the tokenizer's {n} ids")
        n = vocab_size

    ids: dict[str, int] = {}
    for name in SPECIAL_IDS:
        token = t.special_tokens_map.get(name)
        if token is not None and t.token_to_id(token) is not None:
            ids[name] = t.token_to_id(token)
        elif config is not None and isinstance(config.get(f"{name}_id"), int) and 0 <= config[f"{name}_id"] < n:
            ids[name] = config[f"{name}_id"]
    add_bos, add_eos = _bos_eos(t, ids, source)

    tokens, types = [], []
    for i in range(n):
        if i not in text:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
        elif i in added:
            entry = added[i]
            special = entry.get("special", False)
            s = entry["content"]
            if not spm and not entry.get("normalized", not special):
                s = t.decode(t.encode(s, add_special_tokens=False))   # the converter's pre-normalization
            tokens.append(s)
            types.append(CONTROL if special or _looks_special(s) else USER_DEFINED)
        elif spm and _BYTE_TOKEN.fullmatch(text[i]):
            tokens.append(text[i])
            types.append(BYTE)
        else:
            tokens.append(text[i])
            # The converter's SentencePiece-style vocabulary marks the named special tokens control.
            types.append(CONTROL if spm and i in ids.values() else NORMAL)

    out: dict = {}
    merges = _merge_pairs(model, source)
    if spm:
        if model.get("ignore_merges"):
            raise UnsupportedError(f"{source}: model.ignore_merges on a byte-fallback BPE: llama.cpp's "
                                   f"SentencePiece tokenizer always merges")
        prefix = _spm_space_prefix(tj, source)
        missing = [b for b in range(256) if f"<0x{b:02X}>" not in model.get("vocab", {})]
        if missing:
            raise UnsupportedError(f"{source}: byte-fallback BPE without <0x{missing[0]:02X}>: llama.cpp's "
                                   f"SentencePiece tokenizer needs all 256 byte tokens")
        out[MODEL], out[PRE] = "llama", "default"
        out[TOKENS] = tokens
        out[SCORES] = np.asarray(_spm_scores(tokens, types, merges, source), dtype=np.float32)
        out[TOKEN_TYPE] = np.asarray(types, dtype=np.int32)
        out[ADD_SPACE_PREFIX] = prefix
    else:
        norm = tj.get("normalizer")
        if norm is not None and norm != {"type": "NFC"}:
            raise UnsupportedError(f"{source}: normalizer {norm!r}: llama.cpp's byte-level BPE tokenizer does not "
                                   f"normalize (NFC alone is accepted: text in NFC encodes the same)")
        out[MODEL] = "gpt2"
        out[PRE] = pretokenizers.tokenizer_pre(tj.get("pre_tokenizer"), bool(model.get("ignore_merges")), source)
        out[TOKENS] = tokens
        out[TOKEN_TYPE] = np.asarray(types, dtype=np.int32)
        out[MERGES] = [f"{a} {b}" for a, b in merges]
    for name, key in SPECIAL_IDS.items():
        if name in ids:
            out[key] = np.uint32(ids[name])
    out[ADD_BOS], out[ADD_EOS] = add_bos, add_eos
    out.update(_chat_template_keys(template))
    return out
