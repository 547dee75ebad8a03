"""Gemma 1: (1 + w) RMSNorms, GeGLU (gelu_pytorch_tanh), the embedding
scaled by sqrt(hidden_size), head_dim 256, tied embeddings."""
from tinylm.errors import UnsupportedError
from tinylm.families import base

ARCHITECTURES = {"GemmaForCausalLM": "gemma"}


def refuse_bidirectional(f):
    if f.bool("use_bidirectional_attention"):
        raise UnsupportedError(f"{f.source}: use_bidirectional_attention=true is not supported (tinylm is causal)")


def gemma_block(f, d):
    """What every Gemma changes in Llama's block."""
    d.update(norm_offset=1.0, embed_scale=float(d["hidden_size"]) ** 0.5, mlp_bias=0)  # no mlp_bias field


def descriptor(f, arch, quant):
    refuse_bidirectional(f)
    # GemmaConfig reads hidden_activation first; "gelu" means the tanh form
    act = f.get("hidden_activation") or f.get("hidden_act") or "gelu_pytorch_tanh"
    f = base.Fields({**f.config, "hidden_activation": "gelu_pytorch_tanh" if act == "gelu" else act}, f.source)
    d = base.descriptor(f, arch, quant, act_key="hidden_activation", head_dim_default=256, kv_heads_default=16,
                        tie_default=True)
    gemma_block(f, d)
    return d
