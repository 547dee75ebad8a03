"""Writes the seed corpora of the libFuzzer harnesses (seeds/<harness>/) from
real files, small enough that each seed parses in well under a millisecond:

- fuzz_safetensors: model.safetensors saved by transformers for tiny random
  Llama and Qwen2 configs (F32, BF16, F16), by tinylm's writer, a header with
  __metadata__, and the empty file {}.
- fuzz_gguf: GGUF files written by the gguf package (llama.cpp's writer)
  with a value of every type and a tensor of every block type tinylm reads,
  by tinylm's writer, and a vocabulary-only file.
- fuzz_tokenizer_load: the demo model's tokenizer.json and every pipeline
  variant tests/test_tokenizer.py builds from the real fixtures (Qwen3
  byte-level, Mistral SentencePiece), each cut to its first 600 ids, with
  their tokenizer_config.json after the harness's separator.
- fuzz_tokenizer_encode: the tokenizer tests' corpus, once per tokenizer.
- fuzz_cache: token caches written by tinylm (empty, small, many examples).
- fuzz_model_config: the demo model's and tiny test configs, encoded as the
  harness reads them.

Run from the repository root with the test dependencies installed:
    python tests/c/fuzz/make_seeds.py
It needs the fixtures (TINYLM_FIXTURES or ../shared/fixtures).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from fixture_paths import FIXTURES  # noqa: E402
from tinylm import _core  # noqa: E402
from tokenizer_corpus import corpus  # noqa: E402

SEEDS = os.path.join(HERE, "seeds")
DEMO = os.path.join(ROOT, "tinylm", "models", "demo")
CONFIG_SEPARATOR = b"\n\x01tokenizer_config.json\x01\n"   # as fuzz_tokenizer_load.c
KEEP_IDS = 600


def put(harness: str, data: bytes) -> None:
    folder = os.path.join(SEEDS, harness)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def tiny_configs() -> list:
    common = dict(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    return [transformers.LlamaConfig(**common),
            transformers.LlamaConfig(**common, tie_word_embeddings=True, attention_bias=True, head_dim=8),
            transformers.Qwen2Config(**common)]


def safetensors_seeds() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for i, cfg in enumerate(tiny_configs()):
            torch.manual_seed(i)
            model = transformers.AutoModelForCausalLM.from_config(cfg)
            for dtype in (torch.float32, torch.bfloat16, torch.float16):
                out = os.path.join(tmp, f"{i}-{dtype}")
                model.to(dtype).save_pretrained(out, safe_serialization=True)
                with open(os.path.join(out, "model.safetensors"), "rb") as f:
                    put("fuzz_safetensors", f.read())
        path = os.path.join(tmp, "tinylm.safetensors")
        entries = [("a", "F32", (2, 3), np.arange(6, dtype=np.float32)),
                   ("empty", "F32", (0,), np.zeros(0, dtype=np.float32)),
                   ("b", "BF16", (4,), np.ones(4, dtype=np.float32))]
        _core.write_safetensors(path, entries, {"format": "pt", "note": "seed"})
        with open(path, "rb") as f:
            put("fuzz_safetensors", f.read())
    put("fuzz_safetensors", struct.pack("<Q", 8) + b"{}      ")


def gguf_seeds() -> None:
    import gguf

    from tinylm.gguf.file import write_gguf

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for k, kinds in enumerate((["F32", "F16", "BF16", "Q8_0", "Q4_0"], ["Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K"],
                                   ["Q4_K", "Q5_K", "Q6_K"])):
            path = os.path.join(tmp, f"{k}.gguf")
            w = gguf.GGUFWriter(path, "llama")
            w.add_uint32("llama.block_count", 1)
            w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
            w.add_bool("tokenizer.ggml.add_bos_token", True)
            w.add_array("tokenizer.ggml.tokens", ["<s>", "a", "\u00e9"])
            w.add_array("tokenizer.ggml.scores", [0.0, -1.0, -2.0])
            w.add_int64("x.i64", -7)
            w.add_uint64("x.u64", 7)
            w.add_float64("x.f64", 0.5)
            for kind in kinds:
                qtype = gguf.GGMLQuantizationType[kind]
                block = gguf.GGML_QUANT_SIZES[qtype][0]
                x = rng.normal(size=(2, 256 if block == 256 else 64)).astype(np.float32)
                if kind in ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"):
                    data = gguf.quants.quantize(x, qtype)
                else:  # the package cannot quantize these: valid-sized blocks of random bytes
                    data = rng.integers(0, 256, size=(2, gguf.GGML_QUANT_SIZES[qtype][1]), dtype=np.uint8)
                w.add_tensor(kind.lower(), np.ascontiguousarray(data).view(np.uint8).reshape(2, -1), raw_dtype=qtype)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
            w.close()
            with open(path, "rb") as f:
                put("fuzz_gguf", f.read())
        path = os.path.join(tmp, "tinylm.gguf")
        write_gguf(path, [("general.architecture", "qwen2"), ("a", [1, 2]), ("b", ["x", ""])],
                   [("t", 0, (2, 4), np.arange(8, dtype=np.float32))], alignment=64)
        with open(path, "rb") as f:
            put("fuzz_gguf", f.read())
        write_gguf(path, [("general.architecture", "llama"), ("tokenizer.ggml.model", "gpt2")], [])
        with open(path, "rb") as f:
            put("fuzz_gguf", f.read())


def shrink(tok: dict) -> dict:
    """The tokenizer with its first KEEP_IDS model ids and the merges among them."""
    tok = copy.deepcopy(tok)
    model = tok["model"]
    model["vocab"] = {s: i for s, i in model["vocab"].items() if i < KEEP_IDS}
    merges = []
    for m in model["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in model["vocab"] and b in model["vocab"] and a + b in model["vocab"]:
            merges.append(m)
    model["merges"] = merges
    return tok


def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def tokenizer_seeds() -> None:
    import test_tokenizer  # the pipeline variants the tokenizer tests compare with `tokenizers`

    def load_seed(tok: dict, config: dict | None) -> None:
        data = json.dumps(tok, ensure_ascii=False).encode()
        if config is not None:
            data += CONFIG_SEPARATOR + json.dumps(config, ensure_ascii=False).encode()
        put("fuzz_tokenizer_load", data)

    demo_config = read_json(os.path.join(DEMO, "tokenizer_config.json"))
    demo_config.pop("chat_template", None)   # read by Python, not the C loader
    load_seed(shrink(read_json(os.path.join(DEMO, "tokenizer.json"))), demo_config)
    fixtures = {}
    for name in ("qwen3", "mistral-7b"):
        folder = os.path.join(FIXTURES, "tokenizers", name)
        config = read_json(os.path.join(folder, "tokenizer_config.json"))
        config.pop("chat_template", None)
        fixtures[name] = (shrink(read_json(os.path.join(folder, "tokenizer.json"))), config)
        load_seed(*fixtures[name])
    variants = test_tokenizer.build_variants(fixtures["qwen3"][0], fixtures["mistral-7b"][0])
    for name, (tok, _, _) in variants.items():
        load_seed(tok, {"add_bos_token": True, "bos_token": "<s>"} if name.startswith("unk") else None)

    # The encode harness's first byte picks the tokenizer (byte % count) and
    # adds special tokens when bit 4 is set.
    texts = [t for t in corpus(test_tokenizer.MISTRAL_SPECIALS + test_tokenizer.QWEN_SPECIALS[:3]) if len(t) < 2000]
    for k, text in enumerate(texts[::2]):
        put("fuzz_tokenizer_encode", bytes([k % 3 | (k & 1) << 4]) + text.encode())


def cache_seeds() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for k, lengths in enumerate(([], [3], [1, 0, 5, 2], [7] * 40)):
            path = os.path.join(tmp, f"{k}.h5")
            writer = _core.cache_create(path)
            writer.set_attr("key", f"seed-{k}")
            if lengths:
                n = sum(lengths)
                writer.append(np.arange(n, dtype=np.int32), (np.arange(n) % 2).astype(np.uint8),
                              np.array(lengths, dtype=np.int64), np.arange(1, len(lengths) + 1, dtype=np.int64))
            writer.commit()
            with open(path, "rb") as f:
                put("fuzz_cache", f.read())


def config_seed(d: dict, weights: int) -> bytes:
    """Encodes a block descriptor (tinylm.families) as fuzz_model_config.c reads it."""
    def num(v):
        return bytes([v]) if 0 <= v < 0xF0 else b"\xf0" + struct.pack("<q", v)

    def f32(*xs):
        return b"".join(struct.pack("<f", x) for x in xs)

    bits = [(d["names"], 0), (weights, 3), (d["tie_word_embeddings"], 5), (d["qkv_bias"] | d["mlp_bias"], 6),
            (d["norm_kind"], 7), (d["norm_bias"] | d["lm_head_bias"], 8), (d["sandwich_norms"], 9),
            (d["parallel_residual"], 10), (d["qk_norm"], 11), (1 - d["gated"], 13), (d["fused_qkv"], 14),
            (d["act"] & 1, 15)]
    out = struct.pack("<H", sum(v << at for v, at in bits))
    out += b"".join(num(d[k]) for k in ("vocab_size", "hidden_size", "intermediate_size", "n_layers", "n_heads",
                                         "n_kv_heads", "head_dim", "rotary_dim", "sliding_window"))
    out += num(d["padding_idx"] + 1)
    out += f32(d["norm_eps"], d["norm_offset"], d["attn_scale"], d["attn_softcap"], d["final_softcap"],
               d["embed_scale"])
    out += bytes([d["rope"][0]["type"] | d["rope"][1]["type"] << 2])
    for r in d["rope"]:
        out += f32(r["theta"], r["factor"], r["low_freq_factor"], r["high_freq_factor"])
        out += num(r["original_max_position"]) + f32(r["attention_factor"], (r["short_factor"] or [1.0])[0])
    flags = d["layer_flags"]
    return out + bytes([sum((flags[l % len(flags)] & 3) << (2 * l) for l in range(4))])


def model_config_seeds() -> None:
    from hf_models import FAMILY_CONFIGS, build
    from tinylm import families

    configs = [read_json(os.path.join(DEMO, "config.json"))] + [c.to_dict() for c in tiny_configs()]
    configs += [build(name).config.to_dict() for name in FAMILY_CONFIGS]
    for c in configs:
        d = families.descriptor(c)
        for weights in (0, 1, 2):   # f32, nf4, int8
            put("fuzz_model_config", config_seed(d, weights))


def main() -> None:
    shutil.rmtree(SEEDS, ignore_errors=True)
    safetensors_seeds()
    gguf_seeds()
    tokenizer_seeds()
    cache_seeds()
    model_config_seeds()
    for harness in sorted(os.listdir(SEEDS)):
        files = os.listdir(os.path.join(SEEDS, harness))
        size = sum(os.path.getsize(os.path.join(SEEDS, harness, f)) for f in files)
        print(f"{harness}: {len(files)} seeds, {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
