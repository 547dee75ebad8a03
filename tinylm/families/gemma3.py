"""Gemma 3 (text): Gemma 2's block with (1 + w) RMSNorms on q and k per
head, no attention soft-capping (transformers sets the field but never
applies it), and a RoPE base per layer type (sliding layers 10000, full
ones 1e6 and their own scaling)."""
from tinylm.families import base, gemma2
from tinylm.families.fields import QK_SHARED

ARCHITECTURES = {"Gemma3ForCausalLM": "gemma3_text"}


def descriptor(f, arch, quant):
    d = gemma2.sandwich_block(f, arch, quant)
    d["qk_norm"] = QK_SHARED
    params = f.get("rope_parameters")
    if not isinstance(params, dict):  # the older spelling: rope_theta, rope_local_base_freq, rope_scaling
        f = base.Fields({**f.config, "rope_theta": f.float("rope_theta", 1_000_000.0)}, f.source)
        d["rope"] = base.ropes(f, d["rotary_dim"], local_theta=f.float("rope_local_base_freq", 10000.0))
    pattern = f.int("sliding_window_pattern", 6)
    default = ["full_attention" if (l + 1) % pattern == 0 else "sliding_attention" for l in range(d["n_layers"])]
    base.layer_types(f, d, default)
    return d
