"""llama.cpp as a reference for the tests: the tools and libraries that
tests/llamacpp/build_reference.sh builds into a cache outside the checkout
($TINYLM_LLAMACPP_CACHE, else ~/.cache/tinylm/llama.cpp).

Nothing here builds anything: skip_reason() says why a test cannot run (no
build yet) and every other function raises RuntimeError with that reason.

- tokenize, perplexity, quantize, bench run the llama-* tools
  (tokenize_many: llama_tokenize over many texts, one vocabulary load);
- logits, greedy drive libllama through the ctypes bindings of the
  llama-cpp-python sdist the build came from (its llama_cpp package, put on
  sys.path and pointed at our libllama.so; nothing is pip-installed);
- libggml() wraps libggml-base.so's quantizers and dequantizers: the
  bit-exact oracle for GGUF block formats;
- convert runs the sdist's convert_hf_to_gguf.py (or convert_lora_to_gguf.py);
  convert_vocabs its --vocab-only on several folders in one process.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

CACHE = os.path.abspath(os.environ.get("TINYLM_LLAMACPP_CACHE")
                        or os.path.join(os.path.expanduser("~"), ".cache", "tinylm", "llama.cpp"))
BUILD_COMMAND = "tests/llamacpp/build_reference.sh"
_BIN = os.path.join(CACHE, "build", "bin")
_STAMP = os.path.join(CACHE, "build", "tinylm-reference.stamp")
# Where build_reference.sh pip-installs what the converter and the bindings
# import beyond the test venv, per interpreter version (sentencepiece has a C part).
_PYDEPS = os.path.join(CACHE, f"pydeps-py{sys.version_info[0]}.{sys.version_info[1]}")


def _read_stamp(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    except FileNotFoundError:
        return None


def _stamp() -> dict | None:
    """The key=value lines the build writes last; None before a finished build."""
    return _read_stamp(_STAMP)


def converter_dir() -> str | None:
    """The vendored llama.cpp tree once extracted (build_reference.sh
    --source, which `make test` runs), built or not: what the tests that run
    convert_hf_to_gguf.py need. None when it is not there."""
    stamp = _read_stamp(os.path.join(CACHE, "tinylm-source.stamp"))
    path = os.environ.get("TINYLM_LLAMA_CPP") or (stamp or {}).get("source")
    return path if path and os.path.exists(os.path.join(path, "convert_hf_to_gguf.py")) else None


def skip_reason() -> str | None:
    """Why the llama.cpp reference cannot be used here, or None when it can."""
    stamp = _stamp()
    if stamp is None:
        return f"llama.cpp reference not built in {CACHE} (run {BUILD_COMMAND}; TINYLM_LLAMACPP_CACHE overrides)"
    if not os.path.isdir(_PYDEPS):
        return (f"llama.cpp reference has no Python helpers for Python {sys.version_info[0]}.{sys.version_info[1]} "
                f"in {_PYDEPS} (run PYTHON={sys.executable} {BUILD_COMMAND})")
    return None


def _require() -> dict:
    reason = skip_reason()
    if reason:
        raise RuntimeError(reason)
    return _stamp()


def version() -> str:
    """The llama-cpp-python version the reference was built from."""
    return _require()["version"]


def source_dir() -> str:
    """The vendored llama.cpp tree (convert_hf_to_gguf.py, gguf-py/, include/)."""
    return _require()["source"]


def _tool(name: str, *args: str) -> subprocess.CompletedProcess:
    _require()
    proc = subprocess.run([os.path.join(_BIN, name), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def tokenize(gguf_path: str, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
    """llama-tokenize's ids for `text` (passed byte for byte through a file).

    The tool's add_special is "the vocab's add_bos and not --no-bos": with it
    llama_tokenize adds BOS, and EOS too when the vocab's add_eos is set; a
    vocab without add_bos gets neither. Special tokens written in the text
    (e.g. "<s>") are parsed as such unless parse_special is False."""
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(text.encode("utf-8"))
    try:
        args = ["-m", gguf_path, "-f", f.name, "--ids", "--no-escape", "--log-disable"]
        args += [] if add_special else ["--no-bos"]
        args += [] if parse_special else ["--no-parse-special"]
        out = _tool("llama-tokenize", *args).stdout
    finally:
        os.unlink(f.name)
    return json.loads(out.strip().splitlines()[-1])


def tokenize_many(gguf_path: str, texts, add_special: bool = True, parse_special: bool = True) -> list[list[int]]:
    """libllama's llama_tokenize ids for each text, the file's vocabulary
    loaded once (vocab_only: a file of tokenizer keys alone will do). Unlike
    the llama-tokenize tool, add_special adds BOS and EOS each as the
    vocabulary's add_bos / add_eos say, as llama_tokenize does."""
    L = _llama()
    params = L.llama_model_default_params()
    params.vocab_only = True
    model = L.llama_model_load_from_file(gguf_path.encode(), params)
    if not model:
        raise RuntimeError(f"libllama could not load the vocabulary of {gguf_path}")
    try:
        vocab = L.llama_model_get_vocab(model)
        out = []
        for text in texts:
            data = text.encode("utf-8")
            room = len(data) + 8
            buf = (L.llama_token * room)()
            n = L.llama_tokenize(vocab, data, len(data), buf, room, add_special, parse_special)
            if n < 0:
                room = -n
                buf = (L.llama_token * room)()
                n = L.llama_tokenize(vocab, data, len(data), buf, room, add_special, parse_special)
            out.append(list(buf[:n]))
        return out
    finally:
        L.llama_model_free(model)


def perplexity(gguf_path: str, text_file: str, n_ctx: int, threads: int = 1, exact: bool = True) -> float:
    """llama-perplexity's final estimate over `text_file`.

    Its rule: the file (less one trailing newline) is tokenized with BOS, cut
    into len // n_ctx chunks of n_ctx tokens (at least 2 chunks, else it
    fails), each chunk's first token replaced by BOS, the KV cache cleared
    between chunks; in each chunk the logits at positions n_ctx//2 ..
    n_ctx-2 score the next token, so n_ctx - 1 - n_ctx//2 tokens per chunk;
    PPL = exp(mean NLL over all of them), printed to 4 decimals. `exact`
    as for logits()."""
    attention = ["-ctk", "f32", "-ctv", "f32", "-fa", "off"] if exact else []
    proc = _tool("llama-perplexity", "-m", gguf_path, "-f", text_file, "-c", str(n_ctx), "-b", str(n_ctx),
                 "-t", str(threads), *attention)
    found = re.search(r"Final estimate: PPL = ([0-9.]+)", proc.stdout + proc.stderr)
    if not found:
        raise RuntimeError(f"llama-perplexity printed no final estimate: {proc.stderr[-2000:]}")
    return float(found.group(1))


def quantize(src_gguf: str, dst_gguf: str, type_name: str, threads: int = 1, pure: bool = False,
             output_type: str | None = None, embedding_type: str | None = None) -> None:
    """llama-quantize src -> dst as `type_name` (Q8_0, Q4_K_M, ...). Without
    `pure` the K-quant mixes apply (some tensors get another type), and a
    tensor whose rows are not a multiple of the type's block gets the tool's
    fallback type. output_type / embedding_type: its --output-tensor-type and
    --token-embedding-type."""
    flags = ["--pure"] if pure else []
    flags += ["--output-tensor-type", output_type] if output_type else []
    flags += ["--token-embedding-type", embedding_type] if embedding_type else []
    _tool("llama-quantize", *flags, src_gguf, dst_gguf, type_name, str(threads))


def bench(gguf_path: str, threads: int, n_prompt: int, n_gen: int, repetitions: int = 1) -> list[dict]:
    """llama-bench's JSON records: one for the prompt test (n_prompt > 0) and
    one for the generation test (n_gen > 0); "avg_ts" is tokens per second."""
    return json.loads(_tool("llama-bench", "-m", gguf_path, "-t", str(threads), "-p", str(n_prompt),
                            "-n", str(n_gen), "-r", str(repetitions), "-o", "json").stdout)


# Run as `python -c _CONVERT OPTIONS_JSON CONVERTER ARGS...`: the converter as
# a script, with the patches OPTIONS_JSON asks for made first.
_CONVERT = """
import json, runpy, sys
options = json.loads(sys.argv[1])
sys.path[:0] = options["path"]
import gguf
if options["pre"]:
    import conversion.base
    conversion.base.TextModel.get_vocab_base_pre = lambda self, tokenizer: options["pre"]
if options["merge_scores"]:
    with open(options["merge_scores"], encoding="utf-8") as f:
        bpe = json.load(f)["model"]
    score = {}
    for rank, merge in enumerate(bpe["merges"]):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        score.setdefault(bpe["vocab"][left + right], -1.0 - rank)
    gguf.LlamaHfVocab.get_token_score = lambda self, token_id: score.get(token_id, -1e9)
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def convert(hf_dir: str, out_gguf: str, outtype: str = "f32", pre: str | None = None,
            merge_scores: bool = False, lora_base: str | None = None, vocab_only: bool = False,
            fuse_qkv: bool = False) -> None:
    """convert_hf_to_gguf.py on a save_pretrained folder, or, with
    lora_base (the base model's folder), convert_lora_to_gguf.py on a PEFT
    adapter folder.

    pre: the converter names a BPE tokenizer's pre-tokenizer by hashing the
    ids its tokenizer gives one fixed text, and refuses a hash it does not
    know (NotImplementedError "BPE pre-tokenizer was not recognized"). The
    hash covers the vocabulary as well as the pre-tokenizer, so any
    tokenizer trained here is unknown to it; `pre` names the pre-tokenizer
    llama.cpp should use instead (e.g. "qwen2", "llama-bpe", "gpt-2").

    merge_scores: a Llama-family folder with tokenizer.json but no
    tokenizer.model (e.g. Mistral's) becomes a "llama" (SentencePiece) vocab
    whose scores are all -1000, and llama.cpp's SentencePiece tokenizer,
    which merges by score, then splits differently from the BPE merges
    ("▁fo"+"x" for "▁f"+"ox"). With merge_scores each token scores minus the
    rank of the first merge that makes it, which makes llama.cpp's
    tokenization that of tokenizer.json.

    vocab_only: the converter's --vocab-only (metadata, no tensors; the
    folder still needs the config.json its hyperparameters come from).
    fuse_qkv: its --fuse-qkv (q, k and v in one attn_qkv tensor a layer)."""
    src = source_dir()
    converter = os.path.join(src, "convert_lora_to_gguf.py" if lora_base else "convert_hf_to_gguf.py")
    options = {"path": [src, os.path.join(src, "gguf-py"), _PYDEPS], "pre": pre,
               "merge_scores": os.path.join(hf_dir, "tokenizer.json") if merge_scores else None}
    args = [hf_dir, "--outfile", out_gguf, "--outtype", outtype] + (["--base", lora_base] if lora_base else [])
    args += ["--vocab-only"] if vocab_only else []
    args += ["--fuse-qkv"] if fuse_qkv else []
    proc = subprocess.run([sys.executable, "-c", _CONVERT, json.dumps(options), converter, *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{os.path.basename(converter)} failed ({proc.returncode}): {proc.stderr[-3000:]}")


# Run as `python -c _CONVERT_VOCABS OPTIONS_JSON`: the converter's main()
# on each job's folder with --vocab-only, in one process.
_CONVERT_VOCABS = """
import json, sys
options = json.loads(sys.argv[1])
sys.path[:0] = options["path"]
sys.argv = ["convert_hf_to_gguf.py"]
import convert_hf_to_gguf as convert
import conversion.base
detect = conversion.base.TextModel.get_vocab_base_pre
for hf_dir, out, pre in options["jobs"]:
    conversion.base.TextModel.get_vocab_base_pre = detect if pre is None else (lambda self, tokenizer, pre=pre: pre)
    sys.argv = ["convert_hf_to_gguf.py", hf_dir, "--outfile", out, "--vocab-only"]
    convert.main()
"""


def convert_vocabs(jobs) -> None:
    """convert_hf_to_gguf.py --vocab-only on several folders in one process
    (its imports take seconds): jobs are (hf_dir, out_gguf, pre), pre as for
    convert() (None: the converter's own hash detection)."""
    src = source_dir()
    options = {"path": [src, os.path.join(src, "gguf-py"), _PYDEPS], "jobs": [list(j) for j in jobs]}
    proc = subprocess.run([sys.executable, "-c", _CONVERT_VOCABS, json.dumps(options)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"convert_hf_to_gguf.py --vocab-only failed ({proc.returncode}): {proc.stderr[-3000:]}")


@functools.lru_cache(maxsize=None)
def _llama():
    """The sdist's llama_cpp package bound to our libllama.so, its logging silenced."""
    stamp = _require()
    os.environ["LLAMA_CPP_LIB_PATH"] = _BIN
    sdist = os.path.dirname(os.path.dirname(stamp["source"]))  # SRC/vendor/llama.cpp -> SRC
    sys.path[:0] = [sdist, _PYDEPS]
    import llama_cpp
    llama_cpp.llama_backend_init()
    global _quiet  # kept alive here: the C side holds only the pointer
    _quiet = llama_cpp.llama_log_callback(lambda level, text, data: None)
    llama_cpp.llama_log_set(_quiet, None)
    return llama_cpp


@contextlib.contextmanager
def _context(gguf_path: str, n_ctx: int, threads: int, exact: bool, lora: str | None, lora_scale: float):
    """A model and a context with room for n_ctx tokens, all of them outputs."""
    L = _llama()
    model = L.llama_model_load_from_file(gguf_path.encode(), L.llama_model_default_params())
    if not model:
        raise RuntimeError(f"libllama could not load {gguf_path}")
    try:
        params = L.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = n_ctx
        params.n_threads = params.n_threads_batch = threads
        if exact:
            params.type_k = params.type_v = L.GGML_TYPE_F32
            params.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        ctx = L.llama_init_from_model(model, params)
        if not ctx:
            raise RuntimeError(f"libllama could not make a context of {n_ctx} tokens for {gguf_path}")
        try:
            if lora is not None:
                adapter = L.llama_adapter_lora_init(model, lora.encode())
                if not adapter:
                    raise RuntimeError(f"libllama could not load the LoRA adapter {lora}")
                if L.llama_set_adapters_lora(ctx, (L.llama_adapter_lora_p_ctypes * 1)(adapter), 1, (ctypes.c_float * 1)(lora_scale)):
                    raise RuntimeError(f"libllama could not apply the LoRA adapter {lora}")
            yield L, model, ctx
        finally:
            L.llama_free(ctx)
    finally:
        L.llama_model_free(model)


def _decode(L, ctx, token_ids, start: int) -> None:
    """Feeds token_ids at positions start.. of sequence 0, asking logits for each."""
    batch = L.llama_batch_init(len(token_ids), 0, 1)
    try:
        batch.n_tokens = len(token_ids)
        for i, tok in enumerate(token_ids):
            batch.token[i] = tok
            batch.pos[i] = start + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1
        rc = L.llama_decode(ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
    finally:
        L.llama_batch_free(batch)


def _row(L, model, ctx, i: int) -> np.ndarray:
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    return np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(n_vocab,)).copy()


def logits(gguf_path: str, token_ids, threads: int = 1, exact: bool = True,
           lora: str | None = None, lora_scale: float = 1.0) -> np.ndarray:
    """[T, V] float32: libllama's logits at every position of one sequence
    decoded in one batch.

    exact: an F32 KV cache and no flash attention, whose CPU kernel rounds
    through F16 even with an F32 cache (max |diff| to transformers ~1e-4
    instead of ~1e-7 on a tiny F32 model); False keeps llama.cpp's defaults
    (F16 cache, flash attention auto, i.e. on for the CPU)."""
    token_ids = [int(t) for t in token_ids]
    with _context(gguf_path, len(token_ids), threads, exact, lora, lora_scale) as (L, model, ctx):
        _decode(L, ctx, token_ids, 0)
        return np.stack([_row(L, model, ctx, i) for i in range(len(token_ids))])


def greedy(gguf_path: str, prompt_ids, n_new: int, threads: int = 1, exact: bool = True,
           lora: str | None = None, lora_scale: float = 1.0) -> list[int]:
    """n_new tokens by argmax (first index on ties), each fed back one at a
    time through the KV cache; EOS does not stop it. `exact` as for logits()."""
    prompt_ids = [int(t) for t in prompt_ids]
    out: list[int] = []
    with _context(gguf_path, len(prompt_ids) + n_new, threads, exact, lora, lora_scale) as (L, model, ctx):
        _decode(L, ctx, prompt_ids, 0)
        for _ in range(n_new):
            out.append(int(np.argmax(_row(L, model, ctx, -1))))
            _decode(L, ctx, out[-1:], len(prompt_ids) + len(out) - 1)
    return out


_TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64)


class _TypeTraits(ctypes.Structure):
    # struct ggml_type_traits in ggml.h
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p)]


class GGML:
    """libggml-base.so's reference quantizers: ggml_quantize_chunk (what
    llama-quantize calls per tensor) and the type traits' to_float. Type ids
    are ggml's (gguf.GGMLQuantizationType). Checks that ggml would GGML_ASSERT
    on (and abort the process) are made here first."""

    def __init__(self, path: str):
        lib = ctypes.CDLL(path)
        lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
        lib.ggml_get_type_traits.restype = ctypes.POINTER(_TypeTraits)
        lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
        lib.ggml_row_size.restype = ctypes.c_size_t
        lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
        lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
        lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                            ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        self.lib = lib

    def traits(self, type_id: int) -> _TypeTraits:
        return self.lib.ggml_get_type_traits(type_id).contents

    def row_size(self, type_id: int, n: int) -> int:
        return self.lib.ggml_row_size(type_id, n)

    def quantize(self, type_id: int, x: np.ndarray, imatrix: np.ndarray | None = None) -> bytes:
        """The bytes of x [rows, n_per_row] in type `type_id`; imatrix [n_per_row]
        weighs the error per column (required by some IQ types)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"quantize takes [rows, n_per_row], not shape {x.shape}")
        rows, n_per_row = x.shape
        if n_per_row % self.traits(type_id).blck_size:
            raise ValueError(f"row length {n_per_row} is not a multiple of {self.traits(type_id).type_name.decode()}'s "
                             f"block of {self.traits(type_id).blck_size}")
        if imatrix is None and self.lib.ggml_quantize_requires_imatrix(type_id):
            raise ValueError(f"{self.traits(type_id).type_name.decode()} needs an importance matrix")
        if imatrix is not None:
            imatrix = np.ascontiguousarray(imatrix, dtype=np.float32)
            if imatrix.shape != (n_per_row,):
                raise ValueError(f"imatrix must have shape ({n_per_row},), not {imatrix.shape}")
        dst = ctypes.create_string_buffer(rows * self.row_size(type_id, n_per_row))
        written = self.lib.ggml_quantize_chunk(type_id, x.ctypes.data, dst, 0, rows, n_per_row,
                                               None if imatrix is None else imatrix.ctypes.data)
        return dst.raw[:written]

    def dequantize(self, type_id: int, data: bytes, n: int) -> np.ndarray:
        """n float32 values from `data` in type `type_id` (to_float, as the CPU backend reads them)."""
        traits = self.traits(type_id)
        if n % traits.blck_size or len(data) != self.row_size(type_id, n):
            raise ValueError(f"{len(data)} bytes are not {n} values of {traits.type_name.decode()}")
        if not traits.to_float:
            raise ValueError(f"{traits.type_name.decode()} has no to_float")
        out = np.empty(n, dtype=np.float32)
        src = ctypes.create_string_buffer(bytes(data), len(data))
        _TO_FLOAT(traits.to_float)(src, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), n)
        return out


@functools.lru_cache(maxsize=None)
def libggml() -> GGML:
    _require()
    return GGML(os.path.join(_BIN, "libggml-base.so"))
