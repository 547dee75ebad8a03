"""Phi-2 (and 1/1.5), the converter's Phi2Model: LayerNorm epsilon, partial
rotary as rope.dimension_count, no rope base (llama.cpp's 10000 is Phi's).
The converter writes feed_forward_length as 4 * hidden and head_count_kv as
head_count whatever the config says (true of Phi-2 itself, not of every
PhiConfig); these writers give the true values, and the reader takes both
from the tensor shapes. llama.cpp's phi2 has no q/k LayerNorms
(qk_layernorm): such a model cannot be written."""
from tinylm.families.fields import ACTIVATIONS
from tinylm.gguf.archs import base

ARCH = "phi2"
HF = ("PhiForCausalLM", "phi")
NAMES = {**base.NAMES, "model.final_layernorm": "output_norm", "self_attn.dense": "attn_output",
         "mlp.fc1": "ffn_up", "mlp.fc2": "ffn_down"}
PERMUTE_QK = False
DROP = ()
CONFIG_TENSORS = ()
CONTEXT = 2048  # PhiConfig's max_position_embeddings


def write(s):
    d = s.d
    s.refuse_rope(("default", "linear"))
    s.put("context_length", base.U32(s.int("n_positions", s.int("max_position_embeddings", CONTEXT))))
    s.put("embedding_length", base.U32(d["hidden_size"]))
    s.put("feed_forward_length", base.U32(d["intermediate_size"]))
    s.put("block_count", base.U32(d["n_layers"]))
    s.put("attention.head_count", base.U32(d["n_heads"]))
    s.put("attention.head_count_kv", base.U32(d["n_kv_heads"]))
    s.put("attention.layer_norm_epsilon", base.F32(d["norm_eps"]))
    s.put("rope.dimension_count", base.U32(d["rotary_dim"]))
    base.linear_scaling(s, always=False)
    base.theta_if_not_default(s)
    base.activation_loss(s, ACTIVATIONS["gelu_new"], "GELU (tanh)")


def extra(s) -> dict:
    return {}


def read(m) -> dict:
    c = base.read_common(m, "attention.layer_norm_epsilon", "layer_norm_eps", *HF)
    head_dim = c["head_dim"]
    if not m.has_key("attention.key_length"):  # PhiConfig has no head_dim
        del c["head_dim"]
    up, k = m.shape("blk.0.ffn_up.weight"), m.shape("blk.0.attn_k.weight")
    if up:
        c["intermediate_size"] = up[1]
    if k and k[1] % head_dim == 0:
        c["num_key_value_heads"] = k[1] // head_dim
    params = base.rope_parameters(m)
    params["partial_rotary_factor"] = base.partial_factor(base.rotary_dim(m, head_dim), head_dim)
    c.update(rope_parameters=params, hidden_act="gelu_new", qk_layernorm=False)
    return c
