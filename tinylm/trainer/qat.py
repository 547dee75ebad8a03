"""The Trainer's quantization-aware training (TrainConfig.qat): the fake
quantizers set on the model, switched on after the float warm-up steps, and
the float teacher of self-distillation."""
from __future__ import annotations

from tinylm.quant.config import QATConfig


def float_teacher(model):
    """A frozen float copy of the model as it is now, the active adapter
    folded in: the teacher of QAT self-distillation."""
    from tinylm.model import Model
    teacher = Model(model.config, source="the QAT teacher")
    adapted = set(model._adapted_weights()) if model.active_adapter is not None else set()
    teacher.load_state_dict({name: model._merged_param(name) if name in adapted else model.weight(name)
                             for name in model.base_names()})
    teacher.freeze()
    return teacher


def prepare(model, qat: QATConfig, teacher):
    """Sets the fake quantizers (off until fake_quant_after_n_steps) and
    returns the teacher the Trainer distills from: the given one, or with
    self_distill the float model."""
    if qat.self_distill:
        if teacher is not None:
            raise ValueError("qat.self_distill makes the float model the teacher: give no other teacher")
        teacher = float_teacher(model)
    model.set_fake_quant(qat.scheme, target_modules=qat.target_modules)
    at_step(model, qat, 1)
    return teacher


def at_step(model, qat: QATConfig, step: int) -> None:
    """Before optimizer step `step` (from 1): the first fake_quant_after_n_steps train the float model."""
    model.enable_fake_quant(step > qat.fake_quant_after_n_steps)
