"""Reading config.json fields for the family tables: typed, range-checked,
every error a FormatError (malformed) or UnsupportedError (well-formed, not
computed) that names the file and the field."""
from __future__ import annotations

import math

from tinylm.errors import FormatError, UnsupportedError

# The core holds dimensions as int64; its own bounds (tlm_config_check in
# csrc/model/config_check.c, far lower) are checked there before it allocates.
_INT64_MAX = 2**63 - 1

# tlm.h's enums, as the descriptor spells them
NAMES = {"llama": 0, "gemma2": 1, "phi": 2, "phi3": 3, "stablelm": 4}
NORM_RMS, NORM_LAYER = 0, 1
QK_NONE, QK_SHARED, QK_PER_HEAD = 0, 1, 2
ACTIVATIONS = {"silu": 0, "swish": 0, "gelu_pytorch_tanh": 1, "gelu_new": 1, "gelu": 2}
ROPE_TYPES = {"default": 0, "linear": 1, "llama3": 2, "longrope": 3}
LAYER_SLIDING, LAYER_NO_ROPE = 1, 2
# quant= of Model.from_pretrained -> how the core stores projection weights
# ("gguf": ggml blocks as a GGUF file holds them, each projection its own type)
WEIGHT_STORAGE = {None: 0, "nf4": 1, "int8": 2, "gguf": 3}


def short(value) -> str:
    """repr of a config value, cut short: a hostile file's values can be huge."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Fields:
    """config.json's dict with typed getters that name `source` in errors."""

    def __init__(self, config: dict, source: str):
        self.config, self.source = config, source

    def get(self, key, default=None):
        return self.config.get(key, default)

    def int(self, key: str, default=None, minimum: int = 1) -> int:
        value = self.config.get(key, default)
        if value is None:
            raise FormatError(f"{self.source}: missing required field \"{key}\"")
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= _INT64_MAX:
            kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise FormatError(f"{self.source}: \"{key}\" must be {kind}, got {short(value)}")
        return value

    def float(self, key: str, default: float) -> float:
        value = self.config.get(key, default)
        if value is None:
            value = default
        return number(value, key, self.source)

    def bool(self, key: str, default: bool = False) -> bool:
        value = self.config.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise FormatError(f"{self.source}: \"{key}\" must be true or false, got {short(value)}")
        return value

    def require_zero(self, *keys: str) -> None:
        """UnsupportedError for a dropout (or other rate) set above 0."""
        for key in keys:
            if self.float(key, 0.0) != 0.0:
                raise UnsupportedError(f"{self.source}: {key}={short(self.get(key))} is not supported (only 0)")


def number(value, key: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FormatError(f"{source}: \"{key}\" must be a number, got {short(value)}")
    try:
        return float(value)
    except OverflowError:   # an int past float's range
        raise FormatError(f"{source}: \"{key}\" is out of range, got {short(value)}") from None


def activation(f: Fields, key: str, arch: str, default: str = "silu") -> int:
    act = f.get(key) or default
    if act not in ACTIVATIONS:
        raise UnsupportedError(f"{f.source}: {key} {short(act)} is not supported for {arch} "
                               f"(tinylm computes {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[act]


def rope(f: Fields, params: dict, where: str, theta_default: float, rotary_dim: int) -> dict:
    """One rope kind for the core from a rope_parameters / rope_scaling dict."""
    source = f"{f.source}: {where}"
    if not isinstance(params, dict):
        raise FormatError(f"{source} must be an object or null, got {short(params)}")
    rope_type = params.get("rope_type", params.get("type", "default")) or "default"
    if not isinstance(rope_type, str):
        raise FormatError(f"{source} \"rope_type\" must be a string, got {short(rope_type)}")
    if rope_type not in ROPE_TYPES:
        raise UnsupportedError(f"{source}: rope type \"{rope_type}\" is not supported; tinylm supports "
                               f"{', '.join(ROPE_TYPES)}")
    theta = params.get("rope_theta", theta_default)
    out = {"type": ROPE_TYPES[rope_type], "theta": number(theta, "rope_theta", source), "factor": 1.0,
           "low_freq_factor": 0.0, "high_freq_factor": 0.0, "original_max_position": 0, "attention_factor": 1.0,
           "short_factor": None, "long_factor": None}
    sub = Fields(params, source)
    if rope_type in ("linear", "llama3"):
        out["factor"] = sub.float("factor", 0.0)
    if rope_type == "llama3":
        out["low_freq_factor"] = sub.float("low_freq_factor", 0.0)
        out["high_freq_factor"] = sub.float("high_freq_factor", 0.0)
        out["original_max_position"] = sub.int("original_max_position_embeddings")
    if rope_type == "longrope":
        out.update(_longrope(f, sub, rotary_dim))
    return out


def _longrope(f: Fields, sub: Fields, rotary_dim: int) -> dict:
    """transformers' _compute_longrope_parameters: the factor is
    max_position_embeddings / original_max_position_embeddings when the config
    gives the original length, and attention_factor, unless given, is
    sqrt(1 + ln(factor) / ln(original)) (1 when factor <= 1)."""
    original = f.get("original_max_position_embeddings") or sub.get("original_max_position_embeddings")
    factor = sub.float("factor", 1.0)
    if original is not None:
        original = Fields({"original_max_position_embeddings": original}, f.source).int(
            "original_max_position_embeddings")
        factor = f.int("max_position_embeddings") / original
    else:
        original = f.int("max_position_embeddings")
    attention = sub.get("attention_factor")
    if attention is None:
        attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    lists = {}
    for key in ("short_factor", "long_factor"):
        values = sub.get(key)
        if not isinstance(values, list) or len(values) != rotary_dim // 2:
            raise FormatError(f"{sub.source}: longrope \"{key}\" must be a list of {rotary_dim // 2} numbers "
                              f"(rotary dimension / 2), got {short(values)}")
        lists[key] = [number(v, key, sub.source) for v in values]
    return {"original_max_position": original, "attention_factor": number(attention, "attention_factor", sub.source),
            **lists}
