"""Phi-2 (and 1/1.5): LayerNorms with biases, one input norm feeding
attention and a plain GELU MLP (fc1 -> gelu_new -> fc2) in parallel, partial
rotary, biases everywhere including the LM head, optional shared q/k
LayerNorms."""
from tinylm.families import base
from tinylm.families.fields import NORM_LAYER, QK_SHARED

ARCHITECTURES = {"PhiForCausalLM": "phi"}


def descriptor(f, arch, quant):
    f.require_zero("embd_pdrop")
    d = base.descriptor(f, arch, quant, names="phi", act_default="gelu_new", partial_default=0.5)
    d.update(norm_kind=NORM_LAYER, norm_eps=f.float("layer_norm_eps", 1e-5), norm_bias=1, parallel_residual=1,
             gated=0, qkv_bias=1, o_bias=1, mlp_bias=1, lm_head_bias=1, resid_dropout=f.float("resid_pdrop", 0.0))
    if f.bool("qk_layernorm"):
        d.update(qk_norm=QK_SHARED, qk_norm_bias=1)
    base.layer_types(f, d)
    return d
