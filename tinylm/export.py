"""Exports of a fine-tuned model: the PEFT adapter, and the merged model (the
adapter folded into the base weights) as a standalone Hugging Face folder
that transformers loads and llama.cpp's convert_hf_to_gguf.py converts."""
from __future__ import annotations

import os
import shutil

import tinylm
from tinylm.recipe_support import DEMO_MODEL, TOKENIZER_FILES, export_folder

ADAPTER_DIR, MERGED_DIR = "adapter", "merged"


def export(adapter: str, out: str, base: str | None = None, *, merged: bool = True,
           dtype: str = "float32") -> dict[str, str]:
    """Writes out/adapter (PEFT, re-saved from `adapter` after checking it
    fits the base) and, with merged, out/merged (config.json, safetensors in
    dtype, the base's tokenizer and generation files). base defaults to
    the embedded demo model. Returns {"adapter": path, "merged": path}."""
    base = base or DEMO_MODEL
    model = tinylm.Model.from_pretrained(base)
    model.load_adapter(adapter)
    paths = {"adapter": os.path.join(out, ADAPTER_DIR)}
    model.save_adapter(paths["adapter"])
    if merged:
        paths["merged"] = os.path.join(out, MERGED_DIR)
        export_folder(model, paths["merged"], dtype=dtype, merged=True)
        for name in TOKENIZER_FILES:
            source = os.path.join(base, name)
            if os.path.exists(source):
                shutil.copy(source, paths["merged"])
    return paths
