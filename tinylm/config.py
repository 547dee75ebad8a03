"""Reading a Hugging Face config.json (tinylm.families turns it into the
C core's block descriptor)."""
from __future__ import annotations

import json
import os

from tinylm.errors import FormatError


def read_config(path: str) -> dict:
    """Reads config.json, naming the file in every error."""
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file (a Hugging Face model folder needs config.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise FormatError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


def config_path(directory: str) -> str:
    return os.path.join(directory, "config.json")
