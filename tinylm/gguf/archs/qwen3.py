"""Qwen3, the converter's Qwen3Model: Qwen2's keys with the head size
(key_length, value_length), q_norm / k_norm as attn_q_norm / attn_k_norm,
and attention biases where attention_bias is set."""
from tinylm.gguf.archs import base, qwen2

ARCH = "qwen3"
HF = ("Qwen3ForCausalLM", "qwen3")
NAMES = base.NAMES
PERMUTE_QK = False
DROP = ()
CONFIG_TENSORS = ()


def write(s):
    qwen2.qwen_write(s, head_dim_key=True)


extra = qwen2.extra


def read(m) -> dict:
    c = qwen2.qwen_read(m, HF)
    c["attention_bias"] = base.qkv_bias(m)
    return c
