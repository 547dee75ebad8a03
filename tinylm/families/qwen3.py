"""Qwen3: Llama with an RMSNorm per head on q and k (q_norm, k_norm) before
RoPE, an explicit head_dim, and attention_bias on q/k/v/o."""
from tinylm.families import base
from tinylm.families.fields import QK_SHARED

ARCHITECTURES = {"Qwen3ForCausalLM": "qwen3"}


def descriptor(f, arch, quant):
    d = base.descriptor(f, arch, quant)
    d.update(qk_norm=QK_SHARED, mlp_bias=0)  # Qwen3's MLP has no bias (no mlp_bias field)
    base.layer_types(f, d, base.windowed_from(f, d))
    return d
