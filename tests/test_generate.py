"""Model.generate and token_logprobs against transformers: greedy decoding
with the KV cache equals transformers' generate and the argmax of a full
forward at every step; the logits processors equal transformers' own.
tinylm runs with tinylm.Tokenizer, transformers with its own tokenizer of
the same folder.

Greedy tokens follow floats: where two logits are within rounding of each
other (tolerance.tie_gap) either implementation may pick either, on any CPU.
The comparisons allow a divergence only at such a near-tie, and compare
nothing after it (the contexts differ from there on).

Exact comparisons (the same call twice, a seed, top_k=1 against greedy) are
one computation in one process, repeated: exact.
"""
DEQUANT = 3  # rounded operations of a dequantized weight (tests/test_quant.py)
import numpy as np
import pytest
import torch
from transformers.generation import logits_process as lp

import tinylm
from tinylm import _core
from tinylm.generate import process_logits
from eval_fixtures import model_folder, step_logits
from hf_models import CONFIGS, load_reference
from tolerance import (SOFTMAX_OPS, approx, assert_argmax_agree, assert_close, assert_greedy_agree, bound, decoder,
                       rtol)

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


def generation_length(model, batch, tokens, extra=0, lora_r=0):
    """The chain length of the logits of a generation: the decoder's forward
    over the batch's longest sequence (tolerance.decoder)."""
    return decoder(model.config, batch, tokens, lora_r=lora_r).forward + extra


def test_greedy_batch_equals_transformers_and_full_forward(folder):
    path, tok, ours = folder
    model = tinylm.Model.from_pretrained(path)
    got = model.generate(ours, PROMPTS, max_new_tokens=16, return_details=True)
    expected = hf_generate(load_reference(path), tok, PROMPTS, max_new_tokens=16)
    length = generation_length(model, len(PROMPTS), max(len(tok.encode(p)) for p in PROMPTS) + 16)
    for prompt, g, e in zip(PROMPTS, got, expected):
        logits = step_logits(model, tok.encode(prompt), g.token_ids)
        agreed = assert_greedy_agree(g.token_ids, e, logits, length=length, what=prompt)
        assert agreed < len(g.token_ids) or g.finish_reason == "eos" or g.token_ids == e
        # every step is the argmax of a forward over the whole sequence so far
        assert_argmax_agree(g.token_ids, logits, length=length, what=prompt)


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
    length = generation_length(model, len(rows), P + steps)  # the cache sums attention in other blocks
    for step in range(steps):
        for b, r in enumerate(rows):
            assert_close(logits[b], model.forward([r])[0, -1], length=length, what=f"row {b} step {step}")
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
    length = generation_length(model, len(PROMPTS), max(len(tok.encode(p)) for p in PROMPTS) + 12, extra=1)
    for prompt, g, e in zip(PROMPTS, got, expected):
        logits = step_logits(model, tok.encode(prompt), g.token_ids, penalty=1.3)
        if assert_greedy_agree(g.token_ids, e, logits, length=length, what=prompt) == len(g.token_ids):
            assert g.token_ids == e, prompt
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
    assert_greedy_agree(got.token_ids, out[0, len(ids):].tolist(), step_logits(model, ids, got.token_ids),
                        length=generation_length(model, 1, len(ids) + 10), what="chat")


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
        if temperature > 0 and top_p < 1.0:
            # Which tokens top-p drops is decided by cumulative probabilities
            # (a softmax and a running sum over V): none may lie within
            # rounding of the threshold, or either side could cut there.
            before = process_logits(logits, history, temperature, top_k, 1.0, penalty).astype(np.float64)
            ordered = np.sort(before, axis=-1)
            probs = np.exp(ordered - ordered[:, -1:])
            cumulative = np.cumsum(probs / probs.sum(-1, keepdims=True), axis=-1)
            margin = np.abs(cumulative - (1.0 - top_p)).min()
            assert margin > bound(2 * logits.shape[1] + SOFTMAX_OPS, 1.0), f"top_p={top_p}: a near-tie ({margin:.3g})"
        np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))  # the same tokens dropped
        # elementwise: a penalty and a temperature, one rounding each
        finite = ~np.isinf(expected)
        assert_close(got[finite], expected[finite], length=2, scale=np.abs(expected[finite]), what="scores")


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
    assert_argmax_agree(got.token_ids, step_logits(model, ours.encode(PROMPTS[1]), got.token_ids),
                        length=generation_length(model, 1, got.prompt_tokens + 12, lora_r=4), what="with adapter")
    with model.disable_adapter():  # exact: the base's own computation, as before the adapter
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
    chain = decoder(model.config, *ids.shape, tokens=n)
    assert -lp_.sum() / n == approx(model.loss(ids, labels, attention_mask=mask), length=chain.loss)
    with torch.no_grad():
        logits = hf(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
    ref = torch.log_softmax(logits.double(), -1)[:, :-1].gather(-1, torch.from_numpy(np.maximum(labels[:, 1:], 0))[
        ..., None])[..., 0].numpy() * (labels[:, 1:] != -100)
    # a log-probability is a logit minus a log-sum-exp over V: its terms are the logits
    assert_close(lp_[:, 1:], ref, length=chain.loss - n, scale=np.abs(ref).max() + 2 * float(logits.abs().max()),
                 what="token log-probabilities")
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
    length = generation_length(model, len(PROMPTS), max(len(tok.encode(p)) for p in PROMPTS) + 12, extra=DEQUANT)
    for prompt, g, e in zip(PROMPTS, full, expected):
        assert_greedy_agree(g.token_ids, e, step_logits(model, tok.encode(prompt), g.token_ids), length=length,
                            what=prompt)
    model.add_lora(r=4, alpha=8, target_modules="all-linear")  # an adapter on the quantized base
    for name in model.trainable_names():
        model.param(name)[...] = np.random.default_rng(3).normal(0, 0.3, model.param(name).shape)
    got = model.generate(ours, PROMPTS[0], max_new_tokens=12, return_details=True)
    assert_argmax_agree(got.token_ids, step_logits(model, tok.encode(PROMPTS[0]), got.token_ids),
                        length=generation_length(model, 1, got.prompt_tokens + 12, extra=DEQUANT, lora_r=4),
                        what="adapter on a quantized base")
