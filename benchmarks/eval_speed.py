"""Evaluation speed on a SmolLM-135M-shaped Llama (random weights): the eval
forward pass (batch 8 x 512) and greedy decoding (batch 1, 128 new tokens
after a 128-token prompt), tinylm next to transformers on PyTorch (forward
under inference_mode; `generate` with its KV cache), same threads and shapes,
in one run.

    python benchmarks/eval_speed.py [--threads 2] [--batch 8] [--seq 512] [--prompt 128] [--new 128] [--steps 2]

Cases, each in its own process:
  forward  logits [B, T, V] for a batch (tinylm Model.forward; transformers model(ids).logits)
  score    tinylm's evaluation path (Model.token_logprobs: perplexity and multiple choice)
  decode   greedy generation through the KV cache; tokens/s counts new tokens over the whole call
"""
from __future__ import annotations

import argparse
import json

from harness import ratio, run_case, time_steps

SMOLLM_135M = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 49152, "hidden_size": 576,
    "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True,
    "hidden_act": "silu", "initializer_range": 0.02,
}


def ids(rows: int, length: int):
    import numpy as np
    return np.random.default_rng(0).integers(0, SMOLLM_135M["vocab_size"], size=(rows, length)).astype(np.int64)


class FixedPrompt:
    """A tokenizer stand-in: every prompt is the same fixed ids; no EOS, so
    every run generates exactly the requested tokens."""
    eos_token_id = None

    def __init__(self, prompt_ids):
        self.prompt_ids = [int(i) for i in prompt_ids]

    def encode(self, text, add_special_tokens=True):
        return self.prompt_ids

    def decode(self, ids, skip_special_tokens=False):
        return ""


def tinylm_model(args):
    import tinylm
    tinylm.set_num_threads(args.threads)
    return tinylm.Model.from_config(SMOLLM_135M, seed=0)


def torch_model(args):
    import torch
    import transformers
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**{k: v for k, v in SMOLLM_135M.items()
                                         if k not in ("architectures", "model_type")})
    model = transformers.LlamaForCausalLM(config).float().eval()  # sdpa attention, transformers' default
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def tinylm_forward(args) -> dict:
    model, batch = tinylm_model(args), ids(args.batch, args.seq)
    return time_steps(lambda: model.forward(batch), args.steps, args.batch * args.seq)


def tinylm_score(args) -> dict:
    model, batch = tinylm_model(args), ids(args.batch, args.seq)
    return time_steps(lambda: model.token_logprobs(batch, batch), args.steps, args.batch * args.seq)


def torch_forward(args) -> dict:
    import torch
    model, batch = torch_model(args), torch.from_numpy(ids(args.batch, args.seq))

    def step():
        with torch.inference_mode():
            model(input_ids=batch).logits
    return time_steps(step, args.steps, args.batch * args.seq)


def tinylm_decode(args) -> dict:
    model, tok = tinylm_model(args), FixedPrompt(ids(1, args.prompt)[0])

    def step():
        out = model.generate(tok, "prompt", max_new_tokens=args.new, return_details=True)
        assert len(out.token_ids) == args.new
    return time_steps(step, args.steps, args.new)


def torch_decode(args) -> dict:
    import torch
    model, prompt = torch_model(args), torch.from_numpy(ids(1, args.prompt))

    def step():
        with torch.inference_mode():
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=args.new,
                                 do_sample=False, use_cache=True)
        assert out.shape[1] == args.prompt + args.new
    return time_steps(step, args.steps, args.new)


CASES = {"tinylm-forward": tinylm_forward, "torch-forward": torch_forward, "tinylm-score": tinylm_score,
         "tinylm-decode": tinylm_decode, "torch-decode": torch_decode}
PAIRS = [("forward", "tinylm-forward", "torch-forward"), ("score", "tinylm-score", "torch-forward"),
         ("decode", "tinylm-decode", "torch-decode")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ", ".join(CASES))
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(CASES[args.case](args)))
        return
    passthrough = [f"--{k}={getattr(args, k)}" for k in ("threads", "batch", "seq", "prompt", "new", "steps")]
    results = {}
    for case in args.cases.split(","):
        results[case] = run_case(__file__, case, passthrough, args.threads)
        print(f"  {case}: {results[case]}", flush=True)
    print(f"\nSmolLM-135M shape, {args.threads} threads, best of {args.steps}: forward/score on batch {args.batch} x "
          f"{args.seq}; decode batch 1, {args.new} new tokens after a {args.prompt}-token prompt (greedy)")
    print(f"{'':16} {'tokens/s':>9} {'peak RSS MB':>12}")
    for case, r in results.items():
        if "error" in r:
            print(f"{case:16} failed: {r['error']}")
        else:
            print(f"{case:16} {r['tokens_per_s']:9.1f} {r['peak_rss_mb']:12.0f}")
    for name, ours, theirs in PAIRS:
        if ours in results and theirs in results:
            print(f"{name:8} tinylm/torch: tokens/s {ratio(results[ours], results[theirs], 'tokens_per_s')}, "
                  f"peak RSS {ratio(results[ours], results[theirs], 'peak_rss_mb')}")


if __name__ == "__main__":
    main()
