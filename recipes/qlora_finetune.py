"""QLoRA fine-tuning: LoRA on a base whose projection weights are stored in
NF4 (bitsandbytes' 4-bit NormalFloat, double-quantized) or int8 and
expanded tile by tile before each GEMM, for about a quarter of the
memory of the f32 base.

    python recipes/qlora_finetune.py --config recipes/configs/qlora_finetune.yaml [key=value ...]
    tinylm run qlora_finetune [key=value ...]

The adapter (output_dir/adapter) is PEFT's format and applies to the
unquantized base as well.
"""

from tinylm.finetune import FINETUNE_DEFAULTS, finetune
from tinylm.recipe_config import run_recipe

DEFAULTS = dict(FINETUNE_DEFAULTS, output_dir="out/qlora", quant="nf4")


def main(cfg: dict) -> dict:
    """LoRA fine-tuning on a quantized (NF4 or int8) frozen base."""
    if cfg["quant"] not in ("nf4", "int8"):
        raise ValueError(f"qlora_finetune needs quant: nf4 or int8, got {cfg['quant']!r}")
    if not cfg["lora"]:
        raise ValueError("qlora_finetune needs a lora section")
    result = finetune(cfg)
    print(f"qlora_finetune ({cfg['quant']} base): {result['steps']} steps, train loss {result['train_loss']:.4f}, "
          f"eval loss {result['eval_loss']:.4f}; adapter in {result['output']}")
    return result


if __name__ == "__main__":
    run_recipe(main, DEFAULTS, __file__)
