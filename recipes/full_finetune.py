"""Full fine-tuning: every weight of the model trained (no adapter), the
result written as a complete Hugging Face model folder.

    python recipes/full_finetune.py --config recipes/configs/full_finetune.yaml [key=value ...]
    tinylm run full_finetune [key=value ...]

Writes output_dir/model (config.json, model.safetensors, the base's
tokenizer files) and output_dir/train (checkpoints, metrics, loss curve).
"""

from tinylm.finetune import FINETUNE_DEFAULTS, finetune
from tinylm.recipe_config import run_recipe

# Full fine-tuning moves every weight: a lower learning rate than LoRA's.
DEFAULTS = dict(FINETUNE_DEFAULTS, output_dir="out/full", lora=None,
                train=dict(FINETUNE_DEFAULTS["train"], learning_rate=3e-4))


def main(cfg: dict) -> dict:
    """Full fine-tuning: every weight trained, a new model folder out."""
    if cfg["lora"]:
        raise ValueError("full_finetune trains every weight: set lora: null (or use lora_finetune)")
    result = finetune(cfg)
    print(f"full_finetune: {result['steps']} steps, train loss {result['train_loss']:.4f}, "
          f"eval loss {result['eval_loss']:.4f}; model in {result['output']}")
    return result


if __name__ == "__main__":
    run_recipe(main, DEFAULTS, __file__)
