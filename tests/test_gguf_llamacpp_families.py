"""llama.cpp runs tinylm's GGUF exports of every family as tinylm runs them.
Each case is a tiny random model of one family with Mistral's tokenizer
(32000 ids), written by save_gguf; then
  - F32: libllama's logits equal tinylm's (which equal transformers',
    tests/test_families.py), and greedy decoding matches;
  - F16: libllama's logits equal tinylm's on the F16 file read back, to
    llama.cpp's F16 rounding of the activations, and greedy decoding matches;
  - a LoRA adapter on every projection, save_adapter(format="gguf"),
    applied by libllama to the F32 file gives the adapted model's logits;
  - Q8_0 and Q4_K_M: tinylm's perplexity on the file's own blocks equals
    llama-perplexity on the file's weights decoded to F32 and, to llama.cpp's
    8-bit rounding of the activations, llama-perplexity on the file itself.
Needs the llama.cpp build (make test-llamacpp)."""
import warnings

import numpy as np
import pytest
import torch

import llamacpp_ref
import tinylm
from fixture_paths import tokenizer_fixture
from hf_models import save, spec
from tinylm.evaluate.llama_perplexity import llama_perplexity
from tinylm.gguf import arch

if llamacpp_ref.skip_reason():
    pytest.skip(llamacpp_ref.skip_reason(), allow_module_level=True)

VOCAB = 32000  # Mistral's
# Rows of 256 (and of 32) so that Q4_K (and Q8_0) blocks hold the projections and the embedding;
# llama-quantize gives a tensor of other rows another type (an o_proj over 3 x 24 or 4 x 20 head dims is F16).
SIZE = {"hidden_size": 256, "intermediate_size": 512}
# case -> (hf_models config, overrides): configs a GGUF carries whole (tinylm.gguf.arch.gguf_losses is empty)
CASES = {
    "llama_gqa": ("llama_gqa", {}),
    "llama3_rope_bias": ("llama3_rope_bias", {}),
    "qwen2_bias": ("qwen2_bias", {}),
    "qwen3_qk_norm": ("qwen3_qk_norm", {"attention_bias": False}),  # save_gguf refuses it (archs/qwen3.py)
    "gemma_mqa": ("gemma_mqa", {}),
    "gemma2_scaled": ("gemma2_softcap", {"query_pre_attn_scalar": 24}),
    "gemma3_layer_rope": ("gemma3_layer_rope", {"attn_logit_softcapping": None, "query_pre_attn_scalar": 20,
                                                "num_attention_heads": 4}),  # Gemma3TextConfig: 256 % heads == 0
    "phi2_parallel": ("phi2_parallel", {}),
    "phi3_fused": ("phi3_fused", {}),
    "stablelm_parallel": ("stablelm_parallel_qk", {"qk_layernorm": False}),
    "smollm3_step4": ("smollm3_untied", {"num_hidden_layers": 4, "no_rope_layers": None,
                                         "no_rope_layer_interval": 4}),
}
EXPORTS = ("F32", "F16", "Q8_0", "Q4_K_M")
# Logits, relative to the largest: float32 rounding (llama.cpp's own error against float64 is ~1e-5) and,
# in the GELU families, ggml's CPU GELU, which reads an F16 table (GGML_GELU_FP16), ~1e-3 off the tanh form.
ATOL = {"silu": 5e-5, "gelu": 3e-3}
# Perplexity on the same f32 weights, relative: the logits' errors average out over the tokens (silu
# families 3e-7 measured; the GELU table up to 6e-5).
PPL_REL = {"silu": 5e-5, "gelu": 2.5e-4}
# With F16 weights llama.cpp also rounds each product's input to F16 (2^-11 relative): 1.0 to 1.5e-3 of
# the largest logit measured here (about 3 * 2^-11); a weight read wrongly costs O(1).
F16_ATOL = 8 * 2.0 ** -11
# llama.cpp on a quantized file rounds the activations to 8 bits inside each product: Q8_0 blocks (a
# scale per 32 values) against Q8_0 weights, Q8_K (a scale per 256, so coarser) against the K types. On
# these near-uniform random models (perplexity 1.5-3x the vocabulary) that moved the perplexity by up
# to 0.29% (Q8_0) and 1.0% (Q4_K_M); on trained models it is a few tenths of a percent.
ACTIVATION_REL = {"Q8_0": 6e-3, "Q4_K_M": 1.5e-2}
N_CTX = 32
TEXT = ("Every family writes its own file, and llama.cpp reads each one back: the weights, the norms, "
        "the rotary positions and the head. Counting 3, 7, 11 and 19 is part of it too.\n") * 4


@pytest.fixture(scope="module")
def tokenizer():
    return tinylm.Tokenizer.from_pretrained(tokenizer_fixture("mistral-7b"))


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory, tokenizer):
    """One case, made once for all its checks: dict(name, hf (the folder),
    model (tinylm's, of the folder), files (EXPORTS -> path), text (its
    file), ids (llama.cpp's tokens of it, as llama-perplexity reads it),
    act ("silu" or "gelu": the tolerances' key))."""
    name, overrides = CASES[request.param]
    config_cls, model_cls, kwargs = spec(name)
    torch.manual_seed(0)
    config = config_cls(**{**kwargs, **SIZE, **overrides, "vocab_size": VOCAB, "initializer_range": 0.08,
                           "bos_token_id": 1, "eos_token_id": 2})
    root = tmp_path_factory.mktemp(request.param)
    save(model_cls(config).float(), root / "hf")
    model = tinylm.Model.from_pretrained(root / "hf")
    assert arch.gguf_losses(model.config) == []
    files = {quant: str(root / f"{quant}.gguf") for quant in EXPORTS}
    for quant, path in files.items():
        model.save_gguf(path, quant, tokenizer=tokenizer)
    (root / "text.txt").write_text(TEXT, encoding="utf-8")
    return dict(name=request.param, hf=root / "hf", model=model, files=files, text=str(root / "text.txt"),
                ids=llamacpp_ref.tokenize(files["F32"], TEXT[:-1]),  # llama-perplexity drops one trailing newline
                act="silu" if model.config.get("hidden_act", model.config.get("hidden_activation", "silu")) == "silu"
                else "gelu")


def _assert_logits(theirs, ours, atol):
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=atol * max(1.0, float(np.abs(ours).max())))


def test_f32_export_runs_as_tinylm(case):
    model, path, ids = case["model"], case["files"]["F32"], case["ids"][:24]
    _assert_logits(llamacpp_ref.logits(path, ids), model.forward([ids])[0], ATOL[case["act"]])
    assert llamacpp_ref.greedy(path, ids[:6], 10) == model.generate_ids([ids[:6]], max_new_tokens=10, eos=[])[0]


def test_f16_export_runs_as_tinylm_on_its_weights(case):
    path, ids = case["files"]["F16"], case["ids"][:24]
    model = tinylm.Model.from_pretrained(path)
    ours, theirs = model.forward([ids])[0], llamacpp_ref.logits(path, ids)
    print(f"{case['name']} F16: max |llama.cpp - tinylm| / max |logit| = "
          f"{np.abs(theirs - ours).max() / np.abs(ours).max():.2e}")
    _assert_logits(theirs, ours, ATOL[case["act"]] + F16_ATOL)
    assert llamacpp_ref.greedy(path, ids[:6], 10) == model.generate_ids([ids[:6]], max_new_tokens=10, eos=[])[0]


def test_gguf_lora_adapter_runs_as_tinylm(case, tmp_path):
    model = tinylm.Model.from_pretrained(case["hf"])
    model.add_lora(r=4, alpha=16, target_modules="all-linear", seed=3)
    rng = np.random.default_rng(0)
    for n in model.parameter_names():
        if "lora_B" in n:
            model.param(n)[...] = rng.normal(0, 0.05, model.param(n).shape)
    adapter = str(tmp_path / "adapter.gguf")
    model.save_adapter(adapter, format="gguf")
    ids = case["ids"][:24]
    ours = model.forward([ids])[0]
    with model.disable_adapter():
        assert np.abs(ours - model.forward([ids])[0]).max() > 1e-2 * np.abs(ours).max()  # the adapter matters
    _assert_logits(llamacpp_ref.logits(case["files"]["F32"], ids, lora=adapter), ours, ATOL[case["act"]])


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K_M"])
def test_quantized_perplexity_matches_llama_perplexity(case, quant, tmp_path):
    path = case["files"][quant]
    model = tinylm.Model.from_pretrained(path)
    assert model.quant == "gguf"  # the projections are the file's blocks
    ours = llama_perplexity(model, case["ids"], N_CTX, model.config["bos_token_id"])
    assert ours["chunks"] >= 2
    ours = ours["perplexity"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dequantize=True says the weights keep the file's rounding
        decoded = tinylm.Model.from_pretrained(path, dequantize=True)
    decoded.save_gguf(str(tmp_path / "decoded.gguf"), "F32")
    on_decoded = llamacpp_ref.perplexity(str(tmp_path / "decoded.gguf"), case["text"], N_CTX)
    on_file = llamacpp_ref.perplexity(path, case["text"], N_CTX)
    print(f"{case['name']} {quant}: tinylm {ours:.4f}; llama.cpp on the file {on_file:.4f} "
          f"(rel {on_file / ours - 1:+.2e}), on its decoded F32 {on_decoded:.4f} (rel {on_decoded / ours - 1:+.2e})")
    assert ours == pytest.approx(on_decoded, rel=PPL_REL[case["act"]])
    assert ours == pytest.approx(on_file, rel=ACTIVATION_REL[quant])
