"""Quantization-aware fine-tuning: LoRA (or, with lora: null, every weight)
trained through the fake quantizer of the file it ships as, then that file.

    python recipes/qat_finetune.py --config recipes/configs/qat_finetune.yaml [key=value ...]
    tinylm run qat_finetune [key=value ...]

train.qat.scheme names the target: a GGUF file type (Q4_0, Q4_K_M, Q8_0,
...) or a torchao scheme (int4_g32, 8da4w_g32); fake_quant_after_n_steps
float steps come first; self_distill makes the float model the teacher.
Writes output_dir/model.gguf (GGUF file types: the adapter merged, each
tensor of the type it trained as), output_dir/adapter or output_dir/model
(the float result) and output_dir/train. See docs/qat.md.
"""

from tinylm.finetune import QAT_DEFAULTS, finetune
from tinylm.recipe_config import run_recipe

DEFAULTS = QAT_DEFAULTS


def main(cfg: dict) -> dict:
    """Fine-tuning with the projections fake-quantized as train.qat says."""
    if not cfg["train"].get("qat"):
        raise ValueError("qat_finetune needs a train.qat section (scheme: Q4_0, Q4_K_M, int4_g32, ...)")
    result = finetune(cfg)
    shipped = result["gguf"] or result["output"]
    print(f"qat_finetune: {result['steps']} steps, train loss {result['train_loss']:.4f}, "
          f"eval loss {result['eval_loss']:.4f}; {shipped}")
    return result


if __name__ == "__main__":
    run_recipe(main, DEFAULTS, __file__)
