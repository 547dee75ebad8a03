"""Reference models for the tests: transformers' own classes built from tiny
random configs, saved with save_pretrained, and loaded back in f32 with eager
attention (the oracle every tinylm number is compared to)."""
from __future__ import annotations

import numpy as np
import torch
import transformers

VOCAB = 211  # odd on purpose

# name -> (config class, model class, config kwargs)
CONFIGS = {
    "llama_gqa": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
                  dict(hidden_size=64, intermediate_size=112, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, tie_word_embeddings=False)),
    "llama_mqa_tied": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
                       dict(hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=6,
                            num_key_value_heads=1, tie_word_embeddings=True)),
    "llama_head_dim": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
                       dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, head_dim=24, tie_word_embeddings=False)),
    "llama3_rope_bias": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
                         dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, attention_bias=True, mlp_bias=True, rope_theta=500000.0,
                              rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                            "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
                              tie_word_embeddings=True)),
    "qwen2_bias": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM,
                   dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, tie_word_embeddings=True)),
}


# Tiny models of the other families (tests/test_families.py), each switch of
# a family on in at least one of them; the name says what it is there for.
# Every config says bos 1 / eos 2 (the test tokenizer's, eval_fixtures) and a
# pad id inside the vocabulary or none: the families' defaults (32000,
# 128004) are past VOCAB, and nn.Embedding(padding_idx=pad) gives that row no
# gradient through the lookup, which the configs with an in-vocabulary pad
# (Gemma's default 0, phi3_fused's 5) check.
WINDOW = 5  # sliding window of the windowed configs: far shorter than batch()'s T=37
_IDS = dict(bos_token_id=1, eos_token_id=2)
_SHORT_FACTORS = [1.0, 1.05, 1.1, 1.3, 1.6, 2.0]
_LONG_FACTORS = [1.0, 1.5, 2.5, 4.0, 7.0, 11.0]
FAMILY_CONFIGS = {
    # Qwen3: per-head q/k RMSNorm before RoPE; head_dim 20 != 48/4; bias on q/k/v/o.
    "qwen3_qk_norm": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM,
                      dict(hidden_size=48, intermediate_size=88, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, head_dim=20, attention_bias=True, rope_theta=20000.0,
                           tie_word_embeddings=False, **_IDS)),
    # Qwen3 with sliding-window layers between full ones, MQA, tied.
    "qwen3_sliding_tied": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM,
                           dict(hidden_size=40, intermediate_size=72, num_hidden_layers=3, num_attention_heads=5,
                                num_key_value_heads=1, head_dim=8, use_sliding_window=True, sliding_window=WINDOW,
                                layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                                tie_word_embeddings=True, **_IDS)),
    # Gemma: (1+w) norms, sqrt(D) embedding scale, GELU-tanh, MQA, head_dim 24 != 48/3,
    # tied (the default), pad 0 (the default) inside the vocabulary.
    "gemma_mqa": (transformers.GemmaConfig, transformers.GemmaForCausalLM,
                  dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=3,
                       num_key_value_heads=1, head_dim=24, pad_token_id=0, **_IDS)),
    # Gemma untied with attention biases; hidden_act "gelu" (transformers reads it as gelu_pytorch_tanh).
    "gemma_bias_untied": (transformers.GemmaConfig, transformers.GemmaForCausalLM,
                          dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=8, attention_bias=True, hidden_act="gelu",
                               tie_word_embeddings=False, pad_token_id=0, **_IDS)),
    # Gemma2: sandwich norms, attention and final soft-capping (small caps, so tanh bites),
    # query_pre_attn_scalar 20 != head_dim 24, default layer types (sliding, full, sliding).
    "gemma2_softcap": (transformers.Gemma2Config, transformers.Gemma2ForCausalLM,
                       dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                            num_key_value_heads=2, head_dim=24, query_pre_attn_scalar=20, sliding_window=WINDOW,
                            attn_logit_softcapping=2.0, final_logit_softcapping=3.0, pad_token_id=0, **_IDS)),
    # Gemma2 without caps, untied, full then sliding.
    "gemma2_nocap_untied": (transformers.Gemma2Config, transformers.Gemma2ForCausalLM,
                            dict(hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=2,
                                 num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32, sliding_window=WINDOW,
                                 layer_types=["full_attention", "sliding_attention"], attn_logit_softcapping=None,
                                 final_logit_softcapping=None, tie_word_embeddings=False, pad_token_id=0, **_IDS)),
    # Gemma3: (1+w) q/k norms, RoPE per layer type (local theta 10^4, global linear x4 on 10^6),
    # final cap; attn_logit_softcapping is set and transformers does NOT apply it (Gemma3Attention).
    "gemma3_layer_rope": (transformers.Gemma3TextConfig, transformers.Gemma3ForCausalLM,
                          dict(hidden_size=48, intermediate_size=96, num_hidden_layers=4, num_attention_heads=3,
                               num_key_value_heads=1, head_dim=20, query_pre_attn_scalar=16, sliding_window=WINDOW,
                               layer_types=["sliding_attention", "sliding_attention", "full_attention",
                                            "sliding_attention"],
                               rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                                "full_attention": {"rope_type": "linear", "factor": 4.0,
                                                                   "rope_theta": 1000000.0}},
                               final_logit_softcapping=3.0, attn_logit_softcapping=2.0, pad_token_id=0, **_IDS)),
    # Gemma3 untied, GQA, default per-type thetas, full then sliding, no caps.
    "gemma3_untied_gqa": (transformers.Gemma3TextConfig, transformers.Gemma3ForCausalLM,
                          dict(hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, sliding_window=WINDOW,
                               layer_types=["full_attention", "sliding_attention"], tie_word_embeddings=False,
                               pad_token_id=0, **_IDS)),
    # Phi-2: parallel residual from one LayerNorm, biases everywhere incl. lm_head, dense/fc1/fc2,
    # gelu_new, partial RoPE 0.5 (6 of 12 dims).
    "phi2_parallel": (transformers.PhiConfig, transformers.PhiForCausalLM,
                      dict(hidden_size=48, intermediate_size=100, num_hidden_layers=2, num_attention_heads=4,
                           partial_rotary_factor=0.5, tie_word_embeddings=False, **_IDS)),
    # Phi with shared q/k LayerNorms (with bias), GQA, RoPE on 6 of 16 dims, tied (lm_head keeps its bias).
    "phi2_qk_ln_tied": (transformers.PhiConfig, transformers.PhiForCausalLM,
                        dict(hidden_size=64, intermediate_size=72, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, partial_rotary_factor=0.375, qk_layernorm=True,
                             tie_word_embeddings=True, **_IDS)),
    # Phi-3: fused qkv_proj (q, k, v) and gate_up_proj (gate, up), GQA, pad 5 inside the vocabulary.
    "phi3_fused": (transformers.Phi3Config, transformers.Phi3ForCausalLM,
                   dict(hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, pad_token_id=5, tie_word_embeddings=False, **_IDS)),
    # Phi-4-mini-like: LongRoPE with original_max_position_embeddings 16 < T (the long factors),
    # attention_factor from max_position_embeddings / 16 = 4, partial RoPE 0.75 (12 of 16), tied.
    "phi3_longrope_long": (transformers.Phi3Config, transformers.Phi3ForCausalLM,
                           dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=4, max_position_embeddings=64, original_max_position_embeddings=16,
                                rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                                 "partial_rotary_factor": 0.75, "short_factor": _SHORT_FACTORS,
                                                 "long_factor": _LONG_FACTORS},
                                pad_token_id=0, tie_word_embeddings=True, **_IDS)),
    # LongRoPE with original_max_position_embeddings 48 > T (the short factors), an explicit
    # attention_factor, full rotary; and a sliding window on every layer (Phi3Model).
    "phi3_longrope_short_sliding": (transformers.Phi3Config, transformers.Phi3ForCausalLM,
                                    dict(hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=192,
                                         original_max_position_embeddings=48, sliding_window=WINDOW,
                                         rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                                          "attention_factor": 1.3, "short_factor": _SHORT_FACTORS,
                                                          "long_factor": _LONG_FACTORS},
                                         pad_token_id=0, tie_word_embeddings=False, **_IDS)),
    # StableLM: parallel residual, q/k/v biases, per-head q/k LayerNorms (no bias), RoPE on 4 of 16.
    "stablelm_parallel_qk": (transformers.StableLmConfig, transformers.StableLmForCausalLM,
                             dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, partial_rotary_factor=0.25, use_parallel_residual=True,
                                  use_qkv_bias=True, qk_layernorm=True, tie_word_embeddings=False, **_IDS)),
    # StableLM sequential (two LayerNorms a layer), RoPE on 6 of 12, tied.
    "stablelm_sequential_tied": (transformers.StableLmConfig, transformers.StableLmForCausalLM,
                                 dict(hidden_size=48, intermediate_size=72, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=4, partial_rotary_factor=0.5,
                                      tie_word_embeddings=True, **_IDS)),
    # SmolLM3: NoPE every 2nd layer (no_rope_layers [1, 0, 1, 0]), the NoPE layers windowed,
    # attention and MLP biases, theta 2e6 (the default), tied (the default).
    "smollm3_nope_sliding": (transformers.SmolLM3Config, transformers.SmolLM3ForCausalLM,
                             dict(hidden_size=48, intermediate_size=80, num_hidden_layers=4, num_attention_heads=4,
                                  num_key_value_heads=2, no_rope_layer_interval=2, use_sliding_window=True,
                                  sliding_window=WINDOW, attention_bias=True, mlp_bias=True, pad_token_id=None,
                                  **_IDS)),
    # SmolLM3 with an explicit no_rope_layers list, MQA, untied, theta 5e4.
    "smollm3_untied": (transformers.SmolLM3Config, transformers.SmolLM3ForCausalLM,
                       dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                            num_key_value_heads=1, no_rope_layers=[1, 1, 0], rope_theta=50000.0,
                            tie_word_embeddings=False, pad_token_id=None, **_IDS)),
    # MobileLLM: a Llama that is deep and thin, MQA, tied embeddings.
    "mobilellm_deep_thin": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
                            dict(hidden_size=32, intermediate_size=88, num_hidden_layers=10, num_attention_heads=4,
                                 num_key_value_heads=1, tie_word_embeddings=True, **_IDS)),
}

def spec(name: str):
    """(config class, model class, config kwargs) of a CONFIGS or FAMILY_CONFIGS entry."""
    return CONFIGS[name] if name in CONFIGS else FAMILY_CONFIGS[name]


def _norm_modules(model) -> dict:
    """name -> module of every norm (RMSNorms of any family, LayerNorms)."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, torch.nn.LayerNorm) or "RMSNorm" in type(m).__name__}


def build(name: str, seed: int = 0, **overrides):
    """A transformers model with random weights (larger than the default init
    so the logits are far from uniform and errors are visible)."""
    config_cls, model_cls, kwargs = spec(name)
    torch.manual_seed(seed)
    config = config_cls(vocab_size=VOCAB, initializer_range=0.08, **{**kwargs, **overrides})
    model = model_cls(config).float()
    norms = _norm_modules(model)
    with torch.no_grad():  # norms away from identity and biases away from 0, so their gradients matter
        for pname, param in model.named_parameters():
            module, _, leaf = pname.rpartition(".")
            if leaf == "weight" and module in norms:
                if "Gemma" in type(norms[module]).__name__:
                    param.uniform_(-0.5, 0.5)  # Gemma scales by (1 + w): w near 0 is the identity
                else:
                    param.uniform_(0.5, 1.5)
            elif leaf == "bias":
                param.normal_(0.0, 0.1)
    return model


def save(model, path, dtype=torch.float32, max_shard_size=None) -> None:
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.to(dtype).save_pretrained(path, safe_serialization=True, **kwargs)
    model.float()


def load_reference(path):
    """The saved model as transformers reads it: f32, eager attention."""
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


def batch(B: int = 3, T: int = 37, seed: int = 1, vocab: int = VOCAB):
    """Right-padded batch with a masked prompt: ids, attention mask, labels."""
    g = np.random.default_rng(seed)
    ids = g.integers(0, vocab, size=(B, T)).astype(np.int64)
    mask = np.ones((B, T), dtype=np.int64)
    for b in range(1, B):  # row b keeps T - 7*b real tokens, then padding
        mask[b, T - 7 * b:] = 0
    labels = np.where(mask == 1, ids, -100)
    labels[0, :5] = -100  # a prompt that takes no loss
    return ids, mask, labels


def reference_outputs(model, ids, mask, labels):
    """logits, loss and {name: grad} from transformers."""
    model.zero_grad()
    out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                labels=torch.from_numpy(labels))
    out.loss.backward()
    grads = {n: p.grad.detach().numpy().copy() for n, p in model.named_parameters()}
    return out.logits.detach().numpy(), out.loss.item(), grads



def sliding_window(config) -> int | None:
    """The window of the config's windowed layers, or None if it has none
    (Phi-3 windows every layer; the others the layers typed sliding_attention)."""
    c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    window = c.get("sliding_window")
    if window is None:
        return None
    if c.get("model_type") == "phi3" or "sliding_attention" in (c.get("layer_types") or []):
        return int(window)
    return None


def defined_rows(config, mask) -> np.ndarray:
    """[B, T] bool: the positions whose logits transformers defines. A padded
    query of a windowed layer that sees no real key (right padding: more than
    window - 1 past the row's last real token) has every score masked to
    finfo.min, and softmax spreads it evenly over all keys, future ones
    included: an artefact, not semantics to match. Real tokens and padded
    queries that still see a real key are compared."""
    mask = np.asarray(mask)
    window = sliding_window(config)
    if window is None:
        return np.ones(mask.shape, dtype=bool)
    real = np.cumsum(mask, axis=1)  # real keys up to and including t
    before = np.concatenate([np.zeros((mask.shape[0], window), real.dtype), real], axis=1)[:, :mask.shape[1]]
    return (mask == 1) | (real - before > 0)  # a real key among t-window+1 .. t


def bias_grad_scales(model, ids, mask, labels) -> dict:
    """{bias name: sum|terms| of its gradient}, per element: the sum over
    tokens (and heads) of |d loss / d module output|, for assert_close's
    scale. A bias gradient is a sum over tokens that may cancel exactly: k's
    bias in a NoPE layer (SmolLM3) or in the dims partial RoPE leaves alone
    (Phi, StableLM) gets none, since softmax ignores a shift common to all
    keys; the tensor's own largest value is then rounding noise, not a scale."""
    scales, hooks = {}, []
    for mname, module in model.named_modules():
        if isinstance(getattr(module, "bias", None), torch.nn.Parameter):
            def hook(_module, _grad_in, grad_out, key=f"{mname}.bias"):
                g = grad_out[0].detach().abs().double()
                scales[key] = scales.get(key, 0.0) + g.reshape(-1, g.shape[-1]).sum(0).numpy()
            hooks.append(module.register_full_backward_hook(hook))
    try:
        model.zero_grad()
        out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                    labels=torch.from_numpy(labels))
        out.loss.backward()
    finally:
        for h in hooks:
            h.remove()
        model.zero_grad()
    return scales
