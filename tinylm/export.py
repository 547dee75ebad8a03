"""Exports of a fine-tuned model: the PEFT adapter, and the merged model (the
adapter folded into the base weights) as a standalone Hugging Face folder
that transformers loads and llama.cpp's convert_hf_to_gguf.py converts."""
from __future__ import annotations

import os

import tinylm
from tinylm.atomic import write_folder
from tinylm.recipe_support import DEMO_MODEL, copy_tokenizer, export_folder

ADAPTER_DIR, MERGED_DIR = "adapter", "merged"


def export(adapter: str, out: str, base: str | None = None, *, merged: bool = True,
           dtype: str = "float32") -> dict[str, str]:
    """Writes out/adapter (PEFT, re-saved from `adapter` after checking it
    fits the base) and, with merged, out/merged (config.json, safetensors in
    dtype, the base's tokenizer and generation files). base defaults to
    the embedded demo model. Each folder is built under a temporary name
    and renamed into place (replacing an earlier export), so it appears
    whole or not at all. Returns {"adapter": path, "merged": path}."""
    base = base or DEMO_MODEL
    model = tinylm.Model.from_pretrained(base)
    model.load_adapter(adapter)
    paths = {"adapter": os.path.join(out, ADAPTER_DIR)}
    write_folder(paths["adapter"], model.save_adapter)
    if merged:
        paths["merged"] = os.path.join(out, MERGED_DIR)

        def fill(folder):
            export_folder(model, folder, dtype=dtype, merged=True)
            copy_tokenizer(base, folder)

        write_folder(paths["merged"], fill)
    return paths
