r"""llama.cpp's byte-level BPE pre-tokenizers (tokenizer.ggml.pre) as
tokenizer.json pre-tokenizers, and back.

llama.cpp splits a text with a list of regexes, each cutting every piece the
ones before it left into its matches and the text between them, then spells
the bytes in GPT-2's alphabet (llm_tokenizer_bpe in src/llama-vocab.cpp).
In tokenizer.json terms that is a Sequence of Split(regex, "Isolated") steps
and ByteLevel(use_regex=false). A name also fixes whether a word already in
the vocabulary skips the merges (ignore_merges) and whether BOS is added when
the file does not say (tokenizer.ggml.add_bos_token).

The regexes are written as the models' tokenizer.json files write them,
which is what tinylm's regex engine reads (llama.cpp's copies spell
"(?i:'s|...)" as "'[sS]|...", its regex engine having no (?i)). Each name
here splits the tokenizer test corpus as llama.cpp does. Left out: tekken,
gpt-4o and llama4, whose llama.cpp copies ("(?=[\p{L}])([^a-z])" for the
letter classes) leave out the combining marks the originals count as
letters, so no regex of the tokenizer.json kind splits as llama.cpp does.
"""
from __future__ import annotations

from dataclasses import dataclass

from tinylm.errors import UnsupportedError

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN35 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SEED_CODER = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
DIGIT = r"\p{N}"


@dataclass(frozen=True)
class PreTokenizer:
    regexes: tuple[str, ...]
    ignore_merges: bool = False
    add_bos: bool = False   # llama.cpp's add_bos when tokenizer.ggml.add_bos_token is absent


_GPT2 = PreTokenizer((GPT2,))
_SMOLLM = PreTokenizer((DIGIT, GPT2))
_LLAMA3 = PreTokenizer((LLAMA3,), ignore_merges=True, add_bos=True)
_LLAMA3_MERGING = PreTokenizer((LLAMA3,))
_QWEN2 = PreTokenizer((QWEN2,))

# llama.cpp's names (llama_vocab::impl::load) -> pipeline. Where names share
# a pipeline the first one listed is the one tokenizer_pre() writes.
BY_NAME: dict[str, PreTokenizer] = {
    "gpt-2": _GPT2, "phi-2": _GPT2, "mpt": _GPT2, "olmo": _GPT2,
    "smollm": _SMOLLM, "starcoder": _SMOLLM, "refact": _SMOLLM, "command-r": _SMOLLM, "codeshell": _SMOLLM,
    "exaone": _SMOLLM, "minerva-7b": _SMOLLM,
    "llama-bpe": _LLAMA3, "llama3": _LLAMA3, "llama-v3": _LLAMA3, "falcon3": _LLAMA3, "falcon-h1": _LLAMA3,
    "pixtral": _LLAMA3, "midm-2.0": _LLAMA3, "lfm2": _LLAMA3,
    "smaug-bpe": _LLAMA3_MERGING, "dbrx": _LLAMA3_MERGING,
    "qwen2": _QWEN2, "deepseek-r1-qwen": _QWEN2, "megrez": _QWEN2, "stablelm2": _QWEN2, "hunyuan": _QWEN2,
    "qwen35": PreTokenizer((QWEN35,)),
    "seed-coder": PreTokenizer((SEED_CODER,)),
    "default": PreTokenizer((r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]")),
    "falcon": PreTokenizer((r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]")),
    "deepseek-coder": PreTokenizer(("[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", "[一-龥ࠀ-一가-퟿]+", DIGIT)),
}

_BY_PIPELINE: dict[PreTokenizer, str] = {}
for _name, _pre in BY_NAME.items():
    _BY_PIPELINE.setdefault(_pre, _name)


def lookup(name: str, key: str, source: str) -> PreTokenizer:
    """The pipeline of llama.cpp pre-tokenizer `name`; a missing name
    (empty) is llama.cpp's "default"."""
    pre = BY_NAME.get(name or "default")
    if pre is None:
        raise UnsupportedError(f"{source}: unsupported {key} {name!r} (tinylm reads {', '.join(sorted(BY_NAME))})")
    return pre


def pre_tokenizer_json(pre: PreTokenizer) -> dict:
    """The tokenizer.json pre_tokenizer that splits as `pre` does."""
    steps = [{"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": False} for r in pre.regexes]
    steps.append({"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False})
    return {"type": "Sequence", "pretokenizers": steps}


def _steps(j: dict | None) -> list[dict]:
    if j is None:
        return []
    if j.get("type") == "Sequence":
        return [s for p in j.get("pretokenizers", []) for s in _steps(p)]
    return [j]


def _regexes(pre_tokenizer: dict | None, source: str) -> tuple[str, ...]:
    """The regex list of a tokenizer.json pre_tokenizer that ends in ByteLevel;
    a step llama.cpp has no counterpart for is refused by name."""
    where = f"{source}: pre_tokenizer"
    out: list[str] = []
    steps = _steps(pre_tokenizer)
    if not steps or steps[-1].get("type") != "ByteLevel":
        raise UnsupportedError(f"{where} does not end in ByteLevel: llama.cpp's BPE tokenizer is byte-level")
    for k, step in enumerate(steps):
        kind = step.get("type")
        if kind == "ByteLevel":
            if k != len(steps) - 1:
                raise UnsupportedError(f"{where}: ByteLevel before other steps has no llama.cpp counterpart")
            if step.get("add_prefix_space", True):
                raise UnsupportedError(f"{where}: ByteLevel add_prefix_space=true (llama.cpp never prepends a space)")
            if step.get("use_regex", True):
                out.append(GPT2)
        elif kind == "Split":
            pattern = step.get("pattern", {})
            if step.get("behavior") != "Isolated" or step.get("invert", False) or "Regex" not in pattern:
                raise UnsupportedError(f"{where}: Split other than an Isolated, non-inverted regex "
                                       f"has no llama.cpp counterpart ({step!r})")
            out.append(pattern["Regex"])
        elif kind == "Digits" and step.get("individual_digits", False):
            out.append(DIGIT)   # tokenizers' digits are char::is_numeric: \p{N}
        else:
            raise UnsupportedError(f"{where}: {kind} ({step!r}) has no llama.cpp counterpart")
    return tuple(out)


def tokenizer_pre(pre_tokenizer: dict | None, ignore_merges: bool, source: str) -> str:
    """The llama.cpp name whose splitting equals tokenizer.json's
    pre_tokenizer with the model's ignore_merges, found from the pipeline's
    structure; UnsupportedError when llama.cpp has none."""
    pre = PreTokenizer(_regexes(pre_tokenizer, source), ignore_merges=ignore_merges)
    for known, name in _BY_PIPELINE.items():
        if known.regexes == pre.regexes and known.ignore_merges == ignore_merges:
            return name
    if any(known.regexes == pre.regexes for known in _BY_PIPELINE):
        raise UnsupportedError(f"{source}: model.ignore_merges={str(ignore_merges).lower()} with this pre_tokenizer: "
                               f"llama.cpp's pre-tokenizer of the same split "
                               f"{'always merges' if ignore_merges else 'skips the merges of vocabulary words'}")
    raise UnsupportedError(f"{source}: pre_tokenizer splits by {list(pre.regexes)!r}, "
                           f"which no llama.cpp pre-tokenizer does")
