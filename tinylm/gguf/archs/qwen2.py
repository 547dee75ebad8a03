"""Qwen2 / Qwen2.5, the converter's Qwen2Model: TextModel's keys as they
are (q, k and v always carry biases). llama.cpp's qwen2 has no sliding
window."""
from tinylm.families.fields import ACTIVATIONS
from tinylm.gguf.archs import base

ARCH = "qwen2"
HF = ("Qwen2ForCausalLM", "qwen2")
NAMES = base.NAMES
PERMUTE_QK = False
DROP = ()
CONFIG_TENSORS = ()
CONTEXT = 32768  # Qwen2Config's and Qwen3Config's max_position_embeddings


def write(s):
    qwen_write(s, head_dim_key=False)


def qwen_write(s, head_dim_key: bool):
    s.refuse_rope(("default", "linear"))
    base.text_model(s, CONTEXT, head_dim_key)
    if any(s.sliding()):
        s.lose("use_sliding_window", f"llama.cpp's {s.arch} has no sliding-window attention")
    base.activation_loss(s, ACTIVATIONS["silu"], "SiLU")


def extra(s) -> dict:
    return {}


def read(m) -> dict:
    c = qwen_read(m, HF)
    if not m.has_key("attention.key_length"):
        del c["head_dim"]
    return c


def qwen_read(m, hf) -> dict:
    c = base.rms_common(m, *hf)
    c.update(rope_parameters=base.rope_parameters(m), hidden_act="silu", use_sliding_window=False)
    return c
