"""DistillConfig: how a student's loss mixes cross-entropy with a teacher's
divergence (the Trainer's `distill` section, Model.loss(teacher=...))."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from tinylm.distill import LOSSES


@dataclass
class DistillConfig:
    """loss = (1 - kd_ratio) * CE + kd_ratio * KD, each averaged over the
    tokens with a label. KD: "forward_kl" (KL(teacher || student)),
    "reverse_kl", or "jsd" (generalized JSD with beta, TRL's convention: 0 is
    forward KL, 1 reverse), between the two softmaxes at `temperature`;
    top_k keeps the teacher's k most likely ids, with a tail bucket (tail)
    or renormalised; scale_by_t2 multiplies KD by temperature^2. lmbda > 0 makes that share
    of micro-batches on-policy (GKD): the student samples their completions
    at generation_temperature and the loss there is KD alone."""
    loss: str = "forward_kl"
    kd_ratio: float = 0.5
    temperature: float = 1.0
    beta: float = 0.5
    top_k: int | None = None
    tail: bool = True
    scale_by_t2: bool = False
    lmbda: float = 0.0                  # on-policy (GKD): the share of batches the student completes itself
    generation_temperature: float = 0.9  # its sampling temperature there (TRL's GKD default; 0 greedy)
    max_new_tokens: int | None = None    # a cap on those completions (default: each row's own length)

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"distill loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        if not 0.0 <= float(self.kd_ratio) <= 1.0:
            raise ValueError(f"kd_ratio must be in [0, 1], got {self.kd_ratio!r}")
        if not float(self.temperature) > 0.0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        if not 0.0 <= float(self.lmbda) <= 1.0:
            raise ValueError(f"lmbda must be in [0, 1], got {self.lmbda!r}")
        if not float(self.generation_temperature) >= 0.0:
            raise ValueError(f"generation_temperature must be >= 0, got {self.generation_temperature!r}")
        if self.max_new_tokens is not None and (isinstance(self.max_new_tokens, bool) or
                                                not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1):
            raise ValueError(f"max_new_tokens must be a positive integer or None, got {self.max_new_tokens!r}")
        if not 0.0 <= float(self.beta) <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta!r}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise ValueError(f"top_k must be a positive integer or None, got {self.top_k!r}")

    def core_args(self) -> tuple:
        """The core's (kind, beta, temperature, top_k, tail, kd_ratio, scale_by_t2)."""
        return (LOSSES[self.loss], float(self.beta), float(self.temperature), int(self.top_k or 0),
                int(bool(self.tail)), float(self.kd_ratio), bool(self.scale_by_t2))

    def to_dict(self) -> dict:
        return asdict(self)
