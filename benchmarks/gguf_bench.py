"""GGUF files in tinylm, next to the same model's safetensors and to llama.cpp:
load time and peak RSS, a LoRA step on a Q4_K_M and a Q8_0 base against the
f32 base, and greedy decode tokens/s against llama-bench on the same file.

    python benchmarks/gguf_bench.py [--threads 2] [--batch 1] [--seq 512] [--steps 2] [--new 128]

The model is SmolLM-135M's shape (random weights) with Mistral's tokenizer
(32000 ids, so llama.cpp has a vocabulary), written by llama.cpp's own
converter (F32) and llama-quantize (Q8_0, Q4_K_M): the files people hold.
Needs the llama.cpp build (make test-llamacpp). Each case runs in its own
process.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from harness import peak_rss_mb, run_selected, time_steps, tinylm_train_step

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
SMOLLM_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                   num_key_value_heads=3, max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
                   tie_word_embeddings=True, initializer_range=0.02)
TYPES = ["F32", "Q8_0", "Q4_K_M"]


def files(root: str) -> dict:
    """{"hf": folder, "F32"/"Q8_0"/"Q4_K_M": .gguf}, made once under root."""
    import llamacpp_ref
    out = {"hf": os.path.join(root, "hf"), **{t: os.path.join(root, f"model-{t}.gguf") for t in TYPES}}
    if all(os.path.exists(p) for p in out.values()):
        return out
    import torch
    import transformers
    from fixture_paths import tokenizer_fixture
    tok = transformers.PreTrainedTokenizerFast.from_pretrained(tokenizer_fixture("mistral-7b"))
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                      eos_token_id=tok.eos_token_id, **SMOLLM_135M)
    transformers.LlamaForCausalLM(config).save_pretrained(out["hf"])
    tok.save_pretrained(out["hf"])
    llamacpp_ref.convert(out["hf"], out["F32"], merge_scores=True)
    for t in TYPES[1:]:
        llamacpp_ref.quantize(out["F32"], out[t], t, threads=2)
    return out


def load_case(args, which: str) -> dict:
    import tinylm
    tinylm.set_num_threads(args.threads)
    path = files(args.root)[which]
    t0 = time.perf_counter()
    model = tinylm.Model.from_pretrained(path)
    seconds = time.perf_counter() - t0
    return {"load_s": seconds, "peak_rss_mb": peak_rss_mb(), "file_mb": _size_mb(path), "quant": model.quant}


def lora_case(args, which: str) -> dict:
    import numpy as np
    import tinylm
    tinylm.set_num_threads(args.threads)
    path = files(args.root)[which]
    model = tinylm.Model.from_pretrained(path)
    model.add_lora(r=16, alpha=32, target_modules="all-linear")
    opt = tinylm.AdamW(model, lr=1e-4)
    ids = np.random.default_rng(0).integers(0, model.config["vocab_size"], size=(args.batch, args.seq))
    step = tinylm_train_step(model, opt, ids, ids.copy())
    return time_steps(step, args.steps, args.batch * args.seq, file_mb=_size_mb(path), quant=model.quant)


def decode_case(args, which: str) -> dict:
    import numpy as np
    import tinylm
    tinylm.set_num_threads(args.threads)
    model = tinylm.Model.from_pretrained(files(args.root)[which])
    prompt = np.random.default_rng(1).integers(3, model.config["vocab_size"], size=128).tolist()
    model.generate_ids([prompt[:8]], max_new_tokens=8, eos=[])  # warm-up
    t0 = time.perf_counter()
    model.generate_ids([prompt], max_new_tokens=1, eos=[])  # the prompt's prefill and one token
    prefill = time.perf_counter() - t0
    t0 = time.perf_counter()
    new = model.generate_ids([prompt], max_new_tokens=args.new, eos=[])[0]
    seconds = time.perf_counter() - t0
    # decode alone, as llama-bench's tg test times it
    return {"tokens_per_s": (len(new) - 1) / (seconds - prefill), "prefill_s": prefill, "peak_rss_mb": peak_rss_mb()}


def llama_bench_case(args, which: str) -> dict:
    import llamacpp_ref
    rows = llamacpp_ref.bench(files(args.root)[which], args.threads, 128, args.new, repetitions=2)
    gen = [r for r in rows if r.get("n_gen", 0) > 0][0]
    return {"tokens_per_s": gen["avg_ts"]}


def _size_mb(path: str) -> float:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)) / 1e6
    return os.path.getsize(path) / 1e6


CASES = {"load-safetensors": lambda a: load_case(a, "hf")}
for _t in TYPES:
    CASES[f"load-{_t}"] = lambda a, t=_t: load_case(a, t)
CASES["lora-safetensors"] = lambda a: lora_case(a, "hf")
for _t in TYPES[1:]:
    CASES[f"lora-{_t}"] = lambda a, t=_t: lora_case(a, t)
for _t in TYPES:
    CASES[f"decode-{_t}"] = lambda a, t=_t: decode_case(a, t)
    CASES[f"llama-bench-{_t}"] = lambda a, t=_t: llama_bench_case(a, t)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--root", default=os.path.join("out", "gguf_bench"), help="where the model files go")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ", ".join(CASES))
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.case:
        import llamacpp_ref
        if llamacpp_ref.skip_reason():
            sys.exit(llamacpp_ref.skip_reason())
        files(args.root)
    results = run_selected(__file__, args, CASES, ["threads", "batch", "seq", "steps", "new", "root"])
    if results is None:
        return
    base = results.get("lora-safetensors", {})
    print(f"\nSmolLM-135M shape (vocab 32000), {args.threads} threads")
    for case, r in results.items():
        extra = ""
        if case.startswith("lora-") and "tokens_per_s" in r and "tokens_per_s" in base:
            extra = f"  ({r['tokens_per_s'] / base['tokens_per_s']:.2f}x the f32 base)"
        print(f"{case:22} {r}{extra}")
    for t in TYPES:
        ours, theirs = results.get(f"decode-{t}", {}), results.get(f"llama-bench-{t}", {})
        if "tokens_per_s" in ours and "tokens_per_s" in theirs:
            print(f"decode {t}: tinylm {ours['tokens_per_s']:.1f} tok/s, llama.cpp {theirs['tokens_per_s']:.1f} "
                  f"tok/s: {ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
