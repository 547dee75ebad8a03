"""One full training step (forward, loss, backward, AdamW) of a ~30M-parameter
Llama config: tinylm against transformers on PyTorch, same threads and shapes,
in one run. Each side runs in its own process so peak RSS is its own.

    python benchmarks/train_step.py [--threads 2] [--batch 4] [--seq 256] [--steps 5]

Prints tokens/s, peak RSS and the ratios tinylm / PyTorch.
"""
from __future__ import annotations

import argparse
import json

from harness import ratio, run_case, time_steps, tinylm_train_step, torch_train_step

# ~31M parameters: vocab 32000 (tied, 12.3M) + 12 layers of 1.57M.
CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000, "hidden_size": 384,
    "intermediate_size": 1024, "num_hidden_layers": 12, "num_attention_heads": 6, "num_key_value_heads": 2,
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True,
    "hidden_act": "silu", "initializer_range": 0.02,
}


def batch(args):
    import numpy as np
    ids = np.random.default_rng(0).integers(0, CONFIG["vocab_size"], size=(args.batch, args.seq)).astype(np.int64)
    return ids, ids.copy()


def run_tinylm(args) -> dict:
    import tinylm
    tinylm.set_num_threads(args.threads)
    model = tinylm.Model.from_config(CONFIG, seed=0)
    opt = tinylm.AdamW(model, lr=1e-4)
    ids, labels = batch(args)

    step = tinylm_train_step(model, opt, ids, labels)
    return time_steps(step, args.steps, args.batch * args.seq, params=model.num_parameters())


def run_torch(args) -> dict:
    import torch
    import transformers
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**{k: v for k, v in CONFIG.items() if k not in ("architectures", "model_type")})
    model = transformers.LlamaForCausalLM(config).float().train()  # default attention: sdpa
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids, labels = (torch.from_numpy(a) for a in batch(args))

    step = torch_train_step(model, opt, ids, labels)
    return time_steps(step, args.steps, args.batch * args.seq, params=sum(p.numel() for p in model.parameters()))


CASES = {"tinylm": run_tinylm, "torch": run_torch}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(CASES[args.case](args)))
        return
    passthrough = [f"--{k}={getattr(args, k)}" for k in ("threads", "batch", "seq", "steps")]
    results = {case: run_case(__file__, case, passthrough, args.threads) for case in CASES}
    ours, theirs = results["tinylm"], results["torch"]
    print(f"Llama {ours.get('params', 0) / 1e6:.1f}M params, batch {args.batch} x seq {args.seq}, "
          f"{args.threads} threads, full step (fwd + loss + bwd + AdamW), best of {args.steps}")
    print(f"{'':10} {'tokens/s':>10} {'step s':>8} {'peak RSS MB':>12}")
    for case, r in results.items():
        if "error" in r:
            print(f"{case:10} failed: {r['error']}")
        else:
            print(f"{case:10} {r['tokens_per_s']:10.0f} {r['step_s']:8.3f} {r['peak_rss_mb']:12.0f}")
    print(f"ratio tinylm/torch: tokens/s {ratio(ours, theirs, 'tokens_per_s')}, "
          f"peak RSS {ratio(ours, theirs, 'peak_rss_mb')}")


if __name__ == "__main__":
    main()
