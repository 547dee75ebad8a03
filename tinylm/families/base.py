"""The block descriptor every family starts from (Llama's), and the parts of
config.json that families spell alike: dimensions, rope, layer types."""
from __future__ import annotations

from tinylm.errors import FormatError, UnsupportedError
from tinylm.families.fields import (LAYER_NO_ROPE, LAYER_SLIDING, NAMES, NORM_RMS, QK_NONE, WEIGHT_STORAGE, Fields,
                                    activation, rope, short)

LAYER_TYPES = {"full_attention": 0, "sliding_attention": LAYER_SLIDING}


def head_dim(f: Fields, default: int | None = None) -> int:
    """head_dim, or the family's default (Qwen3 128, Gemma 256), or D / H."""
    hidden, heads = f.int("hidden_size"), f.int("num_attention_heads")
    value = f.get("head_dim", default)
    if value is None:
        if hidden % heads:
            raise FormatError(f"{f.source}: hidden_size={hidden} is not a multiple of num_attention_heads={heads}")
        return hidden // heads
    return f.int("head_dim")


def padding_idx(f: Fields) -> int:
    """transformers builds embed_tokens with padding_idx=pad_token_id: that
    row's lookups add no gradient. An id outside the vocabulary (a config
    whose pad token is an added one) has no row to spare."""
    pad = f.get("pad_token_id")
    if pad is None:
        return -1
    pad = f.int("pad_token_id", minimum=0)
    return pad if pad < f.int("vocab_size") else -1


def descriptor(f: Fields, arch: str, quant: str | None, *, names: str = "llama", act_key: str = "hidden_act",
               act_default: str = "silu", head_dim_default: int | None = None, kv_heads_default: int | None = None,
               tie_default: bool = False, partial_default: float = 1.0) -> dict:
    """Llama's block from config.json; a family changes what differs."""
    if quant not in WEIGHT_STORAGE:
        raise ValueError(f"quant must be one of None, \"nf4\", \"int8\" (or \"gguf\" for a GGUF file's own "
                         f"blocks); got {quant!r}")
    f.require_zero("attention_dropout")
    if f.get("quantization_config"):
        raise UnsupportedError(f"{f.source}: pre-quantized checkpoints (quantization_config) are not supported")
    heads = f.int("num_attention_heads")
    kv_heads = f.int("num_key_value_heads", default=kv_heads_default or heads)
    if heads % kv_heads:
        raise FormatError(f"{f.source}: num_key_value_heads={kv_heads} does not divide num_attention_heads={heads}")
    E = head_dim(f, head_dim_default)
    layers = f.int("num_hidden_layers")
    # transformers 5 keeps it in rope_parameters; older configs at the top level
    params = f.get("rope_parameters")
    partial = f.float("partial_rotary_factor", partial_default)
    if isinstance(params, dict) and params.get("partial_rotary_factor") is not None:
        partial = Fields(params, f"{f.source} rope_parameters").float("partial_rotary_factor", partial)
    if not 0.0 < partial <= 1.0:
        raise FormatError(f"{f.source}: \"partial_rotary_factor\" must be in (0, 1], got {short(partial)}")
    rotary_dim = int(E * partial)  # transformers: int(head_dim * partial_rotary_factor)
    attn_bias = f.bool("attention_bias")
    d = {
        "names": NAMES[names],
        "vocab_size": f.int("vocab_size"), "hidden_size": f.int("hidden_size"),
        "intermediate_size": f.int("intermediate_size"), "n_layers": layers,
        "n_heads": heads, "n_kv_heads": kv_heads, "head_dim": E, "rotary_dim": rotary_dim,
        "norm_kind": NORM_RMS, "norm_eps": f.float("rms_norm_eps", 1e-6), "norm_offset": 0.0, "norm_bias": 0,
        "sandwich_norms": 0, "parallel_residual": 0, "resid_dropout": 0.0, "qk_norm": QK_NONE, "qk_norm_bias": 0,
        "act": activation(f, act_key, arch, act_default), "gated": 1,
        "attn_scale": float(E) ** -0.5, "attn_softcap": 0.0, "sliding_window": 0,
        "embed_scale": 1.0, "padding_idx": padding_idx(f), "final_softcap": 0.0,
        "tie_word_embeddings": int(f.bool("tie_word_embeddings", tie_default)), "lm_head_bias": 0,
        "qkv_bias": int(attn_bias), "o_bias": int(attn_bias), "mlp_bias": int(f.bool("mlp_bias")),
        "fused_qkv": 0, "fused_gate_up": 0, "weights": WEIGHT_STORAGE[quant],
    }
    d["rope"] = ropes(f, rotary_dim)
    d["layer_flags"] = [0] * layers
    return d


def ropes(f: Fields, rotary_dim: int, local_theta: float | None = None) -> list[dict]:
    """[full-attention layers, sliding-window layers] from either spelling:
    rope_parameters (transformers 5; one dict, or one per layer type) or
    rope_theta + rope_scaling (older configs). local_theta: the sliding
    layers' base in older configs that give it apart (rope_local_base_freq)."""
    theta = f.float("rope_theta", 10000.0)
    params = f.get("rope_parameters")
    if isinstance(params, dict) and set(params) & set(LAYER_TYPES):
        unknown = set(params) - set(LAYER_TYPES)
        if unknown:
            raise UnsupportedError(f"{f.source}: rope_parameters for layer type {sorted(unknown)[0]!r} is not supported")
        full = rope(f, params.get("full_attention", {}), "rope_parameters.full_attention", theta, rotary_dim)
        sliding = rope(f, params.get("sliding_attention", params.get("full_attention", {})),
                       "rope_parameters.sliding_attention", theta, rotary_dim)
        return [full, sliding]
    if isinstance(params, dict):
        full = rope(f, params, "rope_parameters", theta, rotary_dim)
    else:
        full = rope(f, f.get("rope_scaling") or {}, "rope_scaling", theta, rotary_dim)
    if local_theta is None:
        return [full, dict(full)]
    return [full, rope(f, {"rope_type": "default", "rope_theta": local_theta}, "rope_local_base_freq", theta,
                       rotary_dim)]


def layer_types(f: Fields, d: dict, default: list[str] | None = None) -> None:
    """Sliding-window layers from `layer_types` (or the family's default
    pattern); sets the window from `sliding_window`."""
    types = f.get("layer_types") or default
    if types is None:
        return
    if not isinstance(types, list) or len(types) != d["n_layers"]:
        raise FormatError(f"{f.source}: \"layer_types\" must list one type per layer ({d['n_layers']}), "
                          f"got {short(types)}")
    for l, kind in enumerate(types):
        if kind not in LAYER_TYPES:
            raise UnsupportedError(f"{f.source}: layer_types[{l}] = {short(kind)} is not supported; tinylm computes "
                                   f"{', '.join(LAYER_TYPES)}")
        d["layer_flags"][l] |= LAYER_TYPES[kind]
    if any(flags & LAYER_SLIDING for flags in d["layer_flags"]):
        window = f.get("sliding_window")
        if window is None:
            raise FormatError(f"{f.source}: layer_types has sliding_attention layers but \"sliding_window\" is null")
        d["sliding_window"] = f.int("sliding_window")


def windowed_from(f: Fields, d: dict) -> list[str] | None:
    """Layer types in configs older than transformers 5's layer_types
    (Qwen2/3, SmolLM3): with use_sliding_window, layers from
    max_window_layers on are windowed."""
    if not f.bool("use_sliding_window") or f.get("sliding_window") is None:
        return None
    first = f.int("max_window_layers", 28, minimum=0)  # Qwen2Config's and Qwen3Config's default
    return ["sliding_attention" if l >= first else "full_attention" for l in range(d["n_layers"])]


def no_rope_layers(f: Fields, d: dict, flags: list[int]) -> None:
    """SmolLM3: flags[l] == 0 marks a layer without RoPE (no_rope_layers)."""
    if not isinstance(flags, list) or len(flags) != d["n_layers"] or any(v not in (0, 1) for v in flags):
        raise FormatError(f"{f.source}: \"no_rope_layers\" must list 0 or 1 per layer ({d['n_layers']}), "
                          f"got {short(flags)}")
    for l, use_rope in enumerate(flags):
        if not use_rope:
            d["layer_flags"][l] |= LAYER_NO_ROPE
