"""The llama.cpp reference (tests/llamacpp_ref.py) checked against
transformers on a tiny random Llama with Mistral's tokenizer: what the other
tests lean on it for must be right first. Skips without the build
(tests/llamacpp/build_reference.sh)."""
import copy
import math

import numpy as np
import pytest
import torch
import transformers

import llamacpp_ref
from fixture_paths import tokenizer_fixture

if llamacpp_ref.skip_reason():
    pytest.skip(llamacpp_ref.skip_reason(), allow_module_level=True)

TEXT = "The quick brown fox jumps over the lazy dog. 12 + 30 = 42,\nsaid the fox."
N_CTX = 32


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(HF folder, F32 GGUF, eager f32 model, tokenizer). hidden 256 so that
    rows fill a K-quant super-block; a wide init so that logits are far from
    uniform and perplexity depends on which tokens are scored. The GGUF's
    vocab scores come from tokenizer.json's merges (see llamacpp_ref.convert)."""
    tok = transformers.PreTrainedTokenizerFast.from_pretrained(tokenizer_fixture("mistral-7b"))
    root = tmp_path_factory.mktemp("llamacpp")
    hf_dir, gguf = str(root / "hf"), str(root / "f32.gguf")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tok),
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                      initializer_range=0.1, max_position_embeddings=256)
    transformers.LlamaForCausalLM(config).save_pretrained(hf_dir)
    tok.save_pretrained(hf_dir)
    llamacpp_ref.convert(hf_dir, gguf, merge_scores=True)
    model = transformers.LlamaForCausalLM.from_pretrained(hf_dir, dtype=torch.float32,
                                                          attn_implementation="eager").eval()
    return hf_dir, gguf, model, tok


def _hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def _assert_float32_close(ours, model, ids):
    """ours within 3x transformers' own float32 error of its float64 forward
    (the wide init makes both ~1e-5 on logits up to ~8)."""
    ref32 = _hf_logits(model, ids)
    ref64 = _hf_logits(copy.deepcopy(model).double(), ids)
    assert ours.shape == ref32.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref64, rtol=0, atol=3 * np.abs(ref32 - ref64).max())


def test_tokenize_matches_hf(tiny):
    _, gguf, _, tok = tiny
    assert llamacpp_ref.tokenize(gguf, TEXT) == tok(TEXT)["input_ids"]
    assert llamacpp_ref.tokenize(gguf, TEXT, add_special=False) == tok(TEXT, add_special_tokens=False)["input_ids"]


def test_trained_tokenizer_converts_with_a_named_pre_tokenizer(tmp_path):
    """A tokenizer trained here has a pre-tokenizer hash the converter does
    not know, so it refuses it unless told which pre-tokenizer it is."""
    tokenizers = pytest.importorskip("tokenizers")
    qwen = tokenizers.Tokenizer.from_file(tokenizer_fixture("qwen3") + "/tokenizer.json")
    trained = tokenizers.Tokenizer(tokenizers.models.BPE())
    trained.normalizer, trained.pre_tokenizer, trained.decoder = qwen.normalizer, qwen.pre_tokenizer, qwen.decoder
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    trained.train_from_iterator([TEXT] * 4, trainer)
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=trained, eos_token="<|endoftext|>")
    config = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                      num_key_value_heads=1, vocab_size=len(tok), bos_token_id=None,
                                      eos_token_id=tok.eos_token_id)
    transformers.LlamaForCausalLM(config).save_pretrained(str(tmp_path))
    tok.save_pretrained(str(tmp_path))
    llamacpp_ref.convert(str(tmp_path), str(tmp_path / "m.gguf"), pre="qwen2")
    text = TEXT + " it's   42!\n\n"
    assert llamacpp_ref.tokenize(str(tmp_path / "m.gguf"), text) == tok(text)["input_ids"]


def test_logits_and_greedy_match_transformers(tiny):
    _, gguf, model, tok = tiny
    ids = tok(TEXT)["input_ids"]
    ours = llamacpp_ref.logits(gguf, ids)
    assert ours.shape == (len(ids), len(tok))
    _assert_float32_close(ours, model, ids)
    with torch.no_grad():
        hf = model.generate(torch.tensor([ids[:6]]), max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert llamacpp_ref.greedy(gguf, ids[:6], 8) == hf[0, 6:].tolist()


def test_lora_adapter_matches_peft(tiny, tmp_path):
    peft = pytest.importorskip("peft")
    hf_dir, gguf, _, tok = tiny
    torch.manual_seed(1)
    base = transformers.LlamaForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager")
    lora = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                                     target_modules=["q_proj", "v_proj", "down_proj"])).eval()
    lora.save_pretrained(str(tmp_path / "adapter"))
    llamacpp_ref.convert(str(tmp_path / "adapter"), str(tmp_path / "lora.gguf"), lora_base=hf_dir)
    ids = tok(TEXT)["input_ids"]
    ours = llamacpp_ref.logits(gguf, ids, lora=str(tmp_path / "lora.gguf"))
    _assert_float32_close(ours, lora, ids)


def test_perplexity_follows_its_chunk_rule(tiny, tmp_path):
    _, gguf, model, tok = tiny
    words = TEXT.split()
    rng = np.random.default_rng(0)
    text = " ".join(rng.choice(words, 120)) + "\n"
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    ids = llamacpp_ref.tokenize(gguf, text[:-1])  # the tool drops one trailing newline
    model64 = copy.deepcopy(model).double()
    nll = []
    for c in range(len(ids) // N_CTX):
        chunk = [tok.bos_token_id] + ids[c * N_CTX + 1:(c + 1) * N_CTX]
        logp = torch.log_softmax(torch.from_numpy(_hf_logits(model64, chunk)), -1)
        first = N_CTX // 2
        nll += [-logp[i, chunk[i + 1]].item() for i in range(first, N_CTX - 1)]
    assert len(ids) // N_CTX >= 2
    ref = math.exp(sum(nll) / len(nll))
    # float32 logits (errors ~1e-5) move the mean NLL, and so PPL, by about as much
    assert llamacpp_ref.perplexity(gguf, str(path), N_CTX) == pytest.approx(ref, rel=1e-4)


@pytest.mark.parametrize("type_name", ["Q8_0", "Q4_K_M"])
def test_llama_quantize_is_ggml_quantize_chunk(tiny, tmp_path, type_name):
    """Every tensor llama-quantize writes is, byte for byte, libggml's
    ggml_quantize_chunk of the F32 rows (the oracle other tests use), and the
    quantized model runs."""
    import gguf as gguf_py
    _, gguf, _, tok = tiny
    out = str(tmp_path / f"{type_name}.gguf")
    llamacpp_ref.quantize(gguf, out, type_name)
    ggml = llamacpp_ref.libggml()
    src = {t.name: t for t in gguf_py.GGUFReader(gguf).tensors}
    types = set()
    for t in gguf_py.GGUFReader(out).tensors:
        rows = np.asarray(src[t.name].data, dtype=np.float32)
        if t.tensor_type == gguf_py.GGMLQuantizationType.F32:
            assert np.array_equal(np.asarray(t.data), rows), t.name
            continue
        types.add(t.tensor_type.name)
        rows = rows.reshape(-1, rows.shape[-1])
        q = ggml.quantize(int(t.tensor_type), rows)
        assert q == np.asarray(t.data).tobytes(), t.name
        # to_float agrees bit for bit with gguf-py's numpy dequantizer (on 8 rows: numpy is slow)
        head = np.asarray(t.data)[:8]
        back = ggml.dequantize(int(t.tensor_type), head.tobytes(), head.shape[0] * rows.shape[1])
        assert np.array_equal(back, gguf_py.quants.dequantize(head, t.tensor_type).ravel()), t.name
    assert types == ({"Q8_0"} if type_name == "Q8_0" else {"Q4_K", "Q6_K"})
    ids = tok(TEXT)["input_ids"]
    assert np.isfinite(llamacpp_ref.logits(out, ids)).all()


def test_bench_reports_speeds(tiny):
    _, gguf, _, _ = tiny
    records = llamacpp_ref.bench(gguf, threads=1, n_prompt=16, n_gen=4)
    assert [(r["n_prompt"], r["n_gen"]) for r in records] == [(16, 0), (0, 4)]
    assert all(r["avg_ts"] > 0 for r in records)


def test_ggml_refuses_what_it_would_abort_on():
    ggml = llamacpp_ref.libggml()
    with pytest.raises(ValueError, match="multiple"):
        ggml.quantize(12, np.zeros((1, 64), np.float32))  # Q4_K blocks are 256 wide
