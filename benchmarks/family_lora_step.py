"""One LoRA step (r=16 on every linear layer: forward, loss, backward, AdamW)
on Qwen3-0.6B- and Gemma-3-270M-shaped random models: tinylm next to
transformers + PEFT on PyTorch, same threads and shapes, in one run.

    python benchmarks/family_lora_step.py [--models qwen3-0.6b,gemma3-270m] [--threads 2] [--batch 4]
                                          [--seq 512] [--steps 2] [--rank 16]

Each case runs in its own process (benchmarks/harness.py); prints tokens/s,
peak RSS and the ratios tinylm / PyTorch.
"""
from __future__ import annotations

import argparse

from harness import ratio, run_case, time_steps, tinylm_train_step, torch_train_step

# The published configs' shapes (Qwen/Qwen3-0.6B, google/gemma-3-270m), weights random.
MODELS = {
    "qwen3-0.6b": {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 151936, "hidden_size": 1024,
        "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
        "head_dim": 128, "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": True, "hidden_act": "silu", "attention_bias": False, "initializer_range": 0.02,
    },
    "gemma3-270m": {
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": 262144,
        "hidden_size": 640, "intermediate_size": 2048, "num_hidden_layers": 18, "num_attention_heads": 4,
        "num_key_value_heads": 1, "head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 512,
        "layer_types": ["full_attention" if (l + 1) % 6 == 0 else "sliding_attention" for l in range(18)],
        "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": True,
        "pad_token_id": 0, "initializer_range": 0.02,
    },
}


def batch(args, config):
    import numpy as np
    g = np.random.default_rng(0)
    ids = g.integers(1, config["vocab_size"], size=(args.batch, args.seq)).astype(np.int64)
    return ids, ids.copy()


def tinylm_case(args) -> dict:
    import tinylm
    tinylm.set_num_threads(args.threads)
    config = MODELS[args.model]
    model = tinylm.Model.from_config(config, seed=0)
    model.add_lora(r=args.rank, alpha=2 * args.rank, target_modules="all-linear")
    opt = tinylm.AdamW(model, lr=1e-4)
    ids, labels = batch(args, config)
    step = tinylm_train_step(model, opt, ids, labels)
    return time_steps(step, args.steps, args.batch * args.seq, trainable=model.num_parameters(trainable_only=True))


def torch_case(args) -> dict:
    import peft
    import torch
    import transformers
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model(**{k: v for k, v in MODELS[args.model].items() if k != "architectures"})
    model = transformers.AutoModelForCausalLM.from_config(config).float()  # sdpa where the family supports it
    model = peft.get_peft_model(model, peft.LoraConfig(r=args.rank, lora_alpha=2 * args.rank,
                                                       target_modules="all-linear", task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids, labels = (torch.from_numpy(a) for a in batch(args, MODELS[args.model]))
    step = torch_train_step(model, opt, ids, labels)
    return time_steps(step, args.steps, args.batch * args.seq,
                      trainable=sum(p.numel() for p in model.parameters() if p.requires_grad))


CASES = {"tinylm": tinylm_case, "torch": torch_case}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--model", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        import json
        print(json.dumps(CASES[args.case](args)))
        return
    import tinylm  # the children inherit TINYLM_ISA, so they load the same build
    print(f"  tinylm kernels: {tinylm.isa()}", flush=True)
    passthrough = [f"--{k}={getattr(args, k)}" for k in ("threads", "batch", "seq", "steps", "rank")]
    for name in args.models.split(","):
        results = {case: run_case(__file__, case, passthrough + [f"--model={name}"], args.threads) for case in CASES}
        print(f"\n{name} shape, batch {args.batch} x seq {args.seq}, LoRA r={args.rank} on all linear layers, "
              f"{args.threads} threads, best of {args.steps} steps (fwd + loss + bwd + AdamW)")
        for case, r in results.items():
            if "error" in r:
                print(f"  {case:8} failed: {r['error']}")
            else:
                print(f"  {case:8} {r['tokens_per_s']:9.0f} tokens/s {r['peak_rss_mb']:8.0f} MB peak RSS "
                      f"{r['trainable']:10d} trainable")
        print(f"  tinylm/torch: tokens/s {ratio(results['tinylm'], results['torch'], 'tokens_per_s')}, "
              f"peak RSS {ratio(results['tinylm'], results['torch'], 'peak_rss_mb')}", flush=True)


if __name__ == "__main__":
    main()
