"""tinylm.Tokenizer against Hugging Face `tokenizers`, the reference for every id.

Two real tokenizer files (../shared/fixtures: Mistral-7B, SentencePiece-style
BPE with byte fallback; Qwen3, byte-level BPE with NFC) and variants of them
built here for each pipeline the families use (GPT-2 / SmolLM / Llama-3
regexes, Metaspace, ignore_merges, unk fusing, added-token flags, Split
behaviours, BOS/EOS templates) encode the corpus of tests/tokenizer_corpus.py
plus random texts; ids and decoded strings must equal `tokenizers`' exactly.
"""
from __future__ import annotations

import copy
import json
import os
import random
import unicodedata
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from tokenizers import Tokenizer as HFTokenizer

import tinylm
from tinylm import FormatError, UnsupportedError
from tokenizer_corpus import corpus, fuzz_texts
from fixture_paths import tokenizer_fixture

MISTRAL_SPECIALS = ["<s>", "</s>", "<unk>"]
QWEN_SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<|object_ref_start|>"]
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def load_json(name: str) -> dict:
    with open(os.path.join(tokenizer_fixture(name), "tokenizer.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def fixture_json():
    return {"mistral-7b": load_json("mistral-7b"), "qwen3": load_json("qwen3")}


@pytest.fixture(scope="module")
def fixtures_loaded():
    """Both fixture tokenizers, loaded once: (tinylm, tokenizers)."""
    return {name: (tinylm.Tokenizer.from_pretrained(tokenizer_fixture(name)), HFTokenizer.from_file(
        os.path.join(tokenizer_fixture(name), "tokenizer.json"))) for name in ("mistral-7b", "qwen3")}


def assert_same(ours: tinylm.Tokenizer, ref: HFTokenizer, texts: list[str]) -> None:
    """Encodings (with and without special tokens) and decodings (skipping
    special tokens or not) equal the reference's, text by text."""
    for text in texts:
        for add in (True, False):
            want = ref.encode(text, add_special_tokens=add).ids
            assert ours.encode(text, add_special_tokens=add) == want, (text, add)
        for skip in (False, True):
            assert ours.decode(want, skip_special_tokens=skip) == ref.decode(want, skip_special_tokens=skip), (text, skip)


# ------------------------------------------------------------------ fixtures

@pytest.mark.parametrize("name,specials", [("mistral-7b", MISTRAL_SPECIALS), ("qwen3", QWEN_SPECIALS)])
def test_fixture_matches_tokenizers(fixtures_loaded, name, specials):
    ours, ref = fixtures_loaded[name]
    assert_same(ours, ref, corpus(specials) + fuzz_texts(specials, 1500, seed=1))


@pytest.mark.parametrize("name", ["mistral-7b", "qwen3"])
def test_fixture_round_trip(fixtures_loaded, name):
    """decode(encode(x)) == x where the normalizer leaves x alone: NFC text for
    Qwen3; for Mistral, whose Prepend("▁") the decoder's Strip undoes, text
    without added tokens splitting it into separately prefixed pieces."""
    ours, _ = fixtures_loaded[name]
    texts = [t for t in corpus([]) + fuzz_texts([], 500, seed=2) if unicodedata.normalize("NFC", t) == t]
    assert len(texts) > 300
    for text in texts:
        assert ours.decode(ours.encode(text, add_special_tokens=False)) == text


def test_fixture_vocabulary(fixtures_loaded):
    for name, (ours, ref) in fixtures_loaded.items():
        assert ours.vocab_size == ref.get_vocab_size(with_added_tokens=True) == len(ours)
        vocab = ref.get_vocab(with_added_tokens=True)
        for token, id_ in list(vocab.items())[::997] + [(t["content"], t["id"]) for t in ref_added(ref)]:
            assert ours.token_to_id(token) == id_
            assert ours.id_to_token(id_) == ref.id_to_token(id_)
        assert ours.token_to_id("no such token \u2603") is None
        assert ours.id_to_token(ours.vocab_size + 10) is None
        assert ours.id_to_token(-1) is None


def ref_added(ref: HFTokenizer) -> list[dict]:
    return [{"content": t.content, "id": i} for i, t in ref.get_added_tokens_decoder().items()]


def test_fixture_special_tokens(fixtures_loaded):
    """Named special tokens and ids as transformers reports them."""
    mistral, _ = fixtures_loaded["mistral-7b"]
    assert (mistral.bos_token, mistral.eos_token, mistral.pad_token) == ("<s>", "</s>", None)
    assert (mistral.bos_token_id, mistral.eos_token_id, mistral.unk_token_id, mistral.pad_token_id) == (1, 2, 0, None)
    qwen, _ = fixtures_loaded["qwen3"]
    assert (qwen.bos_token, qwen.eos_token, qwen.pad_token) == (None, "<|im_end|>", "<|endoftext|>")
    assert (qwen.bos_token_id, qwen.eos_token_id, qwen.pad_token_id, qwen.unk_token_id) == (None, 151645, 151643, None)
    assert mistral.encode("hi")[0] == 1 and qwen.encode("hi") == qwen.encode("hi", add_special_tokens=False)


def test_long_inputs(fixtures_loaded):
    """Long runs stress the regex (backtracking over \\s+(?!\\S)) and the BPE
    queue (a whole SentencePiece text is one word)."""
    texts = [" " * 100_000 + "x", "a" * 50_000, "\n" * 50_000 + "end", "🙂" * 20_000,
             "word " * 20_000, "\t \r\n" * 10_000, "1234567890" * 10_000, "x" + "\u0301" * 5000]
    for name, (ours, ref) in fixtures_loaded.items():
        for text in texts:
            assert ours.encode(text) == ref.encode(text).ids, (name, text[:20])


def test_decode_arbitrary_ids(fixtures_loaded):
    """Random id sequences, byte tokens included: invalid UTF-8 from byte
    fallback and from partial byte-level characters decodes as `tokenizers`
    does (U+FFFD per byte, or per maximal invalid subsequence)."""
    rng = random.Random(3)
    for name, (ours, ref) in fixtures_loaded.items():
        size = ref.get_vocab_size(with_added_tokens=True)
        low = list(range(0, 300))   # Mistral's <0xNN> tokens; Qwen's single bytes
        for _ in range(300):
            ids = [rng.choice(low) if rng.random() < 0.6 else rng.randrange(size) for _ in range(rng.randint(0, 30))]
            for skip in (False, True):
                assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), ids
        # ids no vocabulary holds are skipped, as tokenizers does
        assert ours.decode([size + 5, 1000, size * 2]) == ref.decode([size + 5, 1000, size * 2], skip_special_tokens=False)


@pytest.mark.parametrize("threads", [1, 2])
def test_encode_batch(fixtures_loaded, threads):
    texts = corpus(QWEN_SPECIALS + MISTRAL_SPECIALS) + fuzz_texts(QWEN_SPECIALS, 200, seed=4)
    before = tinylm.get_num_threads()
    tinylm.set_num_threads(threads)
    try:
        for name, (ours, ref) in fixtures_loaded.items():
            want = [e.ids for e in ref.encode_batch(texts, add_special_tokens=True)]
            assert ours.encode_batch(texts) == want
            assert ours.encode_batch(tuple(texts[:5]), add_special_tokens=False) == [
                ref.encode(t, add_special_tokens=False).ids for t in texts[:5]]
            assert ours.encode_batch([]) == []
    finally:
        tinylm.set_num_threads(before)


def test_encode_from_python_threads(fixtures_loaded):
    """encode releases the GIL; concurrent callers share the tokenizer safely."""
    ours, ref = fixtures_loaded["qwen3"]
    texts = fuzz_texts(QWEN_SPECIALS, 400, seed=5)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(ours.encode, texts))
    assert got == [ref.encode(t).ids for t in texts]


def test_bad_arguments(fixtures_loaded):
    ours, _ = fixtures_loaded["qwen3"]
    with pytest.raises(UnicodeEncodeError):
        ours.encode("lone \ud800 surrogate")
    with pytest.raises(TypeError, match=r"texts\[1\] must be str"):
        ours.encode_batch(["a", 3])
    with pytest.raises(TypeError):
        ours.decode([1, "x"])


# ------------------------------------------------------------------ variants

def added(tok: dict, content: str, **flags) -> str:
    """Appends an added token with the id tokenizers will give it."""
    ids = [a["id"] for a in tok["added_tokens"]] + list(tok["model"]["vocab"].values())
    entry = dict(id=tok["model"]["vocab"].get(content, max(ids) + 1), content=content, single_word=False,
                 lstrip=False, rstrip=False, normalized=not flags.get("special", False), special=False)
    entry.update(flags)
    tok["added_tokens"].append(entry)
    return content


def bytelevel(add_prefix_space=False, use_regex=True) -> dict:
    return dict(type="ByteLevel", add_prefix_space=add_prefix_space, trim_offsets=True, use_regex=use_regex)


def metaspace(scheme: str, split: bool) -> dict:
    return dict(type="Metaspace", replacement="\u2581", prepend_scheme=scheme, split=split)


def split(pattern: str, behavior: str, invert=False, regex=True) -> dict:
    return dict(type="Split", pattern={"Regex" if regex else "String": pattern}, behavior=behavior, invert=invert)


def sequence(*pre) -> dict:
    return {"type": "Sequence", "pretokenizers": list(pre)}


def template(tok: dict, *items) -> dict:
    """TemplateProcessing whose single template is items ('$A' or token strings)."""
    single, specials = [], {}
    ids = {a["content"]: a["id"] for a in tok["added_tokens"]}
    for it in items:
        if it == "$A":
            single.append({"Sequence": {"id": "A", "type_id": 0}})
        else:
            single.append({"SpecialToken": {"id": it, "type_id": 0}})
            specials[it] = {"id": it, "ids": [ids[it]], "tokens": [it]}
    return dict(type="TemplateProcessing", single=single, pair=single + single, special_tokens=specials)


# Added tokens with every flag: (content, flags).
FLAGGED = [
    ("<mask>", dict(lstrip=True, special=True, normalized=False)),
    ("[END]", dict(rstrip=True, normalized=False)),
    ("<both>", dict(lstrip=True, rstrip=True, special=True, normalized=False)),
    ("hello", dict(single_word=True, normalized=True)),
    ("wörld", dict(normalized=True)),
    ("day", dict(normalized=True, lstrip=True)),
    ("ab cd", dict(normalized=False)),
    ("end", dict(single_word=True, normalized=False, rstrip=True)),
]


def build_variants(q: dict, m: dict) -> dict:
    """name -> (tokenizer.json dict, token strings to put in texts, round-trips)."""
    qs, ms = QWEN_SPECIALS[:4], MISTRAL_SPECIALS
    out = {}

    t = copy.deepcopy(q)
    t.update(normalizer=None, pre_tokenizer=bytelevel(), decoder=bytelevel(), post_processor=bytelevel())
    t["model"]["merges"] = [" ".join(p) for p in t["model"]["merges"]]   # GPT-2's "a b" spelling
    out["gpt2"] = (t, qs, True)

    t = copy.deepcopy(out["gpt2"][0])
    t["pre_tokenizer"] = bytelevel(add_prefix_space=True)
    out["gpt2_add_prefix_space"] = (t, qs, False)

    t = copy.deepcopy(q)   # SmolLM: single digits, then GPT-2's split
    t.update(normalizer=None, decoder=bytelevel(),
             pre_tokenizer=sequence({"type": "Digits", "individual_digits": True}, bytelevel()))
    out["smollm"] = (t, qs, True)

    t = copy.deepcopy(q)   # Llama-3: its regex (digits in threes), ignore_merges, BOS by template
    t["normalizer"] = None
    t["model"]["ignore_merges"] = True
    bos = added(t, "<|begin_of_text|>", special=True, normalized=False)
    eot = added(t, "<|eot_id|>", special=True, normalized=False)
    t["pre_tokenizer"] = sequence(split(LLAMA3_PATTERN, "Isolated"), bytelevel(use_regex=False))
    t["post_processor"] = {"type": "Sequence", "processors": [bytelevel(), template(t, bos, "$A")]}
    out["llama3"] = (t, qs + [bos, eot], True)

    t = copy.deepcopy(q)   # added-token flags under NFC (normalized tokens match composed text)
    extra = [added(t, c, **f) for c, f in FLAGGED] + [added(t, "xĠy", normalized=False)]   # "Ġ" decodes to " "
    out["qwen_added_flags"] = (t, qs + extra, False)

    t = copy.deepcopy(q)
    t["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFKC"}, {"type": "Replace", "pattern": {"Regex": r"\s{2,}"}, "content": " "}]}
    out["nfkc_regex_replace"] = (t, qs, False)

    t = copy.deepcopy(q)   # escapes whose Oniguruma meaning differs from PCRE2's
    t["pre_tokenizer"] = sequence(split(r"\h{2,}|[\w']+|\s+(?!\S)|\s+|[^\w\s']+", "Isolated"), bytelevel(use_regex=False))
    out["oniguruma_classes"] = (t, qs, False)

    for scheme, sp in (("first", False), ("always", True), ("never", False), ("first", True)):
        t = copy.deepcopy(m)
        t.update(normalizer=None, pre_tokenizer=metaspace(scheme, sp),
                 decoder={"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": sp})
        out[f"metaspace_{scheme}_{'split' if sp else 'nosplit'}"] = (t, ms, False)

    t = copy.deepcopy(m)   # Llama-2 converted with legacy=False: Metaspace, BOS and EOS by template
    t.update(normalizer=None, pre_tokenizer=metaspace("first", False), post_processor=template(m, "<s>", "$A", "</s>"))
    out["metaspace_bos_eos_added_flags"] = (t, ms + [added(t, c, **f) for c, f in FLAGGED], False)

    t = copy.deepcopy(m)   # legacy Prepend/Replace: normalized tokens match their "▁"-prefixed form
    out["legacy_added_flags"] = (t, ms + [added(t, c, **f) for c, f in FLAGGED], False)

    for fuse in (True, False):
        t = copy.deepcopy(m)
        t["model"].update(byte_fallback=False, fuse_unk=fuse)
        out[f"unk_fuse_{fuse}"] = (t, ms, False)

    t = copy.deepcopy(m)
    t["decoder"] = None
    out["no_decoder"] = (t, ms, False)

    for behavior in ("Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"):
        for invert in (False, True):
            t = copy.deepcopy(m)
            t.update(normalizer=None, pre_tokenizer=sequence(
                split(r"\s+|\d|[.,!?]", behavior, invert), split("-", behavior, regex=False), metaspace("always", True)))
            out[f"split_{behavior}_{'inverted' if invert else 'plain'}"] = (t, ms, False)

    # Metaspace's "first" follows original offsets through the normalizer:
    # text a Prepend or Replace puts before the first character counts as first.
    t = copy.deepcopy(m)
    t.update(normalizer={"type": "Sequence", "normalizers": [
        {"type": "Replace", "pattern": {"Regex": r"\s{3,}"}, "content": "QR"}, {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        pre_tokenizer=sequence(split(r"\p{N}{1,3}|\w+|\W", "Isolated"), metaspace("first", True)))
    out["replace_prepend_split_metaspace_first"] = (t, ms, False)
    for form in ("NFD", "NFKC"):
        t = copy.deepcopy(m)
        t.update(normalizer={"type": form},
                 pre_tokenizer=sequence(split(r"\s+|[.,!?]", "Isolated"), metaspace("first", False)))
        out[f"{form.lower()}_metaspace_first"] = (t, ms, False)

    t = copy.deepcopy(m)
    t.update(normalizer={"type": "NFD"},
             pre_tokenizer=sequence({"type": "Digits", "individual_digits": False}, metaspace("always", False)))
    out["nfd_digits"] = (t, ms, False)
    return out


VARIANT_NAMES = [
    "gpt2", "gpt2_add_prefix_space", "smollm", "llama3", "qwen_added_flags", "nfkc_regex_replace", "oniguruma_classes",
    "metaspace_first_nosplit", "metaspace_always_split", "metaspace_never_nosplit", "metaspace_first_split",
    "metaspace_bos_eos_added_flags", "legacy_added_flags", "unk_fuse_True", "unk_fuse_False", "no_decoder",
] + [f"split_{b}_{i}" for b in ("Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous")
     for i in ("plain", "inverted")] + [
    "replace_prepend_split_metaspace_first", "nfd_metaspace_first", "nfkc_metaspace_first", "nfd_digits"]


@pytest.fixture(scope="module")
def variants(fixture_json, tmp_path_factory):
    """Each variant written to its own folder: name -> (folder, specials, round-trips)."""
    out = {}
    for name, (tok, specials, round_trips) in build_variants(fixture_json["qwen3"], fixture_json["mistral-7b"]).items():
        path = tmp_path_factory.mktemp(name)
        with open(path / "tokenizer.json", "w", encoding="utf-8") as f:
            json.dump(tok, f, ensure_ascii=False)
        out[name] = (str(path), specials, round_trips)
    assert sorted(out) == sorted(VARIANT_NAMES)
    return out


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_variant_matches_tokenizers(variants, name):
    path, specials, round_trips = variants[name]
    ours = tinylm.Tokenizer.from_pretrained(path)
    ref = HFTokenizer.from_file(os.path.join(path, "tokenizer.json"))
    for token in specials:   # the file's ids are the ones tokenizers assigns
        assert ours.token_to_id(token) == ref.token_to_id(token) is not None
    assert ours.vocab_size == ref.get_vocab_size(with_added_tokens=True)
    texts = corpus(specials) + fuzz_texts(specials, 150, seed=zlib.crc32(name.encode()))
    assert_same(ours, ref, texts)
    if round_trips:
        for text in corpus([]):
            assert ours.decode(ours.encode(text, add_special_tokens=False)) == text


# ------------------------------------------------------- tokenizer_config.json

def write_dir(path, tok: dict, config: dict | None) -> str:
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    if config is not None:
        with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f)
    return str(path)


@pytest.mark.parametrize("add_bos,add_eos", [(True, False), (True, True), (False, True), (False, False)])
def test_config_add_bos_eos(fixture_json, tmp_path, add_bos, add_eos):
    """add_bos_token / add_eos_token rewrite the post-processor as
    transformers' update_post_processor does (set on its TokenizersBackend)."""
    from transformers import AutoTokenizer

    config = {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": add_bos, "add_eos_token": add_eos}
    path = write_dir(tmp_path, fixture_json["mistral-7b"], config)
    ours = tinylm.Tokenizer.from_pretrained(path)
    ref = AutoTokenizer.from_pretrained(path)
    ref.add_bos_token, ref.add_eos_token = add_bos, add_eos
    for text in corpus(MISTRAL_SPECIALS)[:80]:
        assert ours.encode(text) == ref.encode(text), text
        assert ours.encode(text, add_special_tokens=False) == ref.encode(text, add_special_tokens=False)


def test_config_flag_left_out_keeps_template(fixture_json, tmp_path):
    """A flag the config leaves out keeps what tokenizer.json's template did."""
    base = fixture_json["mistral-7b"]   # template "<s> $A"
    ours = tinylm.Tokenizer.from_pretrained(write_dir(tmp_path / "eos", base, {"bos_token": "<s>", "eos_token": "</s>",
                                                                             "add_eos_token": True}))
    plain = tinylm.Tokenizer.from_pretrained(tokenizer_fixture("mistral-7b")).encode("Hi there", add_special_tokens=False)
    assert ours.encode("Hi there") == [1] + plain + [2]
    no_bos = tinylm.Tokenizer.from_pretrained(write_dir(tmp_path / "nobos", base, {"bos_token": "<s>",
                                                                                 "add_bos_token": False}))
    assert no_bos.encode("Hi there") == plain


def test_config_special_tokens(fixture_json, tmp_path):
    config = {"bos_token": {"content": "<s>", "lstrip": False, "__type": "AddedToken"}, "eos_token": "</s>",
              "pad_token": "</s>", "unk_token": None}
    ours = tinylm.Tokenizer.from_pretrained(write_dir(tmp_path, fixture_json["mistral-7b"], config))
    assert ours.special_tokens_map == {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>"}
    assert (ours.pad_token_id, ours.unk_token_id) == (2, None)
    # without a config, the model's unk_token stands
    bare = tinylm.Tokenizer.from_pretrained(write_dir(tmp_path / "bare", fixture_json["mistral-7b"], None))
    assert bare.special_tokens_map == {"unk_token": "<unk>"} and bare.bos_token_id is None


# -------------------------------------------------------------------- errors

def broken(fixture_json, **changes) -> dict:
    tok = copy.deepcopy(fixture_json["mistral-7b"])
    for key, value in changes.items():
        if key == "model":
            tok["model"].update(value)
        else:
            tok[key] = value
    return tok


@pytest.mark.parametrize("changes,name", [
    (dict(model={"type": "WordPiece"}), "WordPiece"),
    (dict(model={"type": "Unigram"}), "Unigram"),
    (dict(normalizer={"type": "Lowercase"}), "Lowercase"),
    (dict(normalizer={"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "BertNormalizer"}]}), "BertNormalizer"),
    (dict(pre_tokenizer={"type": "Whitespace"}), "Whitespace"),
    (dict(decoder={"type": "WordPiece", "prefix": "##", "cleanup": True}), "WordPiece"),
    (dict(post_processor={"type": "BertProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1]}), "BertProcessing"),
    (dict(model={"dropout": 0.1}), "dropout"),
    (dict(model={"continuing_subword_prefix": "##"}), "continuing_subword_prefix"),
])
def test_unsupported_components_are_named(fixture_json, tmp_path, changes, name):
    path = write_dir(tmp_path, broken(fixture_json, **changes), None)
    with pytest.raises(UnsupportedError, match=name) as err:
        tinylm.Tokenizer.from_pretrained(path)
    assert os.path.join(path, "tokenizer.json") in str(err.value)


def test_malformed_files(fixture_json, tmp_path):
    path = tmp_path / "bad_json"
    path.mkdir()
    (path / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [}')
    with pytest.raises(FormatError, match="tokenizer.json: malformed JSON"):
        tinylm.Tokenizer.from_pretrained(str(path))

    tok = broken(fixture_json, model={"merges": ["\u2581 t", "\u2581t zzz_not_a_token"]})
    with pytest.raises(FormatError, match="merge 2 uses 'zzz_not_a_token'"):
        tinylm.Tokenizer.from_pretrained(write_dir(tmp_path / "merge", tok, None))

    tok = broken(fixture_json, model={"merges": ["a b c"]})
    with pytest.raises(FormatError, match="merge 1"):
        tinylm.Tokenizer.from_pretrained(write_dir(tmp_path / "merge3", tok, None))

    tok = broken(fixture_json, pre_tokenizer=split("(unclosed", "Isolated"))
    with pytest.raises(FormatError, match="bad regex"):
        tinylm.Tokenizer.from_pretrained(write_dir(tmp_path / "regex", tok, None))

    path = write_dir(tmp_path / "config", fixture_json["mistral-7b"], None)
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(FormatError, match="tokenizer_config.json"):
        tinylm.Tokenizer.from_pretrained(path)


def test_missing_files(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(OSError, match=str(missing / "tokenizer.json")):
        tinylm.Tokenizer.from_pretrained(missing)
