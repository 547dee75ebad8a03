"""The BPE trainer against the `tokenizers` library: the same merges from the
same text, and a tokenizer.json that `tokenizers`, transformers and
tinylm.Tokenizer all load and encode identically."""
import json
import os

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import pre_tokenizers, trainers

import tinylm
from tinylm.tokenizer_train import SPECIAL_TOKENS, bytes_to_unicode, pretokenize, save_tokenizer, train_bpe
from tokenizer_corpus import corpus, fuzz_texts

DATASETS = os.path.join(os.path.dirname(__file__), "..", "datasets")


def training_texts() -> list[str]:
    """Prose with digits, punctuation, contractions and accented letters:
    the prompts and answers of both shipped tasks, and the tokenizer
    corpus's ASCII and Latin texts."""
    texts = []
    for task in ("smart_home", "support_triage"):
        with open(os.path.join(DATASETS, task, "train.jsonl"), encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                texts.append(row["prompt"] + row["completion"])
    return texts + [t for t in corpus([]) if all(c.isascii() or c.isalpha() for c in t)]


@pytest.fixture(scope="module")
def trained():
    return train_bpe(training_texts(), vocab_size=800)


@pytest.fixture(scope="module")
def folder(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("bpe")
    save_tokenizer(path, *trained)
    return str(path)


def test_same_merges_and_vocab_as_tokenizers_bpe_trainer(trained):
    reference = HFTokenizer.from_str(json.dumps({
        "version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}}))
    trainer = trainers.BpeTrainer(vocab_size=800, min_frequency=2, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    reference.train_from_iterator(training_texts(), trainer)
    saved = json.loads(reference.to_str())["model"]
    vocab, merges = trained
    assert [tuple(m) for m in saved["merges"]] == merges
    assert saved["vocab"] == vocab
    assert len(vocab) == 800


def test_pretokenize_matches_tokenizers_on_ascii():
    reference = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    for text in training_texts()[:300] + ["it's 23 o'clock  now\n\n  x_y {\"a\": 1}", "   "]:
        assert pretokenize(text) == [piece for piece, _ in reference.pre_tokenize_str(text)], text


def test_encodes_as_tokenizers_and_transformers(folder):
    from transformers import AutoTokenizer
    ours = tinylm.Tokenizer.from_pretrained(folder)
    reference = HFTokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(folder)
    texts = corpus(list(SPECIAL_TOKENS)) + fuzz_texts(list(SPECIAL_TOKENS), 200, seed=3)
    for text in texts:
        ids = ours.encode(text)
        assert ids == reference.encode(text).ids, text
        assert ids == hf(text)["input_ids"], text
        assert ours.decode(ids) == reference.decode(ids, skip_special_tokens=False) == text


def test_special_tokens_and_chat_template(folder):
    from transformers import AutoTokenizer
    ours = tinylm.Tokenizer.from_pretrained(folder)
    hf = AutoTokenizer.from_pretrained(folder)
    assert [ours.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2]
    assert ours.eos_token_id == ours.pad_token_id == ours.bos_token_id == hf.eos_token_id == 0
    assert ours.encode("a<|im_end|>b", add_special_tokens=True) == hf("a<|im_end|>b")["input_ids"]
    chat = [{"role": "user", "content": "Turn on the lights."}, {"role": "assistant", "content": "Done."}]
    for prompt in (False, True):
        assert (ours.apply_chat_template(chat, add_generation_prompt=prompt)
                == hf.apply_chat_template(chat, add_generation_prompt=prompt, return_dict=False))
    assert ours.apply_chat_template(chat[:1], add_generation_prompt=True, tokenize=False) == (
        "<|im_start|>user\nTurn on the lights.<|im_end|>\n<|im_start|>assistant\n")


def test_every_byte_is_a_token_and_special_strings_are_not_merged(trained):
    vocab, merges = trained
    assert set(bytes_to_unicode().values()) <= set(vocab)
    assert list(vocab)[:3] == list(SPECIAL_TOKENS)
    texts = ["<|im_start|>hello<|im_end|>"] * 50
    vocab, merges = train_bpe(texts, vocab_size=300)
    assert not any("|" in a + b for a, b in merges)
    assert "hello" in vocab


def test_stops_when_no_pair_is_frequent_enough():
    vocab, merges = train_bpe(["ab ab cd"], vocab_size=1000)
    assert merges == [("a", "b")]
    assert len(vocab) == 3 + 256 + 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="smaller than the 3 special tokens plus 256"):
        train_bpe(["x"], vocab_size=200)
    with pytest.raises(ValueError, match="duplicates"):
        train_bpe(["x"], vocab_size=400, special_tokens=["<a>", "<a>"])
    with pytest.raises(ValueError, match="no characters"):
        train_bpe(["", "<|endoftext|>"], vocab_size=400)
    with pytest.raises(ValueError, match="min_frequency"):
        train_bpe(["x"], vocab_size=400, min_frequency=0)
    with pytest.raises(ValueError, match="eos_token"):
        save_tokenizer("/nonexistent", {}, [], eos_token="</s>")
