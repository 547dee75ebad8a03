"""StableLM (2): LayerNorms with biases, partial rotary (0.25 by default),
optional q/k/v biases, per-head q/k LayerNorms (qk_layernorm, no bias) and
an optional parallel residual from one norm."""
from tinylm.families import base
from tinylm.families.fields import NORM_LAYER, QK_PER_HEAD

ARCHITECTURES = {"StableLmForCausalLM": "stablelm"}


def descriptor(f, arch, quant):
    f.require_zero("hidden_dropout")
    # the attention always uses hidden_size / num_heads, whatever head_dim says
    f = base.Fields({k: v for k, v in f.config.items() if k != "head_dim"}, f.source)
    d = base.descriptor(f, arch, quant, names="stablelm", partial_default=0.25)
    d.update(norm_kind=NORM_LAYER, norm_eps=f.float("layer_norm_eps", 1e-5), norm_bias=1,
             parallel_residual=int(f.bool("use_parallel_residual")), qkv_bias=int(f.bool("use_qkv_bias")),
             o_bias=0, mlp_bias=0)
    if f.bool("qk_layernorm"):
        d["qk_norm"] = QK_PER_HEAD
    base.layer_types(f, d)
    return d
