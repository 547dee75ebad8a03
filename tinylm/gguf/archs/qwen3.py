"""Qwen3, the converter's Qwen3Model: Qwen2's keys with the head size
(key_length, value_length), q_norm / k_norm as attn_q_norm / attn_k_norm.
attention_bias puts biases on q, k, v and o; llama.cpp's qwen3 reads q, k
and v biases but has no attn_output.bias and refuses a file that holds one
(a tensor it does not load), so such a config is not written."""
from tinylm.gguf.archs import base, qwen2

ARCH = "qwen3"
HF = ("Qwen3ForCausalLM", "qwen3")
NAMES = base.NAMES
PERMUTE_QK = False
DROP = ()
CONFIG_TENSORS = ()


def write(s):
    if s.d["o_bias"]:
        s.refuse("attention_bias=True", f"llama.cpp's {ARCH} has no attention output bias, and refuses a file "
                                        "with attn_output.bias")
    qwen2.qwen_write(s, head_dim_key=True)


extra = qwen2.extra


def read(m) -> dict:
    c = qwen2.qwen_read(m, HF)
    c["attention_bias"] = base.qkv_bias(m)
    return c
