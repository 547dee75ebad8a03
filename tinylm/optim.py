"""AdamW and gradient clipping over a Model's trainable parameters (in C)."""
from __future__ import annotations

import fnmatch

import numpy as np

from tinylm.model import Model

# As the Hugging Face Trainer does: no weight decay on biases and norm weights.
DEFAULT_NO_DECAY = ("*.bias", "*norm.weight", "*layernorm.weight")


class AdamW:
    """torch.optim.AdamW's update (decoupled weight decay, bias correction).

    no_decay: glob patterns of parameter names that get no weight decay
    (default: biases and norm weights; pass () to decay everything, as
    torch.optim.AdamW does). lr may be changed between steps.
    """

    def __init__(self, model: Model, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, no_decay=DEFAULT_NO_DECAY):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"AdamW: invalid lr={lr}, betas={betas}, eps={eps} or weight_decay={weight_decay}")
        self.model, self.lr, self.betas, self.eps, self.weight_decay = model, lr, tuple(betas), eps, weight_decay
        self.step_count = 0
        for i, name in enumerate(model.parameter_names()):
            decay = not any(fnmatch.fnmatchcase(name, p) for p in no_decay)
            model._core.set_decay(i, decay)

    def step(self) -> None:
        self.step_count += 1
        self.model._core.adamw_step(self.lr, self.betas[0], self.betas[1], self.eps, self.weight_decay,
                                    self.step_count)

    def zero_grad(self) -> None:
        self.model.zero_grad()

    def state_dict(self) -> dict:
        """{"step": n, "exp_avg": {name: array}, "exp_avg_sq": {name: array}}
        (copies) for the trainable parameters, in torch's names."""
        exp_avg, exp_avg_sq = {}, {}
        for i, name in enumerate(self.model.parameter_names()):
            moments = self.model._core.adam_state(i)
            if moments is not None:
                exp_avg[name], exp_avg_sq[name] = (np.array(m) for m in moments)
        return {"step": self.step_count, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}

    def load_state_dict(self, state: dict) -> None:
        """Restores state_dict()'s moments; they must cover exactly the
        model's trainable parameters, with the same shapes."""
        trainable = set(self.model.trainable_names())
        for key in ("exp_avg", "exp_avg_sq"):
            if set(state[key]) != trainable:
                extra, missing = sorted(set(state[key]) - trainable), sorted(trainable - set(state[key]))
                raise ValueError(f"optimizer state {key} does not match the trainable parameters "
                                 f"(missing {missing[:3]}, not trainable {extra[:3]})")
        self.model._core.adamw_prepare()
        for i, name in enumerate(self.model.parameter_names()):
            if name not in trainable:
                continue
            for view, saved in zip(self.model._core.adam_state(i), (state["exp_avg"][name], state["exp_avg_sq"][name])):
                view = np.asarray(view)
                saved = np.asarray(saved, dtype=np.float32)
                if saved.shape != view.shape:
                    raise ValueError(f"optimizer state for {name}: shape {list(saved.shape)}, "
                                     f"expected {list(view.shape)}")
                view[...] = saved
        self.step_count = int(state["step"])


def clip_grad_norm(model: Model, max_norm: float | None) -> float:
    """Scales all gradients so their global L2 norm is at most max_norm (as
    torch.nn.utils.clip_grad_norm_) and returns the norm before clipping;
    max_norm=None only measures it."""
    if max_norm is not None and max_norm <= 0:
        raise ValueError(f"max_norm must be > 0 (or None to only measure), got {max_norm}")
    return model._core.clip_grad_norm(float(max_norm or 0.0))
