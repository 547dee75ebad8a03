"""TrainConfig: the Trainer's settings, named as the Hugging Face Trainer
(TrainingArguments) names them, from Python, a dict or a YAML file."""
from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass

import yaml

from tinylm.distill import DistillConfig
from tinylm.quant.config import QATConfig

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")

# Names other trainers use for a field tinylm spells differently: an unknown
# key in this table is answered with the tinylm name, which difflib would
# not find (per_device_train_batch_size is far from batch_size as strings).
_OTHER_NAMES = {
    "per_device_train_batch_size": "batch_size",
    "train_batch_size": "batch_size",
    "per_device_eval_batch_size": "eval_batch_size",
    "lr": "learning_rate",
    "epochs": "num_train_epochs",
    "lr_scheduler": "lr_scheduler_type",
    "clip_grad_norm": "max_grad_norm",
    "log_every_n_steps": "logging_steps",
    "warmup": "warmup_steps",
    "num_warmup_steps": "warmup_steps",
}


@dataclass
class TrainConfig:
    """Settings of tinylm.Trainer (Hugging Face TrainingArguments names and
    defaults, except batch_size for per_device_train_batch_size and
    logging_steps=1).

    A step is one optimizer update over batch_size * gradient_accumulation_steps
    rows. Training runs max_steps steps when max_steps > 0, else
    num_train_epochs epochs (a fraction is allowed). Warmup is warmup_steps,
    or warmup_ratio of the total steps (set one of them). max_grad_norm None
    or 0 turns clipping off. eval_steps / save_steps / logging_steps None
    mean: only at the end. save_total_limit None keeps every checkpoint.
    resume_from_checkpoint: a checkpoint folder, or True for the latest
    checkpoint-<step> in output_dir.
    """
    output_dir: str
    learning_rate: float = 5e-5
    lr_scheduler_type: str = "linear"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    batch_size: int = 8
    eval_batch_size: int | None = None
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = 1.0
    num_train_epochs: float = 3.0
    max_steps: int = -1
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    seed: int = 42
    eval_steps: int | None = None
    save_steps: int | None = 500
    save_total_limit: int | None = None
    logging_steps: int | None = 1
    resume_from_checkpoint: str | bool | None = None
    disable_tqdm: bool = False
    distill: DistillConfig | None = None   # the loss against Trainer(teacher=...); a mapping of its fields
    qat: QATConfig | None = None           # quantization-aware training (tinylm.quant.config); a mapping of its fields

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if f.name in _SECTIONS:
                setattr(self, f.name, _section(f.name, getattr(self, f.name)))
                continue
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name), _HINTS[f.name]))
        self._check()

    def _check(self) -> None:
        def bad(name, rule):
            raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: {rule}")

        if self.lr_scheduler_type not in SCHEDULERS:
            bad("lr_scheduler_type", f"must be one of {', '.join(SCHEDULERS)}")
        if self.lr_scheduler_type == "constant" and (self.warmup_steps or self.warmup_ratio):
            bad("lr_scheduler_type", "\"constant\" has no warmup (as in transformers); use \"constant_with_warmup\"")
        if self.warmup_steps and self.warmup_ratio:
            bad("warmup_steps", "set warmup_steps or warmup_ratio, not both")
        for name in ("learning_rate", "weight_decay", "adam_epsilon", "warmup_steps"):
            if getattr(self, name) < 0:
                bad(name, "must be >= 0")
        if not 0 <= self.warmup_ratio < 1:
            bad("warmup_ratio", "must be in [0, 1)")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                bad(name, "must be in [0, 1)")
        for name in ("batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")
        for name in ("eval_batch_size", "eval_steps", "save_steps", "save_total_limit", "logging_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                bad(name, "must be >= 1, or None")
        if self.max_grad_norm is not None and self.max_grad_norm < 0:
            bad("max_grad_norm", "must be > 0, or 0 / None for no clipping")
        if self.max_steps == 0 or self.max_steps < -1:
            bad("max_steps", "must be > 0, or -1 to train num_train_epochs epochs")
        if self.max_steps == -1 and not self.num_train_epochs > 0:
            bad("num_train_epochs", "must be > 0 when max_steps is -1")

    # ------------------------------------------------------------ building
    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """A config from a mapping; an unknown key is a ValueError that names
        it and the closest valid key."""
        if not isinstance(values, dict):
            raise TypeError(f"TrainConfig.from_dict needs a mapping, got {type(values).__name__}")
        _check_keys(values, cls, "TrainConfig")
        if "output_dir" not in values:
            raise ValueError("TrainConfig: output_dir is required")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "TrainConfig":
        """A config from a YAML mapping of field names to values."""
        path = os.fspath(path)
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f)
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: a train config must be a YAML mapping, got {type(values).__name__}")
        try:
            return cls.from_dict(values)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{path}: {exc}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_HINTS = typing.get_type_hints(TrainConfig)


_SECTIONS = {"distill": DistillConfig, "qat": QATConfig}


def _section(name: str, value):
    """A sub-config (distill, qat): its dataclass, a mapping of its fields, or None."""
    cls = _SECTIONS[name]
    if value is None or isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise TypeError(f"TrainConfig.{name} must be a mapping of {cls.__name__} fields, got {value!r}")
    _check_keys(value, cls, f"TrainConfig.{name}")
    return cls(**value)


def _check_keys(values: dict, cls, what: str) -> None:
    """A ValueError naming an unknown key of a mapping meant for dataclass cls, and the closest valid one."""
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in valid:
            raise ValueError(f"unknown {what} key {key!r}{_suggestion(str(key), valid)}")


def _suggestion(key: str, valid: list[str]) -> str:
    if key in _OTHER_NAMES:
        return f"; tinylm calls it {_OTHER_NAMES[key]!r}"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"


def _coerce(name: str, value, hint):
    """Checks a value against the field's annotation. Numeric strings are
    read as numbers because YAML 1.1 (PyYAML) reads 1e-4, written without a
    dot, as the string "1e-4"."""
    options = typing.get_args(hint) or (hint,)
    if value is None and type(None) in options:
        return None
    if isinstance(value, bool):
        if bool in options:
            return value
    elif float in options and isinstance(value, (int, float)):
        return float(value)
    elif int in options and isinstance(value, int):
        return value
    elif isinstance(value, str):
        if str in options:
            return value
        try:
            return _coerce(name, float(value) if float in options else int(value), hint)
        except ValueError:
            pass
    expected = " or ".join("None" if t is type(None) else t.__name__ for t in options)
    raise TypeError(f"TrainConfig.{name} must be {expected}, got {value!r}")
