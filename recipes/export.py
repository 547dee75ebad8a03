"""Export: a fine-tuned LoRA adapter as a PEFT folder and merged into the
base as a standalone Hugging Face model.

    python recipes/export.py --config recipes/configs/export.yaml [key=value ...]
    tinylm run export adapter=out/lora/adapter

Writes output_dir/adapter (PEFT) and output_dir/merged (config.json,
model.safetensors, tokenizer files). Load them with
`PeftModel.from_pretrained(base, "out/export/adapter")` or
`AutoModelForCausalLM.from_pretrained("out/export/merged")`; for llama.cpp,
convert the merged folder with its convert_hf_to_gguf.py.
"""

from tinylm.export import export
from tinylm.recipe_config import run_recipe

DEFAULTS = {
    "output_dir": "out/export",
    "model": None,          # the base the adapter was trained on; None: the embedded demo model
    "adapter": "out/lora/adapter",
    "merged": True,
    "dtype": "float32",     # of the merged weights: float32, bfloat16 or float16
}


def main(cfg: dict) -> dict:
    """Exports a LoRA adapter (PEFT) and the merged model (Hugging Face)."""
    paths = export(cfg["adapter"], cfg["output_dir"], cfg["model"], merged=cfg["merged"], dtype=cfg["dtype"])
    for kind, path in paths.items():
        print(f"export: {kind} -> {path}")
    return paths


if __name__ == "__main__":
    run_recipe(main, DEFAULTS, __file__)
