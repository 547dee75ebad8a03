"""Hugging Face config.json -> the C core's model description.

Only what tinylm computes exactly is accepted: an architecture or an option
that would change the math and that the core does not implement is an
UnsupportedError naming it, never a silent approximation.
"""
from __future__ import annotations

import json
import os

from tinylm.errors import FormatError, UnsupportedError

ARCH_LLAMA, ARCH_QWEN2 = 0, 1
ROPE_TYPES = {"default": 0, "linear": 1, "llama3": 2}
# quant= of Model.from_pretrained -> how the core stores projection weights
WEIGHT_STORAGE = {None: 0, "nf4": 1, "int8": 2}

# architecture class name -> (core arch id, model_type)
ARCHITECTURES = {
    "LlamaForCausalLM": (ARCH_LLAMA, "llama"),
    "Qwen2ForCausalLM": (ARCH_QWEN2, "qwen2"),
}
_BY_MODEL_TYPE = {model_type: name for name, (_, model_type) in ARCHITECTURES.items()}


def read_config(path: str) -> dict:
    """Reads config.json, naming the file in every error."""
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file (a Hugging Face model folder needs config.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise FormatError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


def architecture_of(config: dict, source: str) -> str:
    archs = config.get("architectures")
    if archs:
        if not isinstance(archs, list) or len(archs) != 1 or not isinstance(archs[0], str):
            raise FormatError(f"{source}: \"architectures\" must be a list with one class name, got {archs!r}")
        name = archs[0]
    else:
        model_type = config.get("model_type")
        name = _BY_MODEL_TYPE.get(model_type if isinstance(model_type, str) else None, f"model_type={model_type!r}")
    if name not in ARCHITECTURES:
        raise UnsupportedError(
            f"{source}: architecture {name} is not supported; tinylm supports {', '.join(sorted(ARCHITECTURES))}"
        )
    return name


# The core holds dimensions as int64; its own bounds (tlm_config_check in
# csrc/model/params.c, far lower) are checked there before it allocates.
_INT64_MAX = 2**63 - 1


def _int(config: dict, key: str, source: str, default=None) -> int:
    value = config.get(key, default)
    if value is None:
        raise FormatError(f"{source}: missing required field \"{key}\"")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _INT64_MAX:
        raise FormatError(f"{source}: \"{key}\" must be a positive integer, got {_short(value)}")
    return value


def _short(value) -> str:
    """repr of a config value, cut short: a hostile file's values can be huge."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _float(config: dict, key: str, source: str, default: float) -> float:
    value = config.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FormatError(f"{source}: \"{key}\" must be a number, got {_short(value)}")
    try:
        return float(value)
    except OverflowError:   # an int past float's range
        raise FormatError(f"{source}: \"{key}\" is out of range, got {_short(value)}") from None


def _rope(config: dict, source: str) -> dict:
    """RoPE settings from either spelling: rope_theta + rope_scaling (older
    configs) or rope_parameters (newer ones)."""
    params = config.get("rope_parameters")
    if isinstance(params, dict):
        scaling = params
        theta = _float(params, "rope_theta", f"{source} rope_parameters", _float(config, "rope_theta", source, 10000.0))
    else:
        scaling = config.get("rope_scaling") or {}
        theta = _float(config, "rope_theta", source, 10000.0)
    if not isinstance(scaling, dict):
        raise FormatError(f"{source}: rope_scaling must be an object or null, got {_short(scaling)}")
    rope_type = scaling.get("rope_type", scaling.get("type", "default")) or "default"
    if not isinstance(rope_type, str):
        raise FormatError(f"{source}: rope_scaling \"rope_type\" must be a string, got {_short(rope_type)}")
    if rope_type not in ROPE_TYPES:
        raise UnsupportedError(
            f"{source}: rope type \"{rope_type}\" is not supported; tinylm supports {', '.join(ROPE_TYPES)}"
        )
    out = {
        "rope_theta": float(theta), "rope_type": ROPE_TYPES[rope_type], "rope_factor": 1.0,
        "rope_low_freq_factor": 0.0, "rope_high_freq_factor": 0.0, "rope_original_max_position": 0,
    }
    if rope_type in ("linear", "llama3"):
        out["rope_factor"] = _float(scaling, "factor", f"{source} rope scaling", 0.0)
    if rope_type == "llama3":
        out["rope_low_freq_factor"] = _float(scaling, "low_freq_factor", f"{source} rope scaling", 0.0)
        out["rope_high_freq_factor"] = _float(scaling, "high_freq_factor", f"{source} rope scaling", 0.0)
        out["rope_original_max_position"] = _int(scaling, "original_max_position_embeddings",
                                                 f"{source} rope scaling")
    return out


def core_kwargs(config: dict, source: str = "config.json", quant: str | None = None) -> dict:
    """Validated keyword arguments for tinylm._core.Model."""
    if quant not in WEIGHT_STORAGE:
        raise ValueError(f"quant must be one of None, \"nf4\", \"int8\"; got {quant!r}")
    arch_name = architecture_of(config, source)
    arch, model_type = ARCHITECTURES[arch_name]
    act = config.get("hidden_act", "silu")
    if act != "silu":
        raise UnsupportedError(f"{source}: hidden_act \"{act}\" is not supported for {arch_name} (only silu)")
    if _float(config, "attention_dropout", source, 0.0) != 0.0:
        raise UnsupportedError(f"{source}: attention_dropout={config['attention_dropout']} is not supported (only 0)")
    if config.get("quantization_config"):
        raise UnsupportedError(f"{source}: pre-quantized checkpoints (quantization_config) are not supported")
    if model_type == "qwen2" and config.get("use_sliding_window"):
        raise UnsupportedError(f"{source}: use_sliding_window=true is not supported")

    hidden = _int(config, "hidden_size", source)
    heads = _int(config, "num_attention_heads", source)
    kv_heads = _int(config, "num_key_value_heads", source, default=heads)
    if heads % kv_heads:
        raise FormatError(f"{source}: num_key_value_heads={kv_heads} does not divide num_attention_heads={heads}")
    head_dim = config.get("head_dim")
    if head_dim is None:
        if hidden % heads:
            raise FormatError(f"{source}: hidden_size={hidden} is not a multiple of num_attention_heads={heads}")
        head_dim = hidden // heads
    head_dim = _int({"head_dim": head_dim}, "head_dim", source)

    if model_type == "qwen2":
        qkv_bias, o_bias, mlp_bias = True, False, False
    else:
        qkv_bias = o_bias = bool(config.get("attention_bias", False))
        mlp_bias = bool(config.get("mlp_bias", False))
    return {
        "arch": arch,
        "vocab_size": _int(config, "vocab_size", source),
        "hidden_size": hidden,
        "intermediate_size": _int(config, "intermediate_size", source),
        "num_hidden_layers": _int(config, "num_hidden_layers", source),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "rms_norm_eps": _float(config, "rms_norm_eps", source, 1e-6),
        **_rope(config, source),
        "tie_word_embeddings": bool(config.get("tie_word_embeddings", False)),
        "qkv_bias": qkv_bias,
        "o_bias": o_bias,
        "mlp_bias": mlp_bias,
        "weights": WEIGHT_STORAGE[quant],
    }


def config_path(directory: str) -> str:
    return os.path.join(directory, "config.json")
