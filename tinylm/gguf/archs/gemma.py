"""Gemma 1, the converter's GemmaModel: its own short list of keys (no rope
base: llama.cpp's 10000 is Gemma's), norm weights stored as 1 + w (llama.cpp
multiplies by the weight as is), and no LM head: llama.cpp's gemma always
uses token_embd, so the converter drops an untied lm_head."""
from tinylm.families.fields import ACTIVATIONS
from tinylm.gguf.archs import base

ARCH = "gemma"
HF = ("GemmaForCausalLM", "gemma")
NAMES = base.NAMES
PERMUTE_QK = False
DROP = ("lm_head.weight",)
CONFIG_TENSORS = ()
CONTEXT = 8192  # GemmaConfig's max_position_embeddings


def write(s):
    s.refuse_rope(("default", "linear"))
    gemma_keys(s, CONTEXT)
    base.linear_scaling(s, always=False)
    base.theta_if_not_default(s)


def gemma_keys(s, context_default: int):
    """The keys GemmaModel and Gemma2Model write alike."""
    d = s.d
    s.put("context_length", base.U32(s.int("max_position_embeddings", context_default)))
    s.put("embedding_length", base.U32(d["hidden_size"]))
    s.put("block_count", base.U32(d["n_layers"]))
    s.put("feed_forward_length", base.U32(d["intermediate_size"]))
    s.put("attention.head_count", base.U32(d["n_heads"]))
    s.put("attention.head_count_kv", base.U32(d["n_kv_heads"]))
    s.put("attention.layer_norm_rms_epsilon", base.F32(d["norm_eps"]))
    base.head_lengths(s)
    if not d["tie_word_embeddings"]:
        s.lose("tie_word_embeddings", f"a GGUF {s.arch} model has no LM head of its own; llama.cpp uses token_embd")
    base.activation_loss(s, ACTIVATIONS["gelu_pytorch_tanh"], "GELU (tanh)")


def extra(s) -> dict:
    return {}


def read(m) -> dict:
    c = gemma_read(m, HF, tied=True)
    c["rope_parameters"] = base.rope_parameters(m)
    return c


def gemma_read(m, hf, tied: bool) -> dict:
    """tied: llama.cpp uses token_embd as the LM head whatever the file holds."""
    c = base.rms_common(m, *hf)
    c.update(hidden_activation="gelu_pytorch_tanh", attention_bias=base.qkv_bias(m))
    if tied:
        c["tie_word_embeddings"] = True
    return c
