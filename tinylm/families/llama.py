"""Llama (Llama 2/3.x, TinyLlama, SmolLM2, MobileLLM): the base block as is."""
from tinylm.families import base

ARCHITECTURES = {"LlamaForCausalLM": "llama"}


def descriptor(f, arch, quant):
    d = base.descriptor(f, arch, quant)
    base.layer_types(f, d)
    return d
