"""Model.generate and token_logprobs against transformers: greedy decoding
with the KV cache equals transformers' generate and the argmax of a full
forward at every step; the logits processors equal transformers' own.
tinylm runs with tinylm.Tokenizer, transformers with its own tokenizer of
the same folder."""
import numpy as np
import pytest
import torch
from transformers.generation import logits_process as lp

import tinylm
from tinylm import _core
from tinylm.generate import process_logits
from eval_fixtures import model_folder
from hf_models import CONFIGS, assert_close, load_reference

PROMPTS = ["Hello world! How are", "The quick brown fox jumps over the lazy dog. A cat sat", "Paris"]


@pytest.fixture(scope="module", params=list(CONFIGS))
def folder(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    _, tok = model_folder(path, request.param)
    return path, tok, tinylm.Tokenizer.from_pretrained(path)


def hf_generate(ref, tok, prompts, eos=None, **kwargs):
    """transformers' generate on left-padded prompts; new ids per row, cut
    after EOS (transformers pads finished rows)."""
    tok.pad_token, tok.padding_side = "<unk>", "left"
    enc = tok(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = ref.generate(**enc, do_sample=False, eos_token_id=eos, pad_token_id=0, **kwargs)
    rows = []
    for row in out[:, enc["input_ids"].shape[1]:].tolist():
        rows.append(row[:row.index(eos) + 1] if eos is not None and eos in row else row)
    return rows


def test_greedy_batch_equals_transformers_and_full_forward(folder):
    path, tok, ours = folder
    model = tinylm.Model.from_pretrained(path)
    got = model.generate(ours, PROMPTS, max_new_tokens=16, return_details=True)
    expected = hf_generate(load_reference(path), tok, PROMPTS, max_new_tokens=16)
    for prompt, g, e in zip(PROMPTS, got, expected):
        assert g.token_ids == e[:len(g.token_ids)]
        assert g.finish_reason == "eos" or g.token_ids == e
        # every step is the argmax of a forward over the whole sequence so far
        ids = tok.encode(prompt) + g.token_ids
        logits = model.forward([ids])[0]
        P = g.prompt_tokens
        assert np.argmax(logits[P - 1:-1], axis=-1).tolist() == g.token_ids


def test_cached_logits_equal_full_forward_with_left_padding(folder):
    path, tok, _ = folder
    model = tinylm.Model.from_pretrained(path)
    rows = [tok.encode(p) for p in PROMPTS]
    P, steps, V = max(map(len, rows)), 5, model.config["vocab_size"]
    pad = np.array([P - len(r) for r in rows], dtype=np.int32)
    ids = np.zeros((len(rows), P), dtype=np.int32)
    for b, r in enumerate(rows):
        ids[b, pad[b]:] = r
    session = _core.Generator(model._core, len(rows), P + steps)
    session.begin(pad)
    logits = np.empty((len(rows), V), dtype=np.float32)
    session.feed(ids, P, logits)
    rng = np.random.default_rng(0)
    for step in range(steps):
        for b, r in enumerate(rows):
            assert_close(logits[b], model.forward([r])[0, -1], what=f"row {b} step {step}")
        nxt = rng.integers(0, V, size=len(rows)).astype(np.int32)
        rows = [r + [int(t)] for r, t in zip(rows, nxt)]
        session.feed(nxt, 1, logits)
    assert session.length() == P + steps
    with pytest.raises(ValueError, match="KV cache holds"):
        session.feed(nxt, 1, logits)


def test_eos_repetition_penalty_and_chat_equal_transformers(tmp_path):
    _, tok = model_folder(tmp_path, "qwen2_bias")
    ours = tinylm.Tokenizer.from_pretrained(tmp_path)
    model, ref = tinylm.Model.from_pretrained(tmp_path), load_reference(tmp_path)
    free = model.generate(ours, PROMPTS, max_new_tokens=12, return_details=True)
    eos = free[0].token_ids[4]  # a token the first row produces: make it the EOS

    class Eos:  # the same tokenizer with another EOS id
        def __getattr__(self, name):
            return getattr(ours, name)
        eos_token_id = eos

    model._config["eos_token_id"] = eos
    got = model.generate(Eos(), PROMPTS, max_new_tokens=12, repetition_penalty=1.3, return_details=True)
    expected = hf_generate(ref, tok, PROMPTS, eos=eos, max_new_tokens=12, repetition_penalty=1.3)
    assert [g.token_ids for g in got] == expected
    assert "eos" in {g.finish_reason for g in got} and "length" in {g.finish_reason for g in got}
    for g in got:
        assert g.finish_reason == ("eos" if g.token_ids[-1] == eos else "length")
        if g.finish_reason == "eos":
            assert g.text == tok.decode(g.token_ids[:-1], skip_special_tokens=True)

    chat = [{"role": "user", "content": "turn on the kitchen lights"}]
    got = model.generate(ours, chat, max_new_tokens=10, return_details=True)
    ids = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)["input_ids"]
    assert got.prompt_tokens == len(ids)
    with torch.no_grad():
        out = ref.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=10, eos_token_id=eos, pad_token_id=0)
    assert got.token_ids == out[0, len(ids):].tolist()[:len(got.token_ids)]


def test_stop_strings_cut_the_text(tmp_path):
    model_folder(tmp_path, "llama_gqa")
    ours = tinylm.Tokenizer.from_pretrained(tmp_path)
    model = tinylm.Model.from_pretrained(tmp_path)
    free = model.generate(ours, PROMPTS[0], max_new_tokens=20)
    stop = free[6:9]
    got = model.generate(ours, PROMPTS[0], max_new_tokens=20, stop=["@@never@@", stop], return_details=True)
    assert got.finish_reason == "stop"
    assert got.text == free[:free.index(stop)]
    assert len(got.token_ids) < 20
    assert model.generate(ours, PROMPTS[0], max_new_tokens=0) == ""


def test_processors_equal_transformers():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(3, 211)).astype(np.float32)
    logits[0, :5] = logits[0, 5]  # ties at the top-k boundary
    history = [rng.integers(0, 211, size=n) for n in (7, 1, 30)]
    ids = torch.tensor(np.stack([np.resize(h, 30) for h in history]))  # repeats add no new tokens
    for temperature, top_k, top_p, penalty in [(0.7, 0, 1.0, 1.0), (1.0, 10, 1.0, 1.0), (1.3, 0, 0.8, 1.0),
                                               (0.9, 40, 0.9, 1.2), (0.0, 0, 1.0, 0.8)]:
        scores = torch.from_numpy(logits.copy())
        procs = [lp.RepetitionPenaltyLogitsProcessor(penalty)] if penalty != 1.0 else []
        if temperature > 0:
            procs += [lp.TemperatureLogitsWarper(temperature)] if temperature != 1.0 else []
            procs += [lp.TopKLogitsWarper(top_k)] if top_k else []
            procs += [lp.TopPLogitsWarper(top_p)] if top_p < 1.0 else []
        for proc in procs:
            scores = proc(ids, scores)
        got = process_logits(logits, history, temperature, top_k, top_p, penalty)
        expected = scores.numpy()
        np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
        np.testing.assert_allclose(got[~np.isinf(got)], expected[~np.isinf(expected)], rtol=1e-6)


def test_sampling_is_seeded(tmp_path):
    model_folder(tmp_path, "llama_mqa_tied")
    ours = tinylm.Tokenizer.from_pretrained(tmp_path)
    model = tinylm.Model.from_pretrained(tmp_path)
    kw = dict(max_new_tokens=12, temperature=1.5, top_p=0.95)
    a = model.generate(ours, PROMPTS, seed=1, **kw)
    assert model.generate(ours, PROMPTS, seed=1, **kw) == a
    assert model.generate(ours, PROMPTS, seed=2, **kw) != a
    assert model.generate(ours, PROMPTS, temperature=1.0, top_k=1, max_new_tokens=12) == \
        model.generate(ours, PROMPTS, max_new_tokens=12)


def test_generate_with_an_adapter_follows_its_forward(tmp_path):
    model_folder(tmp_path, "llama_gqa")
    ours = tinylm.Tokenizer.from_pretrained(tmp_path)
    model = tinylm.Model.from_pretrained(tmp_path)
    base = model.generate(ours, PROMPTS[1], max_new_tokens=12, return_details=True)
    model.add_lora(r=4, alpha=8, target_modules="all-linear")
    for name in model.trainable_names():
        if ".lora_B." in name:
            model.param(name)[...] = np.random.default_rng(1).normal(0, 0.3, model.param(name).shape)
    got = model.generate(ours, PROMPTS[1], max_new_tokens=12, return_details=True)
    assert got.token_ids != base.token_ids, "the adapter must change the output for the test to mean anything"
    ids = ours.encode(PROMPTS[1]) + got.token_ids
    logits = model.forward([ids])[0]
    assert np.argmax(logits[got.prompt_tokens - 1:-1], axis=-1).tolist() == got.token_ids
    with model.disable_adapter():
        assert model.generate(ours, PROMPTS[1], max_new_tokens=12, return_details=True).token_ids == base.token_ids


def test_token_logprobs_equal_loss_and_transformers(tmp_path):
    hf, _ = model_folder(tmp_path, "llama3_rope_bias")
    model = tinylm.Model.from_pretrained(tmp_path)
    ids = np.random.default_rng(2).integers(0, 211, size=(2, 40))
    mask = np.ones_like(ids)
    mask[1, 30:] = 0
    labels = np.where(mask == 1, ids, -100)
    labels[0, :6] = -100
    lp_ = model.token_logprobs(ids, labels, attention_mask=mask)
    n = int((labels[:, 1:] != -100).sum())
    assert -lp_.sum() / n == pytest.approx(model.loss(ids, labels, attention_mask=mask), rel=1e-5)
    with torch.no_grad():
        logits = hf(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
    ref = torch.log_softmax(logits.double(), -1)[:, :-1].gather(-1, torch.from_numpy(np.maximum(labels[:, 1:], 0))[
        ..., None])[..., 0].numpy() * (labels[:, 1:] != -100)
    assert_close(lp_[:, 1:], ref, rtol=1e-4, what="token log-probabilities")
    assert (lp_[:, 0] == 0).all() and (lp_[labels == -100] == 0).all()


def test_bad_arguments():
    model = tinylm.Model.from_config({"architectures": ["LlamaForCausalLM"], "vocab_size": 211, "hidden_size": 16,
                                      "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2})

    class Tok:
        eos_token_id = 2

        def encode(self, text, add_special_tokens=True):
            return [ord(c) % 211 for c in text]

    for kwargs, match in [({"max_new_tokens": -1}, "max_new_tokens"), ({"temperature": -0.5}, "temperature"),
                          ({"top_p": 0.0}, "top_p"), ({"top_k": 1.5}, "top_k"),
                          ({"repetition_penalty": 0.0}, "repetition_penalty"), ({"stop": [""]}, "stop")]:
        with pytest.raises(ValueError, match=match):
            model.generate(Tok(), "hi", **kwargs)
    with pytest.raises(TypeError, match="prompt must be"):
        model.generate(Tok(), 42)
    with pytest.raises(ValueError, match="no tokens"):
        model.generate(Tok(), "")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        session = _core.Generator(model._core, 1, 4)
        session.begin(np.zeros(1, dtype=np.int32))
        session.feed(np.array([500], dtype=np.int32), 1, None)


@pytest.mark.parametrize("quant", ["nf4", "int8"])
def test_quantized_base_equals_transformers_on_the_dequantized_weights(tmp_path, quant):
    _, tok = model_folder(tmp_path, "llama_gqa")
    ours = tinylm.Tokenizer.from_pretrained(tmp_path)
    model = tinylm.Model.from_pretrained(tmp_path, quant=quant)
    ref = load_reference(tmp_path)
    state = model.state_dict()  # quantized weights come back dequantized
    ref.load_state_dict({k: torch.from_numpy(np.array(state[k])) for k in ref.state_dict()})
    full = model.generate(ours, PROMPTS, max_new_tokens=12, return_details=True)
    expected = hf_generate(ref, tok, PROMPTS, max_new_tokens=12)
    assert [g.token_ids for g in full] == [e[:len(g.token_ids)] for g, e in zip(full, expected)]
    model.add_lora(r=4, alpha=8, target_modules="all-linear")  # an adapter on the quantized base
    for name in model.trainable_names():
        model.param(name)[...] = np.random.default_rng(3).normal(0, 0.3, model.param(name).shape)
    got = model.generate(ours, PROMPTS[0], max_new_tokens=12, return_details=True)
    logits = model.forward([tok.encode(PROMPTS[0]) + got.token_ids])[0]
    assert np.argmax(logits[got.prompt_tokens - 1:-1], axis=-1).tolist() == got.token_ids
