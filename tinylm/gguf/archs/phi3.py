"""Phi-3 / 3.5 / 4-mini, the converter's Phi3MiniModel: its own keys (the
original context length always, the window as 0 when unset), partial rotary
as rope.dimension_count, and LongRoPE as two tensors (rope_factors_long,
rope_factors_short) with rope.scaling.attn_factor. The converter computes
that factor from the context lengths even when the config gives one; these
writers write the config's. q, k, v stay fused (attn_qkv) and gate, up too
(ffn_up), in HF's order."""
import numpy as np

from tinylm.families.fields import ACTIVATIONS
from tinylm.gguf.archs import base

ARCH = "phi3"
HF = ("Phi3ForCausalLM", "phi3")
NAMES = base.NAMES
PERMUTE_QK = False
DROP = ()
LONG, SHORT = "rope_factors_long.weight", "rope_factors_short.weight"
CONFIG_TENSORS = (LONG, SHORT)
CONTEXT = 4096  # Phi3Config's max_position_embeddings and original_max_position_embeddings


def write(s):
    d, rope = s.d, s.rope()
    s.refuse_rope(("default", "linear", "longrope"))
    longrope = base.ROPE_NAMES[rope["type"]] == "longrope"
    if longrope:
        s.put("rope.scaling.attn_factor", base.F32(rope["attention_factor"]))
        original = rope["original_max_position"]
    else:
        params = s.config.get("rope_parameters") or {}
        original = s.config.get("original_max_position_embeddings", params.get("original_max_position_embeddings"))
        original = CONTEXT if original is None else original
    s.put("context_length", base.U32(s.int("max_position_embeddings", CONTEXT)))
    s.put("rope.scaling.original_context_length", base.U32(original))
    s.put("embedding_length", base.U32(d["hidden_size"]))
    s.put("feed_forward_length", base.U32(d["intermediate_size"]))
    s.put("block_count", base.U32(d["n_layers"]))
    s.put("attention.head_count", base.U32(d["n_heads"]))
    s.put("attention.head_count_kv", base.U32(d["n_kv_heads"]))
    s.put("attention.layer_norm_rms_epsilon", base.F32(d["norm_eps"]))
    s.put("rope.dimension_count", base.U32(d["rotary_dim"]))
    s.put("rope.freq_base", base.F32(rope["theta"]))
    s.put("attention.sliding_window", base.U32(d["sliding_window"]))
    base.linear_scaling(s, always=False)
    base.activation_loss(s, ACTIVATIONS["silu"], "SiLU")


def extra(s) -> dict:
    rope = s.rope()
    if base.ROPE_NAMES[rope["type"]] != "longrope":
        return {}
    return {LONG: np.asarray(rope["long_factor"], dtype=base.F32),
            SHORT: np.asarray(rope["short_factor"], dtype=base.F32)}


def read(m) -> dict:
    c = base.rms_common(m, *HF)
    head_dim = c["head_dim"]
    if not m.has_key("attention.key_length"):  # Phi3Config has no head_dim
        del c["head_dim"]
    params = base.rope_parameters(m)
    if m.has(LONG) or m.has(SHORT):
        params = {"rope_type": "longrope", "rope_theta": params["rope_theta"],
                  "long_factor": [base.number32(v) for v in m.tensor_values(LONG)],
                  "short_factor": [base.number32(v) for v in m.tensor_values(SHORT)],
                  "attention_factor": m.float("rope.scaling.attn_factor", 1.0)}
    rotary = base.rotary_dim(m, head_dim)
    if rotary != head_dim:
        params["partial_rotary_factor"] = base.partial_factor(rotary, head_dim)
    window = m.int("attention.sliding_window", 0, minimum=0)
    c.update(rope_parameters=params, original_max_position_embeddings=m.int(
        "rope.scaling.original_context_length", c["max_position_embeddings"]), sliding_window=window or None,
        hidden_act="silu")
    return c
