"""One full training step (forward, loss, backward, AdamW) of a ~30M-parameter
Llama config: tinylm against transformers on PyTorch, same threads and shapes,
in one run. Each side runs in its own process so peak RSS is its own.

    python benchmarks/train_step.py [--threads 2] [--batch 4] [--seq 256] [--steps 5]

Prints tokens/s, peak RSS and the ratios tinylm / PyTorch.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

# ~31M parameters: vocab 32000 (tied, 12.3M) + 12 layers of 1.57M.
CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000, "hidden_size": 384,
    "intermediate_size": 1024, "num_hidden_layers": 12, "num_attention_heads": 6, "num_key_value_heads": 2,
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True,
    "hidden_act": "silu", "initializer_range": 0.02,
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def batch(args):
    import numpy as np
    rng = np.random.default_rng(0)
    ids = rng.integers(0, CONFIG["vocab_size"], size=(args.batch, args.seq)).astype(np.int64)
    return ids, ids.copy()


def run_tinylm(args) -> dict:
    import tinylm
    tinylm.set_num_threads(args.threads)
    model = tinylm.Model.from_config(CONFIG, seed=0)
    opt = tinylm.AdamW(model, lr=1e-4)
    ids, labels = batch(args)

    def step():
        model.zero_grad()
        loss = model.loss(ids, labels)
        model.backward()
        opt.step()
        return loss

    return time_steps(step, args, model.num_parameters())


def run_torch(args) -> dict:
    import torch
    import transformers
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**{k: v for k, v in CONFIG.items() if k not in ("architectures", "model_type")})
    model = transformers.LlamaForCausalLM(config).float().train()  # default attention: sdpa
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids, labels = (torch.from_numpy(a) for a in batch(args))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        return loss.item()

    return time_steps(step, args, sum(p.numel() for p in model.parameters()))


def time_steps(step, args, n_params) -> dict:
    step()  # warm-up: plans memory, faults pages in
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"params": n_params, "step_s": best, "tokens_per_s": args.batch * args.seq / best,
            "peak_rss_mb": peak_rss_mb(), "loss": float(loss)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--side", choices=["tinylm", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(run_tinylm(args) if args.side == "tinylm" else run_torch(args)))
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    results = {}
    for side in ("tinylm", "torch"):
        cmd = [sys.executable, __file__, "--side", side] + [f"--{k}={getattr(args, k)}" for k in
                                                           ("threads", "batch", "seq", "steps")]
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        results[side] = json.loads(out.strip().splitlines()[-1])
    ours, theirs = results["tinylm"], results["torch"]
    print(f"Llama {ours['params'] / 1e6:.1f}M params, batch {args.batch} x seq {args.seq}, "
          f"{args.threads} threads, full step (fwd + loss + bwd + AdamW), best of {args.steps}")
    print(f"{'':10} {'tokens/s':>10} {'step s':>8} {'peak RSS MB':>12}")
    for side in ("tinylm", "torch"):
        r = results[side]
        print(f"{side:10} {r['tokens_per_s']:10.0f} {r['step_s']:8.3f} {r['peak_rss_mb']:12.0f}")
    print(f"ratio tinylm/torch: tokens/s {ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}x, "
          f"peak RSS {ours['peak_rss_mb'] / theirs['peak_rss_mb']:.2f}x")


if __name__ == "__main__":
    main()
