"""Qwen2 / Qwen2.5: Llama with biases on q, k and v (always), none on o."""
from tinylm.families import base

ARCHITECTURES = {"Qwen2ForCausalLM": "qwen2"}


def descriptor(f, arch, quant):
    d = base.descriptor(f, arch, quant)
    d.update(qkv_bias=1, o_bias=0, mlp_bias=0)
    base.layer_types(f, d, base.windowed_from(f, d))
    return d
