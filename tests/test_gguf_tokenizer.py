"""tinylm.gguf.tokenizer: GGUF tokenizer metadata <-> tinylm.Tokenizer.

Each tokenizer (the Qwen3 and Mistral-7B fixtures, tinylm's demo model, and
byte-level BPEs trained here with `tokenizers` for the GPT-2 and Llama-3
pipelines) goes through tokenizer_metadata, a vocab-only GGUF written with
gguf.GGUFWriter and read with tinylm.gguf.file, and tokenizer_from_metadata.
What comes back must encode the corpus of tests/tokenizer_corpus.py (plus
random texts) as
  (a) `tokenizers` on the original tokenizer.json,
  (b) transformers' GGUF tokenizer (AutoTokenizer.from_pretrained(dir, gguf_file=...)),
  (c) llama.cpp (libllama's llama_tokenize on the same file),
except where a reference is known to differ, which each test names. The
metadata must be what convert_hf_to_gguf.py writes for the same files, key
by key, and a real SentencePiece model converted by it must encode as
llama.cpp and sentencepiece do.
"""
from __future__ import annotations

import copy
import io
import json
import os
import re
import shutil
import sys
import unicodedata

import gguf
import numpy as np
import pytest
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as HFTokenizer

import llamacpp_ref
import tinylm
from fixture_paths import tokenizer_fixture
from tinylm import FormatError, UnsupportedError, _core
from tinylm.gguf import pretokenizers
from tinylm.gguf import tokenizer as gt
from tinylm.gguf.file import GGUFFile
from tokenizer_corpus import corpus, fuzz_texts

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(HERE, "..", "tinylm", "models", "demo")
TRAIN_FILE = os.path.join(HERE, "..", "datasets", "support_triage", "train.jsonl")

# name -> (special tokens put in texts, architecture the converter is run as)
CASES = {
    "demo": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "LlamaForCausalLM"),
    "qwen3": (["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>"], "Qwen3ForCausalLM"),
    "mistral-7b": (["<s>", "</s>", "<unk>"], "MistralForCausalLM"),
    "gpt2": (["<|endoftext|>", "<think>"], "LlamaForCausalLM"),
    "llama3": (["<|begin_of_text|>", "<|eot_id|>", "<|endoftext|>", "<think>"], "LlamaForCausalLM"),
}
SPECIAL_EOS = gt.SPECIAL_IDS["eos_token"]
EXPECTED_PRE = {"demo": "smollm", "qwen3": "qwen2", "gpt2": "gpt-2", "llama3": "llama-bpe"}


# ------------------------------------------------------------------ GGUF files

def write_gguf(path: str, meta: dict, arch: str = "llama") -> None:
    """A vocab-only GGUF of `meta` (values typed as tokenizer_metadata types them)."""
    w = gguf.GGUFWriter(path, arch=arch)
    for key, v in meta.items():
        if isinstance(v, str):
            w.add_string(key, v)
        elif isinstance(v, (bool, np.bool_)):
            w.add_bool(key, bool(v))
        elif isinstance(v, np.uint32):
            w.add_uint32(key, int(v))
        elif isinstance(v, np.ndarray):
            w.add_array(key, v.tolist())   # int32 -> INT32, float32 -> FLOAT32
        elif isinstance(v, list):
            w.add_array(key, v)
        else:
            raise TypeError(f"{key}: {type(v).__name__}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read_gguf(path: str) -> dict:
    """Every metadata key, as tinylm's GGUF reader gives them (numeric arrays
    as numpy arrays)."""
    with GGUFFile(path) as f:
        return dict(f.metadata)


def same(a, b) -> bool:
    """Metadata values equal, arrays (lists or numpy) element by element."""
    if isinstance(a, (list, np.ndarray)) or isinstance(b, (list, np.ndarray)):
        return np.asarray(a).tolist() == np.asarray(b).tolist()
    return a == b


def test_reads_the_gguf_packages_values(written):
    """Metadata as gguf.GGUFReader decodes it (numeric arrays as lists of
    Python numbers) reads into the same tokenizer."""
    _, _, path, back = written["demo"]
    meta = {k: f.contents() for k, f in gguf.GGUFReader(path).fields.items() if not k.startswith("GGUF.")}
    tok = gt.tokenizer_from_metadata(meta, path)
    for text in texts_of("demo", n_fuzz=50):
        assert tok.encode(text) == back.encode(text), text


# ------------------------------------------------------------------ tokenizers trained here

def _training_texts() -> list[str]:
    texts = corpus([])
    with open(TRAIN_FILE, encoding="utf-8") as f:
        for line in f:
            texts += [v for v in json.loads(line).values() if isinstance(v, str)]
    return texts


def _train(pre_tokenizer, ignore_merges: bool, specials: list[str], bos: str | None) -> dict:
    """A byte-level BPE trained with `tokenizers` under pre_tokenizer, with
    `specials` as special tokens, "<think>" as a plain added token, and
    `bos` put before every text by a template."""
    tok = HFTokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_training_texts(), trainers.BpeTrainer(
        vocab_size=3000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok.add_tokens([AddedToken("<think>", special=False, normalized=False)])
    if bos:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])
    return json.loads(tok.to_str())


def _write_folder(path: str, tokenizer_json: dict, tokenizer_config: dict) -> None:
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_json, f, ensure_ascii=False)
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config, f)


def _model_config(arch: str, vocab_size: int) -> dict:
    """The config.json convert_hf_to_gguf.py needs to run (--vocab-only reads the hyperparameters too)."""
    return {"architectures": [arch], "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
            "num_key_value_heads": 2, "num_hidden_layers": 1, "head_dim": 32, "rms_norm_eps": 1e-5,
            "max_position_embeddings": 128, "rope_theta": 10000.0, "vocab_size": vocab_size}


class Cases(dict):
    """name -> value; asking for a tokenizer whose fixture is missing skips the test."""

    def __init__(self, missing: dict[str, str]):
        super().__init__()
        self.missing = missing

    def __missing__(self, name):
        pytest.skip(self.missing[name])


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Cases:
    """name -> a folder with tokenizer.json, tokenizer_config.json and a config.json."""
    root = tmp_path_factory.mktemp("tokenizers")
    out = Cases({})
    for name in ("qwen3", "mistral-7b"):
        try:
            shutil.copytree(tokenizer_fixture(name), root / name)
        except pytest.skip.Exception as skipped:
            out.missing[name] = str(skipped)
    shutil.copytree(DEMO, root / "demo", ignore=shutil.ignore_patterns("*.safetensors"))
    gpt2 = _train(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), False, ["<|endoftext|>"], None)
    _write_folder(root / "gpt2", gpt2, {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"})
    llama3 = _train(pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pretokenizers.LLAMA3), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]), True,
        ["<|begin_of_text|>", "<|eot_id|>", "<|endoftext|>"], "<|begin_of_text|>")
    _write_folder(root / "llama3", llama3, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                                            "chat_template": [{"name": "default", "template": "{{ messages }}"},
                                                              {"name": "tool_use", "template": "{{ tools }}"}]})
    for name, (_, arch) in CASES.items():
        if name in out.missing:
            continue
        path = root / name
        if name != "demo":   # the demo's own config.json stays, its token ids included
            with open(path / "tokenizer.json", encoding="utf-8") as f:
                tj = json.load(f)
            n = max(list(tj["model"]["vocab"].values()) + [a["id"] for a in tj["added_tokens"]]) + 1
            with open(path / "config.json", "w") as f:
                json.dump(_model_config(arch, n), f)
        out[name] = str(path)
    return out


def _model_config_of(folder: str) -> dict:
    with open(os.path.join(folder, "config.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def written(folders, tmp_path_factory) -> dict:
    """name -> (original tinylm.Tokenizer, metadata, GGUF path, tokenizer read back from the file)."""
    root = tmp_path_factory.mktemp("gguf")
    out = Cases(folders.missing)
    for name, folder in folders.items():
        original = tinylm.Tokenizer.from_pretrained(folder)
        meta = gt.tokenizer_metadata(original, config=_model_config_of(folder))
        path = str(root / name / f"{name}.gguf")
        os.makedirs(os.path.dirname(path))
        write_gguf(path, meta)
        out[name] = (original, meta, path, gt.tokenizer_from_metadata(read_gguf(path), path))
    return out


def texts_of(name: str, n_fuzz: int = 300) -> list[str]:
    specials = CASES[name][0]
    return corpus(specials) + fuzz_texts(specials, n_fuzz, seed=len(name))


def _is_nfc(text: str) -> bool:
    return unicodedata.normalize("NFC", text) == text


# ------------------------------------------------------------------ (a) tokenizers on tokenizer.json

@pytest.mark.parametrize("name", list(CASES))
def test_read_back_matches_tokenizers(folders, written, name):
    """The GGUF's tokenizer encodes as `tokenizers` on the original file. A
    GGUF has no normalizer (llama.cpp's byte-level BPE does not normalize),
    so for Qwen3's NFC only text already in NFC is compared."""
    original, meta, path, back = written[name]
    ref = HFTokenizer.from_file(os.path.join(folders[name], "tokenizer.json"))
    nfc = name == "qwen3"
    texts = [t for t in texts_of(name) if not nfc or _is_nfc(t)]
    assert len(texts) > 400
    for text in texts:
        for add in (True, False):
            want = ref.encode(text, add_special_tokens=add).ids
            assert back.encode(text, add_special_tokens=add) == want, (text, add)
        for skip in (False, True):
            assert back.decode(want, skip_special_tokens=skip) == ref.decode(want, skip_special_tokens=skip), text
    assert back.vocab_size == original.vocab_size
    assert back.special_tokens_map == original.special_tokens_map
    for attr in ("bos_token_id", "eos_token_id", "unk_token_id", "pad_token_id"):
        assert getattr(back, attr) == getattr(original, attr), attr
    assert back.chat_template == original.chat_template


@pytest.mark.parametrize("name", list(CASES))
def test_read_back_round_trips(written, name):
    """decode(encode(x)) == x: every text for byte-level BPE; for the
    SentencePiece-style vocabulary, text no special token cuts into
    separately prefixed pieces."""
    _, meta, _, back = written[name]
    spm = meta[gt.MODEL] == "llama"
    texts = [t for t in texts_of(name) if not (spm and any(s in t for s in CASES[name][0]))]
    for text in texts:
        assert back.decode(back.encode(text, add_special_tokens=False)) == text


def test_metadata_names(written):
    """The model and pre-tokenizer each tokenizer.json's structure calls for."""
    for name in CASES:
        meta = written[name][1]
        assert meta[gt.MODEL] == ("llama" if name == "mistral-7b" else "gpt2"), name
        assert meta[gt.PRE] == EXPECTED_PRE.get(name, "default"), name
    llama3 = written["llama3"][1]
    assert llama3[gt.ADD_BOS] is True and llama3[gt.CHAT_TEMPLATE] == "{{ messages }}"
    assert llama3["tokenizer.chat_templates"] == ["tool_use"]
    assert llama3["tokenizer.chat_template.tool_use"] == "{{ tools }}"
    assert written["llama3"][3].chat_template == {"default": "{{ messages }}", "tool_use": "{{ tools }}"}
    mistral = written["mistral-7b"][1]
    assert mistral[gt.ADD_SPACE_PREFIX] is True and mistral[gt.ADD_BOS] is True and mistral[gt.ADD_EOS] is False
    types = dict(zip(mistral[gt.TOKENS], mistral[gt.TOKEN_TYPE].tolist()))
    assert ((types["<unk>"], types["<s>"], types["<0x0A>"], types["▁the"])
            == (gt.CONTROL, gt.CONTROL, gt.BYTE, gt.NORMAL))
    qwen = dict(zip(written["qwen3"][1][gt.TOKENS], written["qwen3"][1][gt.TOKEN_TYPE].tolist()))
    assert (qwen["<|im_end|>"], qwen["<think>"], qwen["Ġthe"]) == (gt.CONTROL, gt.USER_DEFINED, gt.NORMAL)


def test_gguf_tokenizer_gives_its_metadata_back(written):
    """A tokenizer read from GGUF writes the keys it was read from."""
    _, meta, path, back = written["demo"]
    again = gt.tokenizer_metadata(back)
    on_file = {k: v for k, v in read_gguf(path).items() if k.startswith("tokenizer.")}
    assert again.keys() == on_file.keys()
    for k in again:
        assert same(again[k], on_file[k]), k


def test_model_save_gguf_writes_the_tokenizer(written, tmp_path):
    """Model.save_gguf puts tokenizer_metadata's keys, as typed, into the
    file through tinylm's own GGUF writer, and they read back into the
    same tokenizer."""
    path = str(tmp_path / "demo.gguf")
    tinylm.Model.from_pretrained(DEMO).save_gguf(path, "F32")
    meta = read_gguf(path)
    ours = written["demo"][1]
    assert {k for k in meta if k.startswith("tokenizer.")} == set(ours)
    for k, v in ours.items():
        assert same(meta[k], v), k
    with GGUFFile(path) as f:
        assert f.types[gt.TOKEN_TYPE] == (gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32)
        assert f.types[SPECIAL_EOS] == (gguf.GGUFValueType.UINT32, gguf.GGUFValueType.UINT32)
    tok = gt.tokenizer_from_metadata(meta, path)
    for text in texts_of("demo", n_fuzz=50):
        assert tok.encode(text) == written["demo"][3].encode(text), text


def test_metadata_from_dicts_equals_from_folder(folders, written):
    name = "llama3"
    with open(os.path.join(folders[name], "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    with open(os.path.join(folders[name], "tokenizer_config.json"), encoding="utf-8") as f:
        tc = json.load(f)
    meta = gt.tokenizer_metadata((tj, tc), "llama3/tokenizer.json", config=_model_config_of(folders[name]))
    ref = written[name][1]
    assert meta.keys() == ref.keys()
    for k in meta:
        assert same(meta[k], ref[k]), k
    padded = gt.tokenizer_metadata((tj, tc), "llama3", vocab_size=len(ref[gt.TOKENS]) + 3)
    assert padded[gt.TOKENS][-3:] == [f"[PAD{len(ref[gt.TOKENS]) + k}]" for k in range(3)]
    assert padded[gt.TOKEN_TYPE][-3:].tolist() == [gt.UNUSED] * 3
    with pytest.raises(FormatError, match="vocab_size"):
        gt.tokenizer_metadata((tj, tc), "llama3", vocab_size=10)
    # template names as gguf.GGUFWriter.add_chat_template writes them
    named = gt.tokenizer_metadata((tj, dict(tc, chat_template=[{"name": "tool use", "template": "t"}])), "llama3")
    assert named["tokenizer.chat_templates"] == ["tool_use"] and named["tokenizer.chat_template.tool_use"] == "t"
    assert gt.CHAT_TEMPLATE not in named


# ------------------------------------------------------------------ (b) transformers' GGUF tokenizer

def _transformers_comparable(name: str, meta: dict, text: str) -> bool:
    """Texts on which transformers' GGUF tokenizer is meant to agree.
    - "llama" (SentencePiece): its LlamaTokenizer prepends "▁" to the first
      piece only (Metaspace prepend_scheme "first") and not before a leading
      space; llama.cpp and the original tokenizer.json prepend it to every
      piece. So: no special tokens, no leading space.
    - "smollm": it has no digit split for that name (only some names get a
      Split regex): so no numerals."""
    if meta[gt.MODEL] == "llama":
        return not text.startswith(" ") and not any(s in text for s in CASES[name][0])
    if meta[gt.PRE] == "smollm":
        return not any(unicodedata.category(c)[0] == "N" for c in text)
    return True


@pytest.mark.parametrize("name", list(CASES))
def test_read_back_matches_transformers_gguf(written, name):
    from transformers import AutoTokenizer
    _, meta, path, back = written[name]
    hf = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    texts = [t for t in texts_of(name) if _transformers_comparable(name, meta, t)]
    assert len(texts) > 250
    for text in texts:
        for add in (True, False):
            assert back.encode(text, add_special_tokens=add) == hf.encode(text, add_special_tokens=add), (text, add)
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        assert getattr(back, attr) == getattr(hf, attr), attr


# ------------------------------------------------------------------ (c) llama.cpp

def _llamacpp():
    reason = llamacpp_ref.skip_reason()
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("name", list(CASES))
def test_llamacpp_encodes_as_tinylm(written, name):
    """llama.cpp's tokenizer on the vocab-only GGUF tinylm wrote gives the
    ids tinylm's tokenizer of that file gives, on every text (BOS/EOS as the
    file's add_bos/add_eos say)."""
    _llamacpp()
    _, _, path, back = written[name]
    texts = texts_of(name)
    for add in (False, True):
        want = llamacpp_ref.tokenize_many(path, texts, add_special=add)
        for text, ids in zip(texts, want):
            assert back.encode(text, add_special_tokens=add) == ids, (text, add)


@pytest.fixture(scope="module")
def converted(folders, written, tmp_path_factory):
    """name -> (file, metadata) that convert_hf_to_gguf.py --vocab-only
    writes for the same folder. The converter names a byte-level
    pre-tokenizer by hashing the ids of a test string, which only works for tokenizers it knows: for
    Qwen3 its own detection runs; the others, trained here, get the name
    tinylm found (so their tokenizer.ggml.pre is not a check)."""
    _llamacpp()
    root = tmp_path_factory.mktemp("converted")
    names = list(folders)
    jobs = [(folders[name], str(root / f"{name}.gguf"), None if name == "qwen3" else written[name][1].get(gt.PRE))
            for name in names]
    llamacpp_ref.convert_vocabs(jobs)
    out = Cases(folders.missing)
    out.update({name: (path, read_gguf(path)) for name, (_, path, _) in zip(names, jobs)})
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_metadata_matches_converter(written, converted, name):
    """Key by key what convert_hf_to_gguf.py writes, but:
    - scores of a SentencePiece-style tokenizer.json: the converter has no
      tokenizer.model to take them from and writes -1000 for every token
      (LlamaHfVocab), with which llama.cpp merges leftmost-first ("▁fo"+"x");
      tinylm writes minus the rank of the merge making each token, which
      makes llama.cpp merge as tokenizer.json does;
    - add_space_prefix: the converter writes it for Llama-architecture
      folders from tokenizer_config's add_prefix_space, also on byte-level
      vocabularies, where llama.cpp does not read it; tinylm writes it for
      SentencePiece-style ones only;
    - add_sep_token: the converter writes it from a post-processor's pair
      template; llama.cpp's tokenizer adds SEP for BERT-style (WPM)
      vocabularies only, and tinylm writes none;
    - add_bos_token / add_eos_token: the converter leaves them out when
      neither the post-processor nor tokenizer_config says; tinylm always
      writes them, the value llama.cpp defaults to in that case."""
    ours, theirs = written[name][1], converted[name][1]
    theirs = {k: v for k, v in theirs.items() if k.startswith("tokenizer.")}
    assert theirs.pop("tokenizer.ggml.add_sep_token", False) is False
    spm = ours[gt.MODEL] == "llama"
    for key, default in ((gt.ADD_BOS, spm or pretokenizers.BY_NAME[ours[gt.PRE]].add_bos), (gt.ADD_EOS, False)):
        theirs.setdefault(key, default)
    if gt.SCORES in theirs:
        assert np.all(theirs.pop(gt.SCORES) == -1000.0)
        scores = ours[gt.SCORES]
        merged = scores > -1e9
        assert merged.sum() > 20000 and np.all(scores[merged] < 0)
    if ours[gt.MODEL] == "gpt2":
        theirs.pop(gt.ADD_SPACE_PREFIX, None)
    elif gt.ADD_SPACE_PREFIX not in theirs:
        assert ours[gt.ADD_SPACE_PREFIX] is True   # llama.cpp's default for "llama"
        theirs[gt.ADD_SPACE_PREFIX] = True
    compared = {k: v for k, v in ours.items() if k != gt.SCORES}
    assert compared.keys() == theirs.keys()
    for k, v in compared.items():
        assert same(v, theirs[k]), k


@pytest.mark.parametrize("name", list(CASES))
def test_converter_file_read_as_llamacpp(converted, name):
    """The converter's own file read by tinylm encodes as llama.cpp does with
    it. For Mistral that file scores every token -1000, so llama.cpp merges
    equal scores leftmost first, which tinylm's merge_ranks reproduce
    (rank-ordered merges, as transformers derives them, do not)."""
    path, meta = converted[name]
    tok = gt.tokenizer_from_metadata(meta, path)
    texts = texts_of(name, n_fuzz=100)
    want = llamacpp_ref.tokenize_many(path, texts, add_special=False)
    for text, ids in zip(texts, want):
        assert tok.encode(text, add_special_tokens=False) == ids, text
    if meta[gt.MODEL] == "llama":
        from transformers.tokenization_utils_base import generate_merges
        tj, tc = gt.hf_tokenizer_files(meta, path)
        tokens = meta[gt.TOKENS]
        del tj["model"]["merge_ranks"]
        tj["model"]["merges"] = [list(m) for m in generate_merges({t: i for i, t in enumerate(tokens)},
                                                                  dict(zip(tokens, meta[gt.SCORES].tolist())))]
        ranked = _core.Tokenizer.from_json(json.dumps(tj), json.dumps(tc), path)
        differ = sum(ranked.encode(t, False) != ids for t, ids in zip(texts, want))
        assert differ > len(texts) // 10


# ------------------------------------------------------------------ a real SentencePiece model

@pytest.fixture(scope="module")
def sentencepiece_gguf(tmp_path_factory):
    """A SentencePiece BPE trained here (byte fallback, no normalization,
    user-defined "<|im_start|>" / "<|im_end|>"), converted by
    convert_hf_to_gguf.py from its tokenizer.model: real scores and token
    types. Returns (processor, metadata)."""
    _llamacpp()
    sys.path.append(llamacpp_ref._PYDEPS)
    spm = pytest.importorskip("sentencepiece")
    folder = tmp_path_factory.mktemp("spm")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_training_texts()), model_writer=model, vocab_size=1500, model_type="bpe",
        byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False,
        user_defined_symbols=["<|im_start|>", "<|im_end|>"], allow_whitespace_only_pieces=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2, num_threads=1, max_sentence_length=100000)
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    with open(folder / "config.json", "w") as f:
        json.dump(_model_config("LlamaForCausalLM", 1500), f)
    out = str(folder / "spm.gguf")
    llamacpp_ref.convert_vocabs([(str(folder), out, None)])
    return spm.SentencePieceProcessor(model_proto=model.getvalue()), read_gguf(out)


SPM_SPECIALS = ["<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>"]


@pytest.mark.parametrize("prefix", [True, False])
def test_sentencepiece_model_as_llamacpp(sentencepiece_gguf, tmp_path, prefix):
    """tinylm reads the converted SentencePiece model as llama.cpp does, with
    the dummy prefix and without it (Gemma's files set add_space_prefix
    false). "<|im_end|>" is a normal token in the file (the converter types
    sentencepiece's user-defined pieces normal) that llama.cpp matches whole
    anyway, as an end-of-generation marker; "<|im_start|>" it does not."""
    processor, meta = sentencepiece_gguf
    meta = {k: v for k, v in meta.items() if k.startswith("tokenizer.")}
    types = dict(zip(meta[gt.TOKENS], meta[gt.TOKEN_TYPE]))
    assert (types["<|im_start|>"], types["<|im_end|>"], types["<unk>"], types["<s>"]) == (1, 1, 2, 3)
    meta[gt.ADD_SPACE_PREFIX] = prefix
    path = str(tmp_path / "spm.gguf")
    write_gguf(path, {k: np.uint32(v) if isinstance(v, int) and not isinstance(v, bool) else v
                      for k, v in meta.items()})
    tok = gt.tokenizer_from_metadata(read_gguf(path), path)
    texts = corpus(SPM_SPECIALS) + fuzz_texts(SPM_SPECIALS, 400, seed=7)
    for add in (False, True):
        want = llamacpp_ref.tokenize_many(path, texts, add_special=add)
        for text, ids in zip(texts, want):
            assert tok.encode(text, add_special_tokens=add) == ids, (text, add)
    if prefix:   # sentencepiece itself, on text without special tokens
        plain = [t for t in texts if not any(s in t for s in SPM_SPECIALS)]
        assert len(plain) > 300
        for text in plain:
            assert tok.encode(text, add_special_tokens=False) == processor.encode(text), text


def test_pretokenizer_names_split_as_llamacpp(written, tmp_path):
    """Every pre-tokenizer name tinylm reads splits as llama.cpp's does: the
    demo's vocabulary (byte-level, all 256 bytes) under each name."""
    _llamacpp()
    meta = dict(written["demo"][1])
    specials = CASES["demo"][0]
    texts = corpus(specials) + fuzz_texts(specials, 100, seed=11)
    for name in pretokenizers.BY_NAME:
        meta[gt.PRE] = name
        meta[gt.ADD_BOS] = False
        path = str(tmp_path / f"{name}.gguf")
        write_gguf(path, meta)
        tok = gt.tokenizer_from_metadata(read_gguf(path), path)
        for text, ids in zip(texts, llamacpp_ref.tokenize_many(path, texts, add_special=False)):
            assert tok.encode(text, add_special_tokens=False) == ids, (name, text)


# ------------------------------------------------------------------ merge_ranks (the C side)

def _tiny(ranks, merges=(("a", "b"), ("b", "c"))) -> _core.Tokenizer:
    vocab = {t: i for i, t in enumerate(["a", "b", "c", "ab", "bc", "abc"])}
    model = {"type": "BPE", "vocab": vocab, "merges": [list(m) for m in merges]}
    if ranks is not None:
        model["merge_ranks"] = ranks
    return _core.Tokenizer.from_json(json.dumps({"model": model}), None, "tiny.gguf")


def test_merge_ranks_tie_goes_leftmost():
    """Merges of equal rank apply leftmost first (llama.cpp's rule for equal
    SentencePiece scores); without merge_ranks the list order decides."""
    vocab_id = {"ab": 3, "bc": 4, "c": 2, "a": 0}
    assert _tiny(None).encode("abc") == [vocab_id["ab"], vocab_id["c"]]
    assert _tiny(None, merges=(("b", "c"), ("a", "b"))).encode("abc") == [vocab_id["a"], vocab_id["bc"]]
    assert _tiny([0, 0], merges=(("b", "c"), ("a", "b"))).encode("abc") == [vocab_id["ab"], vocab_id["c"]]
    assert _tiny([5, 2]).encode("abc") == [vocab_id["a"], vocab_id["bc"]]
    # long words take the heap path, which must tie the same way
    assert _tiny([0, 0], merges=(("b", "c"), ("a", "b"))).encode("abc" * 20) == [vocab_id["ab"], vocab_id["c"]] * 20


@pytest.mark.parametrize("ranks,match", [([0], "as long as"), ("x", "as long as"), ([0, -1], r"merge_ranks\[1\]"),
                                         ([0, 1.5], r"merge_ranks\[1\]"), ([0, 2 ** 32], r"merge_ranks\[1\]")])
def test_bad_merge_ranks(ranks, match):
    with pytest.raises(FormatError, match=rf"tiny\.gguf: .*{match}"):
        _tiny(ranks)


def test_from_json_errors_name_the_source():
    with pytest.raises(FormatError, match=r"x\.gguf: malformed JSON"):
        _core.Tokenizer.from_json("{", None, "x.gguf")
    with pytest.raises(FormatError, match=r"x\.gguf: .*bos_token"):
        _core.Tokenizer.from_json(json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}),
                                  json.dumps({"bos_token": 3}), "x.gguf")
    with pytest.raises(UnsupportedError, match=r"x\.gguf: unsupported model 'WordPiece'"):
        _core.Tokenizer.from_json(json.dumps({"model": {"type": "WordPiece", "vocab": {}}}), None, "x.gguf")


# ------------------------------------------------------------------ bad metadata

def _gpt2_meta() -> dict:
    return {gt.MODEL: "gpt2", gt.PRE: "gpt-2", gt.TOKENS: ["a", "b", "ab", "<|x|>"], gt.MERGES: ["a b"],
            gt.TOKEN_TYPE: [1, 1, 1, 3], "tokenizer.ggml.eos_token_id": 3}


def test_small_metadata_reads():
    tok = gt.tokenizer_from_metadata(_gpt2_meta(), "t.gguf")
    assert tok.encode("ab<|x|>a") == [2, 3, 0] and tok.eos_token == "<|x|>" and tok.bos_token is None
    assert tok.path == "t.gguf" and tok.gguf_metadata == _gpt2_meta()


@pytest.mark.parametrize("change,error,match", [
    ({gt.TOKENS: None}, FormatError, "missing required metadata key 'tokenizer.ggml.tokens'"),
    ({gt.TOKENS: []}, FormatError, "tokenizer.ggml.tokens is empty"),
    ({gt.TOKENS: ["a", 2]}, FormatError, "tokenizer.ggml.tokens must be an array of strings"),
    ({gt.TOKENS: ["a", "b", "ab", "a"]}, FormatError, "tokenizer.ggml.tokens holds 'a' twice"),
    ({gt.MODEL: None}, FormatError, "missing required metadata key 'tokenizer.ggml.model'"),
    ({gt.MODEL: "bert"}, UnsupportedError, "unsupported tokenizer.ggml.model 'bert'"),
    ({gt.PRE: "klingon"}, UnsupportedError, "unsupported tokenizer.ggml.pre 'klingon'"),
    ({gt.MERGES: None}, FormatError, "missing required metadata key 'tokenizer.ggml.merges'"),
    ({gt.MERGES: ["a c"]}, FormatError, r"tokenizer.ggml.merges\[0\] = 'a c' names 'c'"),
    ({gt.MERGES: ["b a"]}, FormatError, r"tokenizer.ggml.merges\[0\] = 'b a' names 'ba'"),
    ({gt.MERGES: ["ab"]}, FormatError, r"tokenizer.ggml.merges\[0\] = 'ab' is not two tokens"),
    ({gt.TOKEN_TYPE: [1, 1, 1]}, FormatError, "tokenizer.ggml.token_type has 3 entries for 4 tokens"),
    ({gt.TOKEN_TYPE: [1, 1, 1, 9]}, FormatError, "tokenizer.ggml.token_type holds 9"),
    ({gt.TOKEN_TYPE: [1, 1, 1, "x"]}, FormatError, "tokenizer.ggml.token_type must be an array of integers"),
    ({"tokenizer.ggml.eos_token_id": 4}, FormatError, "tokenizer.ggml.eos_token_id = 4 is not a token id"),
    ({gt.ADD_BOS: True}, FormatError,
     "tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is missing"),
    ({gt.ADD_EOS: "yes"}, FormatError, "tokenizer.ggml.add_eos_token must be a bool"),
    ({gt.PRE: "llama-bpe"}, FormatError, "tokenizer.ggml.add_bos_token is absent, and llama.cpp adds BOS"),
    ({gt.CHAT_TEMPLATE: 3}, FormatError, "tokenizer.chat_template must be a string"),
    ({"tokenizer.chat_templates": ["x"]}, FormatError, "tokenizer.chat_template.x must be a string"),
])
def test_bad_metadata_is_named(change, error, match):
    meta = _gpt2_meta()
    for k, v in change.items():
        if v is None:
            del meta[k]
        else:
            meta[k] = v
    with pytest.raises(error, match=rf"^t\.gguf: {match}"):
        gt.tokenizer_from_metadata(meta, "t.gguf")


def test_bad_sentencepiece_metadata_is_named():
    meta = {gt.MODEL: "llama", gt.TOKENS: ["<unk>", "<s>", "</s>", "\u2581", "a", "\u2581a"], gt.SCORES: [0.0] * 5}
    with pytest.raises(FormatError, match=r"^s\.gguf: tokenizer.ggml.scores has 5 entries for 6 tokens"):
        gt.tokenizer_from_metadata(meta, "s.gguf")
    meta[gt.SCORES] = [0.0] * 5 + ["x"]
    with pytest.raises(FormatError, match=r"^s\.gguf: tokenizer.ggml.scores must be an array of numbers"):
        gt.tokenizer_from_metadata(meta, "s.gguf")
    meta[gt.SCORES] = np.zeros(6, dtype=np.float32)
    meta[gt.ADD_SPACE_PREFIX] = 1
    with pytest.raises(FormatError, match=r"^s\.gguf: tokenizer.ggml.add_space_prefix must be a bool"):
        gt.tokenizer_from_metadata(meta, "s.gguf")
    del meta[gt.ADD_SPACE_PREFIX]
    tok = gt.tokenizer_from_metadata(meta, "s.gguf")   # llama.cpp's default ids: <unk> 0, <s> 1, </s> 2
    assert (tok.bos_token, tok.eos_token, tok.unk_token, tok.encode("a")) == ("<s>", "</s>", "<unk>", [1, 5])


# ------------------------------------------------------------------ what llama.cpp cannot do

@pytest.fixture(scope="module")
def small_files(folders) -> Cases:
    """"gpt2" and "mistral" -> their tokenizer.json."""
    out = Cases({"mistral": folders.missing.get("mistral-7b")})
    for which, name in (("gpt2", "gpt2"), ("mistral", "mistral-7b")):
        if name in folders:
            with open(os.path.join(folders[name], "tokenizer.json"), encoding="utf-8") as f:
                out[which] = json.load(f)
    return out


@pytest.mark.parametrize("which,change,match", [
    ("gpt2", lambda t: t.update(pre_tokenizer={"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}),
     "ByteLevel add_prefix_space=true"),
    ("gpt2", lambda t: t.update(pre_tokenizer={"type": "Digits", "individual_digits": True}),
     "does not end in ByteLevel"),
    ("gpt2", lambda t: t.update(pre_tokenizer={"type": "Sequence", "pretokenizers": [
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}), "ByteLevel before other steps"),
    ("gpt2", lambda t: t.update(pre_tokenizer={"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"\s+"}, "behavior": "Removed", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]}), "Split other than an Isolated"),
    ("gpt2", lambda t: t.update(pre_tokenizer={"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"\w+"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}),
     "which no llama.cpp pre-tokenizer does"),
    ("gpt2", lambda t: t.update(normalizer={"type": "NFKC"}), r"normalizer \{'type': 'NFKC'\}: llama.cpp"),
    ("gpt2", lambda t: t["model"].update(ignore_merges=True), "model.ignore_merges=true with this pre_tokenizer"),
    ("gpt2", lambda t: t["added_tokens"][-1].update(rstrip=True), "added token '<think>' is rstrip"),
    ("gpt2", lambda t: t.update(post_processor={"type": "TemplateProcessing", "single": [
        {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
        {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
        {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}], "pair": [],
        "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0], "tokens": ["<|endoftext|>"]}}}),
     r"the post-processor adds \[0, 0\] after a text"),
    ("mistral", lambda t: t.update(normalizer=None, pre_tokenizer={"type": "Metaspace", "replacement": "▁",
                                                                    "prepend_scheme": "first", "split": False}),
     "pre_tokenizer 'Metaspace' on a byte-fallback BPE"),
    ("mistral", lambda t: t.update(normalizer={"type": "NFKC"}),
     r"normalizer \{'type': 'NFKC'\} on a byte-fallback BPE"),
    ("mistral", lambda t: t["added_tokens"].append({"id": 32000, "content": "<x>", "special": False,
                                                    "normalized": True}),
     "added token '<x>' is normalized"),
    ("mistral", lambda t: t["model"]["vocab"].pop("<0x41>"), "without <0x41>"),
])
def test_writer_refuses_what_llamacpp_cannot_do(small_files, which, change, match):
    tj = copy.deepcopy(small_files[which])
    change(tj)
    with pytest.raises(UnsupportedError, match=rf"^w: .*{match}"):
        gt.tokenizer_metadata((tj, {"eos_token": "<|endoftext|>"} if which == "gpt2" else None), "w")


def test_writer_refuses_merges_scores_cannot_give(small_files):
    """llama.cpp's SentencePiece tokenizer merges any two pieces forming a
    token, at that token's score: a BPE whose merges differ from that
    (some split left out, a token's splits apart, a token no merge makes
    but made of two tokens) is refused, naming the token."""
    merges = small_files["mistral"]["model"]["merges"]
    made_of: dict[str, list[int]] = {}
    for r, m in enumerate(merges):
        made_of.setdefault(m.replace(" ", ""), []).append(r)
    used = {part for m in merges for part in m.split(" ")}
    token, ranks = next((t, r) for t, r in made_of.items() if len(r) > 1)
    unused = next(t for t in made_of if t not in used)

    def refused(new_merges, message):
        tj = copy.deepcopy(small_files["mistral"])
        tj["model"]["merges"] = new_merges
        with pytest.raises(UnsupportedError, match=f"^w: {re.escape(message)}"):
            gt.tokenizer_metadata((tj, None), "w")

    refused([m for r, m in enumerate(merges) if r != ranks[1]],
            f"{token!r} splits into two tokens {len(ranks)} ways but {len(ranks) - 1} merges")
    refused([m for r, m in enumerate(merges) if r != ranks[1]] + [merges[ranks[1]]],
            f"the merges of {token!r} are not consecutive")
    refused([m for m in merges if m.replace(" ", "") != unused], f"no merge makes {unused!r}")
