"""Checkpoint folders: output_dir/checkpoint-<step>/, as the Hugging Face
Trainer lays them out, written whole or not at all.

A checkpoint holds the trained weights (a PEFT adapter folder's files, or a
full model's config.json + model.safetensors), optimizer.safetensors (AdamW's
exp_avg / exp_avg_sq per trainable parameter, under its Hugging Face name)
trainer_state.json (progress, schedule, config) and rng_state.json (the
LoRA dropout counter, numpy's and Python's generators). Every folder is filled under a temporary name and
renamed into place (tinylm.atomic.write_folder), so a crash leaves either
the complete folder or none, and the folders of earlier steps are never
touched by a later write.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np

from tinylm import _core, checkpoint
from tinylm.atomic import remove_folder, remove_stale
from tinylm.adapters import PEFT_PREFIX, WEIGHTS_NAME
from tinylm.errors import FormatError, NumericError

OPTIMIZER_NAME = "optimizer.safetensors"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


# ------------------------------------------------------------------ folders
def checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """(step, path) of the complete checkpoints in output_dir, oldest first."""
    if not os.path.isdir(output_dir):
        return []
    found = [(int(m.group(1)), os.path.join(output_dir, name))
             for name in os.listdir(output_dir) if (m := _CHECKPOINT.match(name))]
    return sorted(found)


def prune(output_dir: str, keep: int | None) -> None:
    """Deletes all but the newest `keep` checkpoints (each vanishing whole),
    and the temporary folders and files killed processes left behind."""
    remove_stale(output_dir)
    if keep is not None:
        for _, path in checkpoints(output_dir)[:-keep]:
            remove_folder(path)


# ------------------------------------------------------------------ weights
def check_finite(model, step: int) -> None:
    """Refuses to save trainable parameters holding NaN or inf (a NaN can
    stay out of the loss, e.g. in a query that every key then ignores)."""
    for name in model.trainable_names():
        if not np.isfinite(model.param(name)).all():
            raise NumericError(f"step {step}: parameter {name} holds NaN or inf; not writing it to a checkpoint")


def save_weights(model, folder: str) -> None:
    """The active adapter in PEFT format, or the whole model when no adapter is active."""
    if model.active_adapter is not None:
        model.save_adapter(folder)
    else:
        model.save_pretrained(folder)


def load_weights(model, folder: str) -> None:
    """Reads save_weights' files into the model's existing parameters."""
    adapter = model.active_adapter
    if adapter is None:
        checkpoint.load_weights(model._core, folder)
        return
    path = os.path.join(folder, WEIGHTS_NAME)
    tag = f".{adapter}."
    with _core.SafetensorsFile(path) as st:
        shapes = {name: tuple(shape) for name, _, shape in st.tensors()}
        for name in model.trainable_names():
            key = PEFT_PREFIX + name.replace(tag, ".")
            param = model.param(name)
            if shapes.get(key) != param.shape:
                found = "missing" if key not in shapes else f"shaped {list(shapes[key])}"
                raise FormatError(f"{path}: tensor \"{key}\" is {found}; the model's adapter "
                                  f"{adapter!r} needs {list(param.shape)}")
            st.read_into(key, param)


# ---------------------------------------------------------------- optimizer
def save_optimizer(optimizer, folder: str) -> None:
    """AdamW's moments as safetensors (<name>.exp_avg / .exp_avg_sq, torch's
    names) with the step count in the metadata."""
    state = optimizer.state_dict()
    entries = [(name + suffix, "F32", array.shape, array)
               for suffix, key in ((".exp_avg", "exp_avg"), (".exp_avg_sq", "exp_avg_sq"))
               for name, array in state[key].items()]
    checkpoint.write_safetensors(os.path.join(folder, OPTIMIZER_NAME), entries,
                            {"format": "tinylm-adamw", "step_count": str(state["step"])})


def load_optimizer(optimizer, folder: str) -> None:
    """Restores AdamW's moments and step count; the file must hold exactly
    the moments of the model's trainable parameters."""
    path = os.path.join(folder, OPTIMIZER_NAME)
    state = {"exp_avg": {}, "exp_avg_sq": {}}
    with _core.SafetensorsFile(path) as st:
        state["step"] = int(st.metadata().get("step_count", 0))
        for name, _, shape in st.tensors():
            base, _, kind = name.rpartition(".")
            if kind not in state or not base:
                raise FormatError(f"{path}: tensor \"{name}\" is not an AdamW moment")
            array = np.empty(shape, dtype=np.float32)
            st.read_into(name, array)
            state[kind][base] = array
    try:
        optimizer.load_state_dict(state)
    except ValueError as exc:
        raise FormatError(f"{path}: {exc} (is the model's trainable set the one the checkpoint was trained "
                          f"with?)") from None


# ------------------------------------------------------------- state files
def read_json(folder: str, name: str) -> dict:
    path = os.path.join(folder, name)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}: not valid JSON: {exc}") from None
