"""Phi-3 / 3.5 / 4-mini: Llama's block with q, k, v fused into qkv_proj and
gate, up into gate_up_proj, partial rotary where configured, LongRoPE, and
(when sliding_window is set) every layer windowed."""
from tinylm.families import base

ARCHITECTURES = {"Phi3ForCausalLM": "phi3"}


def descriptor(f, arch, quant):
    f.require_zero("embd_pdrop")
    d = base.descriptor(f, arch, quant, names="phi3")
    d.update(fused_qkv=1, fused_gate_up=1, qkv_bias=0, o_bias=0, mlp_bias=0, resid_dropout=f.float("resid_pdrop", 0.0))
    default = None if f.get("sliding_window") is None else ["sliding_attention"] * d["n_layers"]
    base.layer_types(f, d, default)
    return d
