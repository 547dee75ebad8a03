"""Gemma 2, the converter's Gemma2Model: Gemma's keys plus both soft-caps
and the window. What llama.cpp assumes: sliding layers alternate (even ones
slide) unless attention.sliding_window_pattern says otherwise (written here
only then), caps 50 / 30 when absent (it always caps), and the attention
scale 1/sqrt(head_dim) (1/sqrt(hidden/heads) for the 46-layer 27B): the file
has no query_pre_attn_scalar."""
from tinylm.errors import UnsupportedError
from tinylm.gguf.archs import base, gemma

ARCH = "gemma2"
HF = ("Gemma2ForCausalLM", "gemma2")
NAMES = {**base.NAMES, "post_attention_layernorm": "post_attention_norm", "pre_feedforward_layernorm": "ffn_norm",
         "post_feedforward_layernorm": "post_ffw_norm"}
PERMUTE_QK = False
DROP = gemma.DROP
CONFIG_TENSORS = ()
CONTEXT = 8192  # Gemma2Config's max_position_embeddings
WINDOW = 4096  # Gemma2Config's sliding_window, and llama.cpp's default
PATTERN = 2
CAPS = {"attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0}  # llama.cpp's defaults
LARGE_LAYERS = 46  # llama.cpp scales the 27B's attention by hidden/heads


def write(s):
    s.refuse_rope(("default", "linear"))
    gemma.gemma_keys(s, CONTEXT)
    for field, cap in (("attn_logit_softcapping", s.d["attn_softcap"]),
                       ("final_logit_softcapping", s.d["final_softcap"])):
        if cap:
            s.put(field, base.F32(cap))
        else:
            s.lose(field, f"llama.cpp always soft-caps {ARCH}; without the key it caps at {CAPS[field]}")
    window = s.config.get("sliding_window", WINDOW)
    if window is not None:
        s.put("attention.sliding_window", base.U32(window))
    base.swa_pattern(s, PATTERN)
    base.linear_scaling(s, always=False)
    base.theta_if_not_default(s)
    attn_scale_loss(s, LARGE_LAYERS)


def attn_scale_loss(s, large_layers: int):
    d = s.d
    if d["n_layers"] == large_layers:
        base.attn_scale_loss(s, (d["hidden_size"] / d["n_heads"]) ** -0.5, f"hidden/heads with {large_layers} layers")
    else:
        base.attn_scale_loss(s, d["head_dim"] ** -0.5, "1/sqrt(head_dim)")


def query_pre_attn_scalar(c: dict, large_layers: int):
    if c["num_hidden_layers"] == large_layers:
        hidden, heads = c["hidden_size"], c["num_attention_heads"]
        return hidden // heads if hidden % heads == 0 else hidden / heads
    return c["head_dim"]


def layer_types(m, pattern: int) -> list[str]:
    flags = m.layer_flags("attention.sliding_window_pattern", pattern)
    return ["sliding_attention" if f else "full_attention" for f in flags]


extra = gemma.extra


def read(m) -> dict:
    c = gemma.gemma_read(m, HF, tied=True)
    params = base.rope_parameters(m)
    if m.float("rope.freq_base_swa", params["rope_theta"]) != params["rope_theta"]:
        raise UnsupportedError(f"{m.source}: {m.key('rope.freq_base_swa')} differs from the RoPE base; "
                               f"Gemma 2 has one base for every layer")
    c.update(rope_parameters=params, sliding_window=m.int("attention.sliding_window", WINDOW),
             layer_types=layer_types(m, PATTERN), query_pre_attn_scalar=query_pre_attn_scalar(c, LARGE_LAYERS),
             **{field: m.float(field, cap) for field, cap in CAPS.items()})
    return c
