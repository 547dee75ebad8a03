"""StableLM (2), the converter's StableLMModel: LayerNorm epsilon, partial
rotary as rope.dimension_count, use_parallel_residual, and no rope base
(llama.cpp's 10000 is StableLM's). The per-head q/k LayerNorms
(qk_layernorm) are one tensor per layer, [head_dim, heads] (llama.cpp's
attn_q_norm / attn_k_norm): the converter's stacking of them yields nothing
and it fails, so such a model comes only from these writers. llama.cpp takes
a layer without ffn_norm for a parallel-residual one."""
from tinylm.errors import UnsupportedError
from tinylm.families.fields import ACTIVATIONS
from tinylm.gguf.archs import base

ARCH = "stablelm"
HF = ("StableLmForCausalLM", "stablelm")
NAMES = {**base.NAMES, "self_attn.q_layernorm.norms": "attn_q_norm", "self_attn.k_layernorm.norms": "attn_k_norm"}
PERMUTE_QK = False
DROP = ()
CONFIG_TENSORS = ()
CONTEXT = 4096  # StableLmConfig's max_position_embeddings


def write(s):
    d = s.d
    s.refuse_rope(("default", "linear"))
    s.put("context_length", base.U32(s.int("max_position_embeddings", CONTEXT)))
    s.put("embedding_length", base.U32(d["hidden_size"]))
    s.put("block_count", base.U32(d["n_layers"]))
    s.put("feed_forward_length", base.U32(d["intermediate_size"]))
    s.put("rope.dimension_count", base.U32(d["rotary_dim"]))
    s.put("attention.head_count", base.U32(d["n_heads"]))
    s.put("attention.head_count_kv", base.U32(d["n_kv_heads"]))
    s.put("use_parallel_residual", bool(d["parallel_residual"]))
    s.put("attention.layer_norm_epsilon", base.F32(d["norm_eps"]))
    base.linear_scaling(s, always=False)
    base.theta_if_not_default(s)
    base.activation_loss(s, ACTIVATIONS["silu"], "SiLU")


def extra(s) -> dict:
    return {}


def read(m) -> dict:
    c = base.read_common(m, "attention.layer_norm_epsilon", "layer_norm_eps", *HF)
    head_dim = c.pop("head_dim")  # StableLM's attention uses hidden / heads, whatever head_dim says
    if head_dim * c["num_attention_heads"] != c["hidden_size"]:
        raise UnsupportedError(f"{m.source}: {m.key('attention.key_length')}={head_dim} is not "
                               f"hidden / heads; StableLM's heads split the hidden size")
    params = base.rope_parameters(m)
    params["partial_rotary_factor"] = base.partial_factor(base.rotary_dim(m, head_dim), head_dim)
    c.update(rope_parameters=params, hidden_act="silu", use_qkv_bias=base.qkv_bias(m),
             qk_layernorm=m.has("blk.0.attn_q_norm.weight"),
             use_parallel_residual=not m.has("blk.0.ffn_norm.weight"))
    return c
