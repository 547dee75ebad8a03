"""llama.cpp itself on the files tinylm writes: it loads them, its logits
equal tinylm's on the same weights (F32), its perplexity by
llama-perplexity's chunking equals tinylm's (3 significant digits for
F32/F16, within 0.5% for quantized files, where llama.cpp rounds activations
to 8 bits inside its products), greedy decoding matches, and a GGUF LoRA
adapter applied with --lora gives the adapted model's logits (also on a
base whose q, k and v are fused). Needs the
llama.cpp build (make test-llamacpp); the source model is a tiny Llama with
Mistral's tokenizer converted by llama.cpp's own converter."""
import numpy as np
import pytest
import torch
import transformers

import llamacpp_ref
import tinylm
from fixture_paths import tokenizer_fixture
from tinylm.evaluate.llama_perplexity import llama_perplexity
from tinylm.gguf.file import GGUFFile

if llamacpp_ref.skip_reason():
    pytest.skip(llamacpp_ref.skip_reason(), allow_module_level=True)

N_CTX = 64
TEXT = ("The quick brown fox jumps over the lazy dog. A tiny model learns what it can from a few words, "
        "and llama.cpp runs the file it was given: numbers like 12, 30 and 42 included.\n") * 6


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """(llama.cpp-converted F32 .gguf of a tiny random Llama, root folder)."""
    tok = transformers.PreTrainedTokenizerFast.from_pretrained(tokenizer_fixture("mistral-7b"))
    root = tmp_path_factory.mktemp("gguf_llamacpp")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tok),
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                      initializer_range=0.1, max_position_embeddings=256)
    transformers.LlamaForCausalLM(config).save_pretrained(str(root / "hf"))
    tok.save_pretrained(str(root / "hf"))
    llamacpp_ref.convert(str(root / "hf"), str(root / "f32.gguf"), merge_scores=True)
    (root / "text.txt").write_text(TEXT, encoding="utf-8")
    return str(root / "f32.gguf"), root


def _export(base, quant):
    path, root = base
    out = str(root / f"tinylm-{quant}.gguf")
    tinylm.Model.from_pretrained(path).save_gguf(out, quant)
    return out


def _ids(path):
    return llamacpp_ref.tokenize(path, TEXT[:-1])  # llama-perplexity drops one trailing newline


@pytest.mark.parametrize("quant", ["F32", "F16"])
def test_float_exports_match_llama_cpp(base, quant):
    path = _export(base, quant)
    model = tinylm.Model.from_pretrained(path)
    ids = _ids(path)[:48]
    if quant == "F32":  # the same f32 weights; llama.cpp's own error against float64 is ~1e-5 on these logits
        ours = model.forward([ids])[0]
        theirs = llamacpp_ref.logits(path, ids)
        np.testing.assert_allclose(theirs, ours, rtol=0, atol=5e-5 * max(1.0, np.abs(ours).max()))
    # (with F16 weights llama.cpp also rounds the activations to F16 inside each product: ~1e-3 off)
    new = llamacpp_ref.greedy(path, ids[:8], 16)
    assert model.generate_ids([ids[:8]], max_new_tokens=16)[0] == new


@pytest.mark.parametrize("quant", ["F32", "F16"])
def test_float_perplexity_matches_llama_perplexity(base, quant):
    path = _export(base, quant)
    model = tinylm.Model.from_pretrained(path)
    ours = llama_perplexity(model, _ids(path), N_CTX, model.config["bos_token_id"])
    assert ours["chunks"] >= 2
    theirs = llamacpp_ref.perplexity(path, str(base[1] / "text.txt"), N_CTX)
    assert ours["perplexity"] == pytest.approx(theirs, rel=5e-4)  # 3 significant digits


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_0", "Q5_0", "Q4_K_M", "Q6_K"])
def test_quantized_perplexity_matches_llama_perplexity(base, quant, tmp_path):
    """tinylm on the quantized file computes what llama.cpp computes on the
    same weights decoded to F32 (to float rounding); llama.cpp on the
    quantized file itself differs by its 8-bit rounding of the activations
    (Q8_0 blocks for Q4_0/Q5_0/Q8_0, Q8_K for the K types), which this
    near-uniform random model (perplexity ~3x its vocabulary) amplifies to
    about 1%; on trained models it is a few tenths of a percent."""
    path = _export(base, quant)
    model = tinylm.Model.from_pretrained(path)
    text = str(base[1] / "text.txt")
    ours = llama_perplexity(model, _ids(path), N_CTX, model.config["bos_token_id"])["perplexity"]
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dequantize=True says the weights keep the file's rounding
        decoded = tinylm.Model.from_pretrained(path, dequantize=True)
    decoded.save_gguf(str(tmp_path / "decoded.gguf"), "F32")
    assert ours == pytest.approx(llamacpp_ref.perplexity(str(tmp_path / "decoded.gguf"), text, N_CTX), rel=5e-5)
    assert ours == pytest.approx(llamacpp_ref.perplexity(path, text, N_CTX), rel=1.5e-2)


@pytest.mark.parametrize("fused", [False, True])
def test_gguf_lora_adapter_matches_llama_cpp(base, fused):
    """On the converter's file and on its --fuse-qkv one, where the adapter
    gives q, k and v one pair on attn_qkv (ranks 4 + 4 + 2)."""
    path, root = base
    if fused:
        path = str(root / "fused.gguf")
        llamacpp_ref.convert(str(root / "hf"), path, merge_scores=True, fuse_qkv=True)
    model = tinylm.Model.from_pretrained(path)
    assert ("blk.0.attn_qkv.weight" in model.gguf_types) == fused
    model.add_lora(r=4, alpha=16, target_modules="all-linear", rank_pattern={"v_proj": 2}, seed=3)
    rng = np.random.default_rng(0)
    for n in model.parameter_names():
        if "lora_B" in n:
            model.param(n)[...] = rng.normal(0, 0.05, model.param(n).shape)
    adapter = str(root / f"adapter-{'fused' if fused else 'separate'}.gguf")
    model.save_adapter(adapter, format="gguf")
    with GGUFFile(adapter) as f:
        assert f.tensors["blk.0.attn_qkv.weight.lora_b" if fused else "blk.0.attn_q.weight.lora_b"].ne[0] == (
            10 if fused else 4)
    ids = _ids(path)[:32]
    ours = model.forward([ids])[0]
    theirs = llamacpp_ref.logits(path, ids, lora=adapter)
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=5e-5 * max(1.0, np.abs(ours).max()))
