"""Log-likelihood scoring: multiple choice against lm-evaluation-harness'
conventions (tests/reference/lm_eval_choice.py on transformers), corpus
perplexity against model.loss and transformers on the same windows.

The chosen answer is an argmax of log-likelihoods: each case asserts that its
choices are further apart than rounding can move them (tolerance.tie_gap),
so the comparison of choices holds on every CPU."""
import math
import re

import numpy as np
import pytest
import torch

import tinylm
from eval_fixtures import ll_tolerance, model_folder
from hf_models import load_reference
from tolerance import EXP, approx, assert_clear_argmax, assert_close, decoder
from reference import lm_eval_choice
from tinylm.evaluate.choice import encode_pair, score_choice
from tinylm.evaluate.golden import parse_case
from tinylm.evaluate.metrics import corpus_metrics, load_corpus, windows

TEXT = ("The quick brown fox jumps over the lazy dog. Paris is the capital of France.\n\n"
        "Hello world! How are you today? A cat sat on the mat; the dog did not.\n") * 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    path = tmp_path_factory.mktemp("m")
    _, hf_tok = model_folder(path, "qwen2_bias")
    return tinylm.Model.from_pretrained(path), tinylm.Tokenizer.from_pretrained(path), load_reference(path), hf_tok


CHOICE_CASES = [
    ("Paris is the capital of", ["France", "the lazy dog", "Hello"], 0),
    ("Answer: ", ["yes", "no", "maybe (42%)"], 2),                  # trailing space moves to the continuation
    ("", ["kitchen", "bedroom lights"], 1),                          # empty context: the BOS stands in
    ("Category:\n", ["billing", "shipping", "technical account"], 1),
    ("What is 2 + 2? It is", ["4.", "four", "a cat sat on the mat"], 0),
]


def test_choice_scores_follow_lm_eval(setup):
    model, tok, ref, hf_tok = setup
    differ = 0
    for context, choices, gold in CHOICE_CASES:
        case = parse_case({"id": "c", "prompt": context, "check": "choice", "choices": choices, "expected": gold},
                          "g.jsonl:1")
        got = score_choice(model, tok, case)
        expected = lm_eval_choice.multiple_choice(ref, hf_tok, context, choices, gold)
        length, scale = ll_tolerance(model, tok, context, choices)
        lls = np.array(expected["lls"])
        assert_close(got["loglikelihoods"], lls, length=length, scale=scale(lls), what=context)
        # no near-tie between the first two, raw or per character, or either could win
        chars = np.array([len(c) for c in choices], dtype=np.float64)
        assert_clear_argmax(lls, length=length, scale=scale(lls), what=f"{context!r} acc")
        assert_clear_argmax(lls / chars, length=length, scale=scale(lls) / chars.min(), what=f"{context!r} acc_norm")
        for key in ("pred", "pred_norm", "acc", "acc_norm"):
            assert got[key] == expected[key], (context, key)
        assert got["passed"] == bool(got["acc"])
        differ += got["pred"] != got["pred_norm"]
    assert differ, "some case must tell acc from acc_norm for the test to check the normalisation"


def test_choice_with_metric_acc_norm_and_chat(setup):
    model, tok, ref, hf_tok = setup
    for context, choices, _ in CHOICE_CASES:
        record = {"prompt": context, "check": "choice", "choices": choices}
        first = score_choice(model, tok, parse_case({**record, "expected": 0}, "g:1"))
        if first["pred"] != first["pred_norm"]:
            break
    by_norm = score_choice(model, tok, parse_case({**record, "expected": first["pred_norm"], "metric": "acc_norm"},
                                                  "g:1"))
    assert by_norm["passed"] and not by_norm["acc"] and by_norm["output"] == choices[first["pred_norm"]]
    # A chat is scored after its template rendering with the generation prompt.
    messages = [{"role": "user", "content": "Is Paris in France?"}]
    chat = parse_case({"messages": messages, "check": "choice", "choices": ["yes", "no"], "expected": 0}, "g:1")
    rendered = hf_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    expected = lm_eval_choice.multiple_choice(ref, hf_tok, rendered, ["yes", "no"], 0)
    length, scale = ll_tolerance(model, tok, rendered, ["yes", "no"])
    assert_close(score_choice(model, tok, chat)["loglikelihoods"], expected["lls"], length=length,
                 scale=scale(expected["lls"]), what="chat")


def test_encode_pair_moves_trailing_space(setup):
    _, tok, _, hf_tok = setup
    for context in ("Answer: ", "Answer:", "Category:\n  "):
        assert encode_pair(tok, context, " yes") == lm_eval_choice.encode_pair(hf_tok, context, " yes")


def test_windows_score_every_token_once():
    for n, window, stride in [(10, 4, 3), (10, 4, 1), (7, 8, 7), (1, 2, 1), (20, 6, 2)]:
        spans = windows(n, window, stride)
        scored = [t for _, first, end in spans for t in range(first, end)]
        assert scored == list(range(1, n + 1))
        assert all(end - start <= window and start < first for start, first, end in spans)
    with pytest.raises(ValueError, match="stride"):
        windows(10, 4, 4)


@pytest.mark.parametrize("window, stride", [(32, None), (32, 8)])
def test_perplexity_equals_loss_and_transformers_on_the_same_windows(setup, tmp_path, window, stride):
    model, tok, ref, hf_tok = setup
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    corpus = load_corpus(model, tok, path, window, stride)
    got = corpus_metrics(model, corpus, batch_size=3)
    seq = [hf_tok.bos_token_id] + hf_tok.encode(TEXT, add_special_tokens=False)
    assert corpus.seq == seq
    nll_loss = nll_hf = 0.0
    for start, first, end in corpus.spans:
        ids = np.array([seq[start:end]])
        labels = ids.copy()
        labels[0, :first - start] = -100
        n = end - first
        nll_loss += model.loss(ids, labels) * n
        with torch.no_grad():
            nll_hf += ref(input_ids=torch.from_numpy(ids), labels=torch.from_numpy(labels)).loss.item() * n
    n_tokens = len(seq) - 1
    assert got["tokens"] == n_tokens and got["bytes"] == len(TEXT.encode())
    assert got["words"] == len(re.split(r"\s+", TEXT))
    # Each window's loss (batches of 3 windows), their sum, then one exp: a
    # perplexity exp(m) moves by exp(m) times the error of m, so its scale
    # is ppl * |log ppl|.
    length = decoder(model.config, 3, window).loss + len(corpus.spans) + EXP

    def close(value):
        return approx(value, length=length, scale=value * abs(math.log(value)), what="perplexity")
    assert got["perplexity"] == close(math.exp(nll_loss / n_tokens))
    assert got["perplexity"] == close(math.exp(nll_hf / n_tokens))
    assert got["bits_per_byte"] == approx(nll_hf / got["bytes"] / math.log(2), length=length, what="bits per byte")
    assert got["word_perplexity"] == close(math.exp(nll_hf / got["words"]))
    assert got["byte_perplexity"] == close(math.exp(nll_hf / got["bytes"]))
