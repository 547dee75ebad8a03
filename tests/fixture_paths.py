"""Where the real tokenizer files live: ../shared/fixtures beside the
checkout (shared/fixtures/README.md), or the folder TINYLM_FIXTURES names.
They are not part of the repository, so a test that needs one skips, naming
the missing path, when it is absent."""
import os

import pytest

FIXTURES = os.path.abspath(os.environ.get("TINYLM_FIXTURES")
                           or os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fixtures"))
TOKENIZER_NAMES = ("mistral-7b", "qwen3")


def tokenizer_fixture(name: str) -> str:
    """The folder of the real tokenizer `name`; skips the test when absent."""
    path = os.path.join(FIXTURES, "tokenizers", name)
    if not os.path.exists(os.path.join(path, "tokenizer.json")):
        pytest.skip(f"tokenizer fixture {path} is missing (see shared/fixtures/README.md; TINYLM_FIXTURES overrides)")
    return path
