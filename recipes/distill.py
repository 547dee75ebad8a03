"""Distillation: a student fine-tuned against a teacher's next-token
distribution, mixed with cross-entropy: (1 - kd_ratio) * CE + kd_ratio * KD.

    python recipes/distill.py --config recipes/configs/distill.yaml [key=value ...]
    tinylm distill train [--config FILE] [key=value ...]

The teacher is online (teacher.model, forward only, with teacher.adapter and
teacher.quant), on-policy (the same with train.distill.lmbda > 0: that share
of batches completed by the student and scored by the teacher), or offline
(teacher.cache, made by `tinylm distill cache` from the same data options).
The student is `model` with a LoRA adapter (`lora`) or fully trained
(lora: null). Writes what lora_finetune / full_finetune write
(docs/distillation.md).
"""

from tinylm.finetune import DISTILL_DEFAULTS, finetune
from tinylm.recipe_config import run_recipe

DEFAULTS = DISTILL_DEFAULTS


def main(cfg: dict) -> dict:
    """Distils cfg's teacher into the student."""
    teacher = cfg["teacher"]
    if not (teacher["model"] or teacher["cache"]):
        raise ValueError("distill needs a teacher: teacher.model=DIR (online) or teacher.cache=FILE (offline)")
    result = finetune(cfg)
    kind = "offline" if teacher["cache"] else "on-policy" if cfg["train"]["distill"]["lmbda"] > 0 else "online"
    print(f"distill ({kind}): {result['steps']} steps, train loss {result['train_loss']:.4f}, eval loss "
          f"{result['eval_loss']:.4f}, {result['tokens_per_s']:.0f} tokens/s; {result['kind']} student in "
          f"{result['output']}")
    return result


if __name__ == "__main__":
    run_recipe(main, DEFAULTS, __file__)
