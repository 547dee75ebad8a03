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


def build(name: str, seed: int = 0, **overrides):
    """A transformers model with random weights (larger than the default init
    so the logits are far from uniform and errors are visible)."""
    config_cls, model_cls, kwargs = CONFIGS[name]
    torch.manual_seed(seed)
    config = config_cls(vocab_size=VOCAB, initializer_range=0.08, **{**kwargs, **overrides})
    model = model_cls(config).float()
    with torch.no_grad():  # norms away from 1 and biases away from 0, so their gradients matter
        for pname, param in model.named_parameters():
            if pname.endswith("norm.weight") or pname.endswith("layernorm.weight"):
                param.uniform_(0.5, 1.5)
            elif pname.endswith(".bias"):
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

