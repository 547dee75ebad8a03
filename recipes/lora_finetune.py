"""LoRA fine-tuning: a PEFT adapter trained on a prompt/completion, alpaca,
chat or text dataset, with the base model frozen.

    python recipes/lora_finetune.py --config recipes/configs/lora_finetune.yaml [key=value ...]
    tinylm run lora_finetune [key=value ...]

Writes output_dir/adapter (PEFT: adapter_config.json + adapter_model.safetensors)
and output_dir/train (checkpoints, metrics.jsonl, loss_curve.png).
"""

from tinylm.finetune import FINETUNE_DEFAULTS, finetune
from tinylm.recipe_config import run_recipe

DEFAULTS = dict(FINETUNE_DEFAULTS, output_dir="out/lora")


def main(cfg: dict) -> dict:
    """LoRA fine-tuning of a frozen base model."""
    if not cfg["lora"]:
        raise ValueError("lora_finetune needs a lora section (use full_finetune to train every weight)")
    result = finetune(cfg)
    print(f"lora_finetune: {result['steps']} steps, train loss {result['train_loss']:.4f}, "
          f"eval loss {result['eval_loss']:.4f}; adapter in {result['output']}")
    return result


if __name__ == "__main__":
    run_recipe(main, DEFAULTS, __file__)
