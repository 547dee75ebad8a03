"""tinylm.Tokenizer: Hugging Face tokenizer.json BPE tokenizers, encoded in C.

Both BPE families load: byte-level BPE (GPT-2, SmolLM, Qwen2/2.5/3,
Llama-3) and SentencePiece-style BPE with byte fallback (Llama-2, TinyLlama,
Mistral). Encodings equal the `tokenizers` library's; chat templates render
as transformers renders them.

    >>> tok = Tokenizer.from_pretrained("path/to/model")
    >>> ids = tok.encode("Hello world")
    >>> tok.decode(ids)
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from tinylm import _core
from tinylm.chat_template import load_chat_template, render_chat_template


class Tokenizer:
    """A BPE tokenizer from a folder holding tokenizer.json and, optionally,
    tokenizer_config.json (special token names, add_bos_token/add_eos_token,
    chat_template) and chat_template.jinja; or one made from a GGUF file's
    metadata (tinylm.gguf.tokenizer), whose tokenizer.* keys it keeps in
    gguf_metadata (None otherwise)."""

    def __init__(self, core: _core.Tokenizer, path: str, chat_template: str | dict[str, str] | None = None,
                 chat_template_file: str | None = None, gguf_metadata: dict | None = None):
        self._core = core
        self.path = path
        self._special = core.special_tokens
        self.chat_template, self._chat_template_file = chat_template, chat_template_file
        self.gguf_metadata = gguf_metadata

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "Tokenizer":
        """Loads path/tokenizer.json, or a .gguf file's tokenizer (its
        tokenizer.ggml.* keys, with llama.cpp's semantics: docs/gguf.md). An
        unsupported model, normalizer, pre-tokenizer, decoder or
        post-processor raises UnsupportedError, malformed JSON or metadata
        FormatError, a missing tokenizer.json OSError."""
        path = os.fspath(path)
        if os.path.isfile(path):
            # tinylm.gguf.tokenizer builds on this class: imported when a file asks for it
            from tinylm.gguf.file import GGUFFile
            from tinylm.gguf.tokenizer import tokenizer_from_metadata
            with GGUFFile(path) as f:
                return tokenizer_from_metadata(f.metadata, path)
        return cls(_core.Tokenizer(path), path, *load_chat_template(path))

    # -------------------------------------------------------------- encoding
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of text; with add_special_tokens, the post-processor's
        (BOS/EOS) as well."""
        return self._core.encode(text, add_special_tokens)

    def encode_batch(self, texts: Iterable[str], add_special_tokens: bool = True) -> list[list[int]]:
        """encode() of each text, in parallel over tinylm.set_num_threads()
        threads with the GIL released."""
        return self._core.encode_batch(texts, add_special_tokens)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of ids; ids outside the vocabulary are skipped."""
        return self._core.decode(ids, skip_special_tokens)

    # ------------------------------------------------------------ vocabulary
    @property
    def vocab_size(self) -> int:
        """Number of distinct ids, added tokens included: len() of the
        transformers tokenizer, get_vocab_size(with_added_tokens=True) of
        `tokenizers`."""
        return self._core.vocab_size

    def __len__(self) -> int:
        return self._core.vocab_size

    def token_to_id(self, token: str) -> int | None:
        return self._core.token_to_id(token)

    def id_to_token(self, id: int) -> str | None:
        return self._core.id_to_token(id)

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """Named special tokens that are set ({"bos_token": "<s>", ...}), from
        tokenizer_config.json; unk_token falls back to the model's."""
        return dict(self._special)

    @property
    def bos_token(self) -> str | None:
        return self._special.get("bos_token")

    @property
    def eos_token(self) -> str | None:
        return self._special.get("eos_token")

    @property
    def pad_token(self) -> str | None:
        return self._special.get("pad_token")

    @property
    def unk_token(self) -> str | None:
        return self._special.get("unk_token")

    def _special_id(self, name: str) -> int | None:
        token = self._special.get(name)
        return None if token is None else self._core.token_to_id(token)

    @property
    def bos_token_id(self) -> int | None:
        return self._special_id("bos_token")

    @property
    def eos_token_id(self) -> int | None:
        return self._special_id("eos_token")

    @property
    def pad_token_id(self) -> int | None:
        return self._special_id("pad_token")

    @property
    def unk_token_id(self) -> int | None:
        return self._special_id("unk_token")

    # ---------------------------------------------------------- chat format
    def apply_chat_template(self, messages, add_generation_prompt: bool = False, tokenize: bool = True,
                            chat_template: str | None = None, tools=None, documents=None, **kwargs):
        """Renders messages with the chat template as transformers does (the
        special token strings and kwargs are template variables); returns the
        ids of the text (encoded without added BOS/EOS, since templates write
        their own) when tokenize, else the text."""
        text = render_chat_template(self.chat_template, messages, chat_template=chat_template,
                                    add_generation_prompt=add_generation_prompt, tools=tools,
                                    documents=documents, special_tokens=self._special,
                                    source=self._chat_template_file or "chat template", **kwargs)
        return self.encode(text, add_special_tokens=False) if tokenize else text

    def __repr__(self) -> str:
        return f"Tokenizer({self.path!r}, vocab_size={self.vocab_size})"
