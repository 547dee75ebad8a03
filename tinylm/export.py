"""Exports of a fine-tuned model: the PEFT adapter, the merged model (the
adapter folded into the base weights) as a standalone Hugging Face folder
that transformers loads, and GGUF files llama.cpp runs (the merged model in
a llama.cpp file type, the adapter as llama.cpp's LoRA adapter)."""
from __future__ import annotations

import os

import tinylm
from tinylm.atomic import write_folder
from tinylm.recipe_support import DEMO_MODEL, copy_tokenizer, export_folder

ADAPTER_DIR, MERGED_DIR = "adapter", "merged"
ADAPTER_GGUF = "adapter.gguf"


def export(adapter: str | None, out: str, base: str | None = None, *, merged: bool = True,
           dtype: str = "float32", gguf: str | None = None, gguf_adapter: bool = False,
           output_type: str | None = None) -> dict[str, str]:
    """Writes out/adapter (PEFT, re-saved from `adapter` after checking it
    fits the base) and, with merged, out/merged (config.json, safetensors in
    dtype, the base's tokenizer and generation files). gguf="Q4_K_M" (any
    llama.cpp file type) also writes out/model-Q4_K_M.gguf, the adapter
    merged in; gguf_adapter writes out/adapter.gguf, llama.cpp's LoRA
    adapter for the base unmerged (output_type: the GGUF head's type, as
    llama-quantize --output-tensor-type). base defaults to the embedded demo
    model and may be a .gguf file. Each folder is built under a temporary
    name and renamed into place (replacing an earlier export), so it appears
    whole or not at all; each file likewise. Returns {kind: path}."""
    base = base or DEMO_MODEL
    model = tinylm.Model.from_pretrained(base)
    paths = {}
    if adapter:
        model.load_adapter(adapter)
        paths["adapter"] = os.path.join(out, ADAPTER_DIR)
        write_folder(paths["adapter"], model.save_adapter)
    elif merged or gguf_adapter:
        raise ValueError("an adapter is needed for the merged model and the GGUF adapter (or pass merged=False)")
    if merged:
        paths["merged"] = os.path.join(out, MERGED_DIR)

        def fill(folder):
            export_folder(model, folder, dtype=dtype, merged=True)
            copy_tokenizer(base, folder)

        write_folder(paths["merged"], fill)
    if gguf:
        os.makedirs(out, exist_ok=True)
        paths["gguf"] = os.path.join(out, f"model-{gguf.upper()}.gguf")
        model.save_gguf(paths["gguf"], gguf, merged=bool(adapter), output_type=output_type)
    if gguf_adapter:
        os.makedirs(out, exist_ok=True)
        paths["gguf_adapter"] = os.path.join(out, ADAPTER_GGUF)
        model.save_adapter(paths["gguf_adapter"], format="gguf")
    return paths
