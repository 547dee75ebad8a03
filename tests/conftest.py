"""Shared fixtures. Tokenizers come from ../shared/fixtures; the reference is
the Hugging Face stack, wrapped to the protocol tinylm.Tokenizer implements."""
import functools
import os

import pytest

from fixture_paths import TOKENIZER_NAMES, tokenizer_fixture


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


@pytest.fixture(autouse=True)
def _restore_thread_count():
    """tinylm.set_num_threads is process-wide, and so are the commands and
    recipes that take a thread count: whatever a test sets, the next test
    starts with the count the session started with."""
    try:
        import tinylm
    except ImportError:
        yield
        return
    before = tinylm.get_num_threads()
    yield
    if tinylm.get_num_threads() != before:
        tinylm.set_num_threads(before)


@pytest.fixture(params=[(impl, name) for impl in IMPLEMENTATIONS for name in TOKENIZER_NAMES],
                ids=lambda p: f"{p[0]}-{p[1]}")
def tokenizer_case(request):
    """(tokenizer under test, HF reference tokenizer, fixture name)."""
    impl, name = request.param
    path = tokenizer_fixture(name)
    return IMPLEMENTATIONS[impl](path), _reference(path), name


@pytest.fixture(params=list(IMPLEMENTATIONS))
def qwen3_case(request):
    """(tokenizer under test, HF reference) for qwen3, the fixture with a chat template."""
    path = tokenizer_fixture("qwen3")
    return IMPLEMENTATIONS[request.param](path), _reference(path)


@pytest.fixture(params=list(IMPLEMENTATIONS))
def load_tokenizer(request):
    """A function directory -> tokenizer under test, for tokenizers a test builds itself."""
    return IMPLEMENTATIONS[request.param]


@pytest.fixture
def mistral():
    """The HF reference Mistral tokenizer, for tests of the pipeline's own logic."""
    return _reference(tokenizer_fixture("mistral-7b"))


@pytest.fixture(scope="session")
def gguf_converted(tmp_path_factory):
    """case -> (HF model, HF folder, the converter's F32 .gguf): tests/gguf_fixtures.py."""
    from gguf_fixtures import convert_cases
    return convert_cases(tmp_path_factory.mktemp("gguf_converted"))
