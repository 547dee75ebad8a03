"""llama.cpp runs tinylm's GGUF export of every family as transformers runs
the Hugging Face model it came from: tiny random models with Mistral's
tokenizer (32000 ids), written by save_gguf (F32), their logits from
libllama against tinylm's (which equal transformers', tests/test_families.py)
and greedy decoding. Needs the llama.cpp build (make test-llamacpp)."""
import numpy as np
import pytest
import torch

import llamacpp_ref
import tinylm
from fixture_paths import tokenizer_fixture
from hf_models import save, spec

if llamacpp_ref.skip_reason():
    pytest.skip(llamacpp_ref.skip_reason(), allow_module_level=True)

VOCAB = 32000  # Mistral's
# case -> (hf_models config, overrides): configs a GGUF carries whole (tinylm.gguf.arch.gguf_losses is empty)
CASES = {
    "llama_gqa": ("llama_gqa", {}),
    "llama3_rope_bias": ("llama3_rope_bias", {}),
    "qwen2_bias": ("qwen2_bias", {}),
    "qwen3_qk_norm": ("qwen3_qk_norm", {"attention_bias": False}),  # llama.cpp's qwen3 has no q/k/v/o biases
    "gemma_mqa": ("gemma_mqa", {}),
    "gemma2_scaled": ("gemma2_softcap", {"query_pre_attn_scalar": 24}),
    "gemma3_layer_rope": ("gemma3_layer_rope", {"attn_logit_softcapping": None, "query_pre_attn_scalar": 20}),
    "phi2_parallel": ("phi2_parallel", {}),
    "phi3_fused": ("phi3_fused", {}),
    "stablelm_parallel": ("stablelm_parallel_qk", {"qk_layernorm": False}),
    "smollm3_step4": ("smollm3_untied", {"num_hidden_layers": 4, "no_rope_layers": None,
                                         "no_rope_layer_interval": 4}),
}
# GELU families: ggml's CPU GELU reads an F16 table (GGML_GELU_FP16), ~1e-3 off the exact tanh form
GELU_ATOL = 3e-3


@pytest.fixture(scope="module")
def tokenizer():
    return tinylm.Tokenizer.from_pretrained(tokenizer_fixture("mistral-7b"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_llama_cpp_runs_the_export(tmp_path, tokenizer, case):
    name, overrides = CASES[case]
    config_cls, model_cls, kwargs = spec(name)
    torch.manual_seed(0)
    config = config_cls(**{**kwargs, **overrides, "vocab_size": VOCAB, "initializer_range": 0.08,
                           "bos_token_id": 1, "eos_token_id": 2})
    save(model_cls(config).float(), tmp_path / "hf")
    model = tinylm.Model.from_pretrained(tmp_path / "hf")
    from tinylm.gguf import arch
    assert arch.gguf_losses(model.config) == []
    path = str(tmp_path / "model.gguf")
    model.save_gguf(path, "F32", tokenizer=tokenizer)
    ids = tokenizer.encode("The quick brown fox jumps over the lazy dog; 12 + 30 = 42.")[:24]
    ours = model.forward([ids])[0]
    theirs = llamacpp_ref.logits(path, ids)
    gelu = model.config.get("hidden_act", model.config.get("hidden_activation", "silu")) != "silu"
    atol = (GELU_ATOL if gelu else 5e-5) * max(1.0, float(np.abs(ours).max()))
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=atol)
    assert llamacpp_ref.greedy(path, ids[:6], 10) == model.generate_ids([ids[:6]], max_new_tokens=10, eos=[])[0]
