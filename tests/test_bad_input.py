"""Every class of bad input ends in a named tinylm exception whose message
names the file and the field, tensor or line (docs/reliability.md, "Bad
input"), and every input the Python fuzz harnesses found (tests/fuzz/
regressions) now does too."""
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import tinylm
from tinylm import FormatError
from tinylm.chat_template import ChatTemplateError
from tinylm.evaluate.golden import load_golden

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "tinylm", "models", "demo")
REGRESSIONS = os.path.join(ROOT, "tests", "fuzz", "regressions")
TINY = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64, "hidden_size": 16,
        "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A real tiny checkpoint; tests overwrite its config.json."""
    path = tmp_path_factory.mktemp("model")
    tinylm.Model.from_config(TINY).save_pretrained(path)
    return path


def write_config(model_dir, text: str | bytes) -> str:
    path = os.path.join(model_dir, "config.json")
    with open(path, "wb") as f:
        f.write(text if isinstance(text, bytes) else text.encode())
    return path


def config_with(**changes) -> str:
    config = dict(TINY)
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return json.dumps(config)


# ----------------------------------------------------------------- config.json

@pytest.mark.parametrize("changes, message", [
    ({"hidden_size": 10**12}, r'"hidden_size" must be in \[1, 1048576\], got 1000000000000'),
    ({"vocab_size": 2**24, "hidden_size": 2**20, "intermediate_size": 2**20, "num_attention_heads": 4096},
     r"these dimensions make \d+ parameters, more than the 68719476736 tinylm allows"),
    ({"num_hidden_layers": 10**6}, r'"num_hidden_layers" must be in \[1, 4096\]'),
    ({"hidden_size": 10**30}, r'"hidden_size" must be a positive integer, got 1000000000000000000000000000000'),
    ({"hidden_size": "16"}, r"\"hidden_size\" must be a positive integer, got '16'"),
    ({"num_attention_heads": 0}, r'"num_attention_heads" must be a positive integer, got 0'),
    ({"head_dim": 5}, r'"head_dim" must be even, got 5'),
    ({"rope_theta": [1]}, r'"rope_theta" must be a number, got \[1\]'),
    ({"rope_theta": 1e300}, r'"rope_theta" must be finite and > 0, got inf'),
    ({"rms_norm_eps": float("nan")}, r'"rms_norm_eps" must be finite and > 0, got nan'),
    ({"attention_dropout": "x"}, r"\"attention_dropout\" must be a number, got 'x'"),
    ({"rope_scaling": {"rope_type": ["llama3"]}}, r'rope_scaling "rope_type" must be a string'),
    ({"architectures": None, "model_type": ["llama"]}, None),   # UnsupportedError, below
])
def test_bad_config_fields(model_dir, changes, message):
    path = write_config(model_dir, config_with(**changes))
    if message is None:
        with pytest.raises(tinylm.UnsupportedError, match=r"config.json: architecture model_type=\['llama'\]"):
            tinylm.Model.from_pretrained(model_dir)
        return
    with pytest.raises(FormatError, match=f"^{path}: {message}"):
        tinylm.Model.from_pretrained(model_dir)


def test_absurd_dimension_fails_before_allocating(model_dir, tmp_path):
    """With the address space capped at 1 GB, a hidden_size of 10^12 is still
    a FormatError: the bound is checked before any allocation is tried."""
    path = write_config(model_dir, config_with(hidden_size=10**12))
    script = ("import resource, tinylm, sys\n"
              "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
              "try:\n    tinylm.Model.from_pretrained(sys.argv[1])\n"
              "except tinylm.FormatError as exc:\n    print('FormatError', exc)\n")
    out = subprocess.run([sys.executable, "-c", script, str(model_dir)], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}, timeout=120)
    assert out.stdout.startswith(f"FormatError {path}: \"hidden_size\" must be in"), out.stdout + out.stderr


@pytest.mark.parametrize("data, message", [
    (b"{\"hidden_size\": 16,", r"not valid JSON"),
    (b"{\"a\": \"\xff\"}", r"not valid JSON: 'utf-8' codec can't decode byte 0xff"),
    (b"[1, 2]", r"expected a JSON object, got list"),
])
def test_unreadable_config(model_dir, data, message):
    path = write_config(model_dir, data)
    with pytest.raises(FormatError, match=f"^{path}: {message}"):
        tinylm.Model.from_pretrained(model_dir)


def test_config_disagreeing_with_the_checkpoint(model_dir):
    write_config(model_dir, config_with(hidden_size=32))
    with pytest.raises(FormatError, match=r'model.safetensors: tensor "model.embed_tokens.weight" has shape '
                                          r"\[64, 16\] but config.json implies \[64, 32\]"):
        tinylm.Model.from_pretrained(model_dir)


# ------------------------------------------------------------------ safetensors

def write_safetensors(path, header: bytes, data: bytes = b"") -> str:
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + data)
    return str(path)


@pytest.mark.parametrize("header, data, message", [
    (b"{}", b"", None),
    (b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', b"\0" * 4,
     r'tensor "w": data_offsets \[0, 8\] end past the data buffer of 4 bytes'),
    (b'{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}', b"\0" * 8,
     r'tensor "w": data_offsets \[0, 8\] hold 8 bytes but shape \[3\] of F32 needs 12'),
    (b'{"w": {"dtype": "Q9", "shape": [2], "data_offsets": [0, 8]}}', b"\0" * 8, r'tensor "w"'),
    (b'{"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}}', b"\0" * 8,
     r'tensor "w": shape \[4294967296, 4294967296\] of F32 is too large'),
    (b'{"\xff": 1}', b"", r"header is not valid UTF-8 \(byte 2\)"),
])
def test_bad_safetensors(tmp_path, header, data, message):
    path = write_safetensors(tmp_path / "model.safetensors", header, data)
    if message is None:   # the empty file is valid: the test's file layout is right
        with tinylm._core.SafetensorsFile(path) as st:
            assert list(st.tensors()) == []
        return
    with pytest.raises(FormatError, match=f"^{path}: {message}"):
        tinylm._core.SafetensorsFile(path)


def test_safetensors_header_past_the_end(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 1000) + b"{}")
    with pytest.raises(FormatError, match=f"^{path}: header length 1000 runs past the end of the file"):
        tinylm._core.SafetensorsFile(str(path))


# ---------------------------------------------------------------- tokenizers

@pytest.fixture()
def tok_dir(tmp_path):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        with open(os.path.join(DEMO, name), "rb") as src, open(tmp_path / name, "wb") as dst:
            dst.write(src.read())
    return tmp_path


def corrupt(path, at: int, byte: bytes = b"\xff") -> None:
    data = path.read_bytes()
    path.write_bytes(data[:at] + byte + data[at + 1:])


def test_tokenizer_json_not_utf8(tok_dir):
    """The known bug: this surfaced as a bare UnicodeDecodeError."""
    path = tok_dir / "tokenizer.json"
    text = path.read_bytes()
    at = text.index(b'"vocab"') + 20
    corrupt(path, at)
    with pytest.raises(FormatError, match=f"^{path}: not valid UTF-8 \\(byte {at}\\)$"):
        tinylm.Tokenizer.from_pretrained(tok_dir)


def test_tokenizer_config_not_utf8(tok_dir):
    path = tok_dir / "tokenizer_config.json"
    corrupt(path, path.read_bytes().index(b"chat_template") + 20)
    with pytest.raises(FormatError, match=f"^{path}: not valid UTF-8"):
        tinylm.Tokenizer.from_pretrained(tok_dir)


def test_tokenizer_json_bad_field(tok_dir):
    path = tok_dir / "tokenizer.json"
    tok = json.loads(path.read_text(encoding="utf-8"))
    tok["model"]["merges"] = 7
    path.write_text(json.dumps(tok), encoding="utf-8")
    with pytest.raises(FormatError, match=f"^{path}: model.merges must be a list$"):
        tinylm.Tokenizer.from_pretrained(tok_dir)


# ------------------------------------------------------------ chat templates

def set_chat_template(tok_dir, template) -> str:
    path = tok_dir / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["chat_template"] = template
    path.write_text(json.dumps(config), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("template, message", [
    (7, r"chat_template must be a string or a list of named templates, got int"),
    ([{"name": "default"}], r'chat_template\[0\] must be \{"name": string, "template": string\}'),
])
def test_malformed_chat_template_field(tok_dir, template, message):
    path = set_chat_template(tok_dir, template)
    with pytest.raises(FormatError, match=f"^{path}: {message}$"):
        tinylm.Tokenizer.from_pretrained(tok_dir)


@pytest.mark.parametrize("template, message", [
    ("{% for m in messages %}{{ m.content }}", r"chat_template line 1: Unexpected end of template"),
    ("{{ raise_exception('roles must alternate') }}", r"chat_template failed while rendering: TemplateError: "
                                                     r"roles must alternate"),
    ("{{ messages[5].content }}", r"chat_template failed while rendering: UndefinedError"),
    ("{{ 1 // 0 }}", r"chat_template failed while rendering: ZeroDivisionError"),
])
def test_failing_chat_template(tok_dir, template, message):
    path = set_chat_template(tok_dir, template)
    tok = tinylm.Tokenizer.from_pretrained(tok_dir)
    with pytest.raises(ChatTemplateError, match=f"^{path}: {message}"):
        tok.apply_chat_template([{"role": "user", "content": "hi"}])


def test_chat_template_jinja_not_utf8(tok_dir):
    path = tok_dir / "chat_template.jinja"
    path.write_bytes(b"{{ messages[0].content }}\xc3")
    with pytest.raises(FormatError, match=f"^{path}: not valid UTF-8 \\(byte 25\\)$"):
        tinylm.Tokenizer.from_pretrained(tok_dir)


# ----------------------------------------------------------- JSONL and golden

@pytest.fixture(scope="module")
def demo_tok():
    return tinylm.Tokenizer.from_pretrained(DEMO)


@pytest.mark.parametrize("content, message", [
    (b'{"text": "a"}\n{"text": "b\xff"}\n', r"data.jsonl:2: not valid UTF-8 \(byte 0xff at column 12\)"),
    (b'{"text": "a"}\n\n{"text": \n', r"data.jsonl:3: malformed JSON: Expecting value at column 10"),
    (b'{"text": "a"}\n[1, 2]\n', r"data.jsonl:2: expected a JSON object, got list"),
    (b"", r"data.jsonl: no examples in the file$"),
])
def test_bad_jsonl(tmp_path, demo_tok, content, message):
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=f"^{path}" + message[len("data.jsonl"):]):
        tinylm.data.load_dataset(str(path), demo_tok, seq_len=16, cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("record, message", [
    ({"prompt": "2+2=", "expected": "4"}, r'golden.jsonl:1: missing "check"'),
    ({"prompt": "2+2=", "expected": "4", "check": ["exact"]}, r'golden.jsonl:1: unknown check \["exact"\]'),
    ({"prompt": 4, "expected": "4", "check": "exact"}, r'golden.jsonl:1: "prompt" must be a string'),
    ({"prompt": "x", "expected": "4", "check": "exact", "max_new_tokens": 0},
     r'golden.jsonl:1: "max_new_tokens" must be an integer >= 1, got 0'),
])
def test_bad_golden(tmp_path, record, message):
    path = tmp_path / "golden.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(FormatError, match=f"^{tmp_path}/{message}"):
        load_golden(path)


def test_golden_not_utf8(tmp_path):
    path = tmp_path / "golden.jsonl"
    path.write_bytes(b'{"prompt": "\xe9", "expected": "4", "check": "exact"}\n')
    with pytest.raises(FormatError, match=f"^{path}:1: not valid UTF-8"):
        load_golden(path)


# ------------------------------------------------- fuzz-found regressions

def regression(target: str, name: str) -> bytes:
    with open(os.path.join(REGRESSIONS, target, name), "rb") as f:
        return f.read()


def test_regression_config_odd_head_dim(model_dir):
    """Was a bare ValueError from the core, naming no file."""
    path = write_config(model_dir, regression("config", "odd-head-dim-bare-valueerror"))
    with pytest.raises(FormatError, match=f'^{path}: "head_dim" must be even'):
        tinylm.Model.from_pretrained(model_dir)


def test_regression_empty_jsonl(tmp_path, demo_tok):
    """Was a bare ValueError."""
    path = tmp_path / "data.jsonl"
    path.write_bytes(regression("jsonl", "empty-file-bare-valueerror"))
    with pytest.raises(FormatError, match=f"^{path}: no examples in the file$"):
        tinylm.data.load_dataset(str(path), demo_tok, seq_len=16, cache_dir=str(tmp_path / "cache"))


def test_regression_tokenizer_config_not_utf8(tok_dir):
    """Was a UnicodeDecodeError from reading the chat template in Python."""
    data = regression("chat_template", "config-not-utf8-unicodedecodeerror")
    path = tok_dir / "tokenizer_config.json"
    path.write_bytes(data.partition(b"\n\x01--\x01\n")[0])
    with pytest.raises(FormatError, match=f"^{path}: not valid UTF-8"):
        tinylm.Tokenizer.from_pretrained(tok_dir)


def test_regression_tokenizer_json_not_utf8(tok_dir):
    """Was a UnicodeDecodeError from the core's message quoting the bytes."""
    path = tok_dir / "tokenizer.json"
    path.write_bytes(regression("tokenizer", "not-utf8-unicodedecodeerror"))
    with pytest.raises(FormatError, match=f"^{path}: not valid UTF-8"):
        tinylm.Tokenizer.from_pretrained(tok_dir)


def test_regression_inputs_are_all_tested():
    """Each committed Python regression input has its test above."""
    found = sorted(f"{t}/{n}" for t in os.listdir(REGRESSIONS) for n in os.listdir(os.path.join(REGRESSIONS, t)))
    assert found == ["chat_template/config-not-utf8-unicodedecodeerror", "config/odd-head-dim-bare-valueerror",
                     "jsonl/empty-file-bare-valueerror", "tokenizer/not-utf8-unicodedecodeerror"]
