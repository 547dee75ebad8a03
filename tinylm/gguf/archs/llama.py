"""Llama (Llama 2/3.x, TinyLlama, SmolLM2, MobileLLM), the converter's
LlamaModel: TextModel's keys plus vocab_size and rope.dimension_count; q and
k rows permuted into llama.cpp's RoPE pairs (adjacent dims, where
transformers pairs the two halves of a head); Llama 3's rope scaling
travels as the rope_freqs tensor, not as keys."""
from tinylm.errors import UnsupportedError
from tinylm.families.fields import ACTIVATIONS
from tinylm.gguf import llama3_rope
from tinylm.gguf.archs import base

ARCH = "llama"
HF = ("LlamaForCausalLM", "llama")
NAMES = base.NAMES
PERMUTE_QK = True
DROP = ()
CONFIG_TENSORS = (llama3_rope.NAME,)
CONTEXT = 2048  # LlamaConfig's max_position_embeddings


def write(s):
    s.refuse_rope(("default", "linear", "llama3"))
    rope_dimension(s)
    base.text_model(s, CONTEXT, head_dim_key=True)
    s.put("vocab_size", base.U32(s.d["vocab_size"]))
    base.activation_loss(s, ACTIVATIONS["silu"], "SiLU")


def rope_dimension(s):
    """llama.cpp rotates whole heads here (it refuses another n_rot), and the
    q/k permutation pairs dims across the whole head."""
    if s.d["rotary_dim"] != s.d["head_dim"]:
        raise UnsupportedError(f"{s.fields.source}: partial_rotary_factor cannot be written to a GGUF {s.arch} "
                               f"model (llama.cpp rotates all {s.d['head_dim']} dims of a head)")
    s.put("rope.dimension_count", base.U32(s.d["head_dim"]))


def extra(s) -> dict:
    rope = s.rope()
    if base.ROPE_NAMES[rope["type"]] != "llama3":
        return {}
    return {llama3_rope.NAME: llama3_rope.divisors(rope["theta"], s.d["head_dim"], rope["factor"],
                                                   rope["low_freq_factor"], rope["high_freq_factor"],
                                                   rope["original_max_position"])}


def read(m) -> dict:
    c = base.rms_common(m, *HF)
    c["rope_parameters"] = llama_rope(m, c["head_dim"])
    c.update(hidden_act="silu", attention_bias=base.qkv_bias(m), mlp_bias=m.has("blk.0.ffn_gate.bias"))
    return c


def llama_rope(m, head_dim: int) -> dict:
    if base.rotary_dim(m, head_dim) != head_dim:
        raise UnsupportedError(f"{m.source}: {m.key('rope.dimension_count')} differs from the head size "
                               f"{head_dim} (llama.cpp refuses such a {m.arch} model too)")
    params = base.rope_parameters(m)
    if m.has(llama3_rope.NAME):
        scaling = llama3_rope.recover(m.tensor_values(llama3_rope.NAME), params["rope_theta"], head_dim, m.source)
        if scaling and params["rope_type"] != "default":
            raise UnsupportedError(f"{m.source}: both {llama3_rope.NAME} and {params['rope_type']} RoPE scaling")
        params.update(scaling or {})
    return params
