"""Gemma 2: Gemma's block with a norm on each sublayer's output too
(sandwich norms), attention scaled by query_pre_attn_scalar^-0.5, attention
and final-logit soft-capping, and sliding-window layers (even layers by
default)."""
from tinylm.families import base, gemma

ARCHITECTURES = {"Gemma2ForCausalLM": "gemma2"}


def sandwich_block(f, arch, quant, kv_default=4):
    """Gemma 2 and 3 alike: the block and the sliding layers' pattern."""
    gemma.refuse_bidirectional(f)
    d = base.descriptor(f, arch, quant, names="gemma2", act_key="hidden_activation", act_default="gelu_pytorch_tanh",
                        head_dim_default=256, kv_heads_default=kv_default, tie_default=True)
    gemma.gemma_block(f, d)
    d.update(sandwich_norms=1, attn_scale=f.float("query_pre_attn_scalar", 256.0) ** -0.5,
             final_softcap=f.float("final_logit_softcapping", 0.0))
    return d


def descriptor(f, arch, quant):
    d = sandwich_block(f, arch, quant)
    d["attn_softcap"] = f.float("attn_logit_softcapping", 0.0)
    default = ["sliding_attention" if (l + 1) % 2 else "full_attention" for l in range(d["n_layers"])]
    base.layer_types(f, d, default)
    return d
