"""Learning-rate schedules with warmup, as transformers computes them.

The multiplier for a step is transformers' lr_lambda of the number of
optimizer steps already taken: the first update uses lambda(0), which is 0
during warmup (the Hugging Face Trainer and torchtune behave the same way).
"""
from __future__ import annotations

import math


def warmup_steps(warmup_steps: int, warmup_ratio: float, total_steps: int) -> int:
    """warmup_steps if set, else ceil(warmup_ratio * total_steps) (transformers' rule)."""
    return warmup_steps if warmup_steps > 0 else math.ceil(warmup_ratio * total_steps)


def lr_factor(kind: str, step: int, warmup: int, total: int) -> float:
    """The multiplier of the peak learning rate after `step` updates."""
    if kind == "constant":
        return 1.0
    if step < warmup:
        return step / max(1, warmup)
    if kind == "constant_with_warmup":
        return 1.0
    if kind == "linear":
        return max(0.0, (total - step) / max(1, total - warmup))
    if kind == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    raise ValueError(f"unknown lr_scheduler_type {kind!r}")
