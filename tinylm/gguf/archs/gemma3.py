"""Gemma 3 (text), the converter's Gemma3Model: TextModel's keys, the
sliding layers' own RoPE base (rope.freq_base_swa), the final soft-cap when
set, and the window unless sliding_window_pattern is 1. What llama.cpp
assumes: 5 sliding layers in 6 (unless attention.sliding_window_pattern,
written here only where that is wrong), no window at all without
attention.sliding_window, no scaling of the sliding layers' positions, and
Gemma 2's attention scale (the 27B has 62 layers)."""
from tinylm.families.fields import ACTIVATIONS
from tinylm.gguf.archs import base, gemma, gemma2

ARCH = "gemma3"
HF = ("Gemma3ForCausalLM", "gemma3_text")
NAMES = gemma2.NAMES
PERMUTE_QK = False
DROP = ()
CONFIG_TENSORS = ()
CONTEXT = 131072  # Gemma3TextConfig's max_position_embeddings
WINDOW = 4096  # Gemma3TextConfig's sliding_window
PATTERN = 6
LARGE_LAYERS = 62
SWA_THETA = 10000.0  # llama.cpp's rope_freq_base_train_swa


def write(s):
    s.refuse_rope(("default", "linear"))
    base.text_model(s, CONTEXT, head_dim_key=True)
    s.put("rope.freq_base_swa", base.F32(s.rope(1)["theta"]))
    if s.d["final_softcap"]:
        s.put("final_logit_softcapping", base.F32(s.d["final_softcap"]))
    window = s.config.get("sliding_window", WINDOW)
    if s.config.get("sliding_window_pattern") != 1 and window:
        s.put("attention.sliding_window", base.U32(window))
        base.swa_pattern(s, PATTERN)
    elif any(s.sliding()):
        s.lose("layer_types", "without attention.sliding_window llama.cpp slides no layer")
    if base.ROPE_NAMES[s.rope(1)["type"]] != "default":
        s.lose("rope_parameters.sliding_attention", "llama.cpp scales no sliding layer's positions")
    gemma2.attn_scale_loss(s, LARGE_LAYERS)
    base.activation_loss(s, ACTIVATIONS["gelu_pytorch_tanh"], "GELU (tanh)")


extra = gemma.extra


def read(m) -> dict:
    c = gemma.gemma_read(m, HF, tied=False)
    sliding = {"rope_type": "default", "rope_theta": m.float("rope.freq_base_swa", SWA_THETA)}
    window = m.int("attention.sliding_window", 0, minimum=0)
    types = gemma2.layer_types(m, PATTERN) if window else ["full_attention"] * c["num_hidden_layers"]
    cap = m.float("final_logit_softcapping", 0.0)
    c.update(rope_parameters={"full_attention": base.rope_parameters(m), "sliding_attention": sliding},
             sliding_window=window or None, layer_types=types, final_logit_softcapping=cap or None,
             attn_logit_softcapping=None, query_pre_attn_scalar=gemma2.query_pre_attn_scalar(c, LARGE_LAYERS))
    return c
