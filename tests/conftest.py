"""Shared fixtures. Tokenizers come from ../shared/fixtures; the reference is
the Hugging Face stack, wrapped to the protocol tinylm.Tokenizer implements."""
import functools
import os

import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fixtures")
TOKENIZER_DIRS = {name: os.path.join(FIXTURES, "tokenizers", name) for name in ("mistral-7b", "qwen3")}


class HFTokenizer:
    """transformers' PreTrainedTokenizerFast behind tinylm's tokenizer protocol."""

    def __init__(self, directory):
        from transformers import PreTrainedTokenizerFast
        self.hf = PreTrainedTokenizerFast.from_pretrained(directory)

    @classmethod
    def from_pretrained(cls, directory):
        return cls(directory)

    def encode(self, text, add_special_tokens=True):
        return self.hf(text, add_special_tokens=add_special_tokens)["input_ids"]

    def encode_batch(self, texts, add_special_tokens=True):
        return self.hf(list(texts), add_special_tokens=add_special_tokens)["input_ids"] if texts else []

    def decode(self, ids):
        return self.hf.decode(ids)

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True, **kwargs):
        return self.hf.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=tokenize,
                                           return_dict=False, **kwargs)

    bos_token_id = property(lambda self: self.hf.bos_token_id)
    eos_token_id = property(lambda self: self.hf.eos_token_id)
    pad_token_id = property(lambda self: self.hf.pad_token_id)
    bos_token = property(lambda self: self.hf.bos_token)
    eos_token = property(lambda self: self.hf.eos_token)


def _implementations():
    """The HF adapter always; tinylm.Tokenizer as well once it exists."""
    impls = {"hf": HFTokenizer.from_pretrained}
    try:
        import tinylm
    except ImportError:
        return impls
    if hasattr(tinylm, "Tokenizer"):
        impls["tinylm"] = tinylm.Tokenizer.from_pretrained
    return impls


# Loading a 150k-token vocabulary takes a while; tests only read tokenizers, so share them.
IMPLEMENTATIONS = {k: functools.lru_cache(maxsize=None)(v) for k, v in _implementations().items()}
_reference = functools.lru_cache(maxsize=None)(HFTokenizer)


@pytest.fixture(params=[(impl, name) for impl in IMPLEMENTATIONS for name in TOKENIZER_DIRS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def tokenizer_case(request):
    """(tokenizer under test, HF reference tokenizer, fixture name)."""
    impl, name = request.param
    return IMPLEMENTATIONS[impl](TOKENIZER_DIRS[name]), _reference(TOKENIZER_DIRS[name]), name


@pytest.fixture(params=list(IMPLEMENTATIONS))
def qwen3_case(request):
    """(tokenizer under test, HF reference) for qwen3, the fixture with a chat template."""
    return IMPLEMENTATIONS[request.param](TOKENIZER_DIRS["qwen3"]), _reference(TOKENIZER_DIRS["qwen3"])


@pytest.fixture(params=list(IMPLEMENTATIONS))
def load_tokenizer(request):
    """A function directory -> tokenizer under test, for tokenizers a test builds itself."""
    return IMPLEMENTATIONS[request.param]


@pytest.fixture
def mistral():
    """The HF reference Mistral tokenizer, for tests of the pipeline's own logic."""
    return _reference(TOKENIZER_DIRS["mistral-7b"])
