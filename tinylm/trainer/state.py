"""What a checkpoint records besides tensors: the training progress and
every random state a resumed run needs to continue exactly."""
from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field

import numpy as np

STATE_NAME = "trainer_state.json"
RNG_NAME = "rng_state.json"


@dataclass
class TrainerState:
    """Progress of a run (trainer_state.json in a checkpoint).

    data_position is the next micro-batch, {"epoch", "batch"}; epoch the
    epochs done as a float; best_metric the lowest eval loss so far and
    best_global_step its step.
    """
    global_step: int = 0
    epoch: float = 0.0
    data_position: dict = field(default_factory=lambda: {"epoch": 0, "batch": 0})
    num_input_tokens_seen: int = 0
    best_metric: float | None = None
    best_global_step: int | None = None


def capture_rng(model) -> dict:
    """The model's dropout counter and numpy's and Python's global generators
    (which user code, e.g. a batch iterable, may draw from)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"lora_dropout_counter": model.rng_counter,
            "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
            "python": [version, list(internal), gauss_next]}


def restore_rng(model, rng: dict) -> None:
    model.rng_counter = int(rng["lora_dropout_counter"])
    name, keys, pos, has_gauss, gauss = rng["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = rng["python"]
    random.setstate((version, tuple(internal), gauss_next))


def seed_everything(seed: int) -> None:
    """Seeds numpy's and Python's global generators, as transformers' set_seed does."""
    random.seed(seed)
    np.random.seed(seed)


def state_json(state: TrainerState, **extra) -> str:
    return json.dumps({**dataclasses.asdict(state), **extra}, indent=1) + "\n"


def state_from(record: dict) -> TrainerState:
    names = {f.name for f in dataclasses.fields(TrainerState)}
    return TrainerState(**{k: v for k, v in record.items() if k in names})
