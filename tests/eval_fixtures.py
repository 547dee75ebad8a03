"""Model folders for the generation and evaluation tests: a tiny random
transformers model (tests/hf_models.py) saved with a tokenizer of the same
vocabulary size, built with the `tokenizers` library and saved as
transformers saves it (tokenizer.json, tokenizer_config.json, chat template);
and the logits and tolerances the tests of outcomes chosen by an argmax
(greedy tokens, multiple-choice answers) check their margins with.

The tokenizer is SentencePiece-style BPE (Llama-2's pipeline: "▁" for
spaces, BOS added by the post-processor) trained on a fixed corpus to exactly
hf_models.VOCAB ids, with <unk>, <s>, </s> at 0, 1, 2: the BOS and EOS ids of
transformers' Llama and Qwen2 configs.
"""
from __future__ import annotations

import string

import numpy as np
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers

from hf_models import VOCAB, build, save
from tinylm.evaluate.choice import encode_pair
from tinylm.generate import process_logits
from tolerance import SOFTMAX_OPS, decoder

CORPUS = [
    "turn on the kitchen lights", "set the temperature to 21 degrees in the bedroom",
    "Category: billing", "Ticket: my invoice is wrong\nCategory:\n", "The quick brown fox jumps over the lazy dog.",
    "Hello world! How are you today?", '{"intent": "lights_on", "room": "kitchen"}', "What is 2 + 2? It is 4.",
    "Paris is the capital of France.", "A cat sat on the mat; the dog did not.", "Answer: yes, no, maybe (42%)",
] * 3
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


def build_tokenizer() -> transformers.PreTrainedTokenizerFast:
    tk = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    alphabet = [c for c in string.printable if c not in " \t\r\x0b\x0c"] + ["▁"]
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=alphabet, show_progress=False)
    tk.train_from_iterator(CORPUS, trainer)
    assert tk.get_vocab_size() == VOCAB, "the corpus must yield exactly VOCAB ids"
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                      special_tokens=[("<s>", 1)])
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>",
                                               unk_token="<unk>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def model_folder(path, name: str = "llama_gqa", seed: int = 0):
    """Saves a random model and the tokenizer into path (a complete Hugging
    Face folder); returns (transformers model, tokenizer)."""
    model = build(name, seed=seed)
    save(model, path)
    tok = build_tokenizer()
    tok.save_pretrained(path)
    return model, tok


def step_logits(model, prompt_ids, new_ids, penalty=1.0):
    """Our full forward's scores before each new token: row i is what step i
    chose new_ids[i] from (with the repetition penalty, as generate applies it)."""
    ids = list(prompt_ids) + list(new_ids)
    logits = model.forward([ids])[0][len(prompt_ids) - 1:len(ids) - 1]
    if penalty != 1.0:
        seen = [np.array(ids[:len(prompt_ids) + i]) for i in range(len(new_ids))]
        logits = process_logits(logits, seen, 0.0, 0, 1.0, penalty)
    return logits


def ll_tolerance(model, tok, context, choices):
    """(length, scale) of the choices' log-likelihoods: the forward over the
    batch of pairs, a log-softmax over V and the sum over the continuation's
    n tokens; each term a log-probability, a logit minus a log-sum-exp."""
    pairs = [encode_pair(tok, context, " " + c) for c in choices]
    T, n = max(len(c) + len(x) for c, x in pairs), max(len(x) for _, x in pairs)
    ids = np.zeros((len(pairs), T), dtype=np.int64)
    for i, (c, x) in enumerate(pairs):
        ids[i, :len(c) + len(x)] = c + x
    largest_logit = float(np.abs(model.forward(ids)).max())
    length = decoder(model.config, len(pairs), T).forward + model.config["vocab_size"] + SOFTMAX_OPS + n
    return length, lambda lls: float(np.max(np.abs(lls))) + 2 * n * largest_logit
