"""One fine-tuning step (forward, loss, backward, AdamW) on a SmolLM-135M-shaped
Llama (random weights): tinylm's LoRA, QLoRA (NF4 base) and full fine-tuning
next to transformers + PEFT on PyTorch, same threads and shapes, in one run.

    python benchmarks/finetune_step.py [--threads 2] [--batch 4] [--seq 512] [--steps 3] [--rank 16]

Each case runs in its own process; prints tokens/s, peak RSS, the bytes the
base weights take, and the ratios tinylm / PyTorch.
"""
from __future__ import annotations

import argparse
import json

from harness import ratio, run_case, time_steps, tinylm_train_step, torch_train_step

SMOLLM_135M = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 49152, "hidden_size": 576,
    "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True,
    "hidden_act": "silu", "initializer_range": 0.02,
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def batch(args):
    import numpy as np
    g = np.random.default_rng(0)
    ids = g.integers(0, SMOLLM_135M["vocab_size"], size=(args.batch, args.seq)).astype(np.int64)
    return ids, ids.copy()


def tinylm_case(args, quant=None, lora=True, checkpointing=False) -> dict:
    import tinylm
    tinylm.set_num_threads(args.threads)
    model = tinylm.Model.from_config(SMOLLM_135M, seed=0, quant=quant)
    if lora:
        model.add_lora(r=args.rank, alpha=2 * args.rank, target_modules=TARGETS)
    if checkpointing:
        model.gradient_checkpointing_enable()
    opt = tinylm.AdamW(model, lr=1e-4)
    ids, labels = batch(args)

    step = tinylm_train_step(model, opt, ids, labels)
    base_bytes = sum(model._core.param_bytes(i) for i, n in enumerate(model.parameter_names()) if ".lora_" not in n)
    return time_steps(step, args.steps, args.batch * args.seq, base_mb=base_bytes / 1e6,
                      trainable=model.num_parameters(trainable_only=True))


def torch_case(args, lora=True, quant=None) -> dict:
    import torch
    import transformers
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**{k: v for k, v in SMOLLM_135M.items()
                                         if k not in ("architectures", "model_type")})
    model = transformers.LlamaForCausalLM(config).float()  # sdpa attention, transformers' default
    if quant == "nf4":  # the HF QLoRA stack: bitsandbytes Linear4bit (its CPU backend)
        import bitsandbytes as bnb
        import tempfile
        from peft import prepare_model_for_kbit_training
        with tempfile.TemporaryDirectory() as d:
            model.save_pretrained(d)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                d, quantization_config=transformers.BitsAndBytesConfig(
                    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                    bnb_4bit_compute_dtype=torch.float32), dtype=torch.float32)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    if lora:
        import peft
        model = peft.get_peft_model(model, peft.LoraConfig(r=args.rank, lora_alpha=2 * args.rank,
                                                           target_modules=TARGETS, task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids, labels = (torch.from_numpy(a) for a in batch(args))

    step = torch_train_step(model, opt, ids, labels)
    base_bytes = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "lora_" not in n)
    return time_steps(step, args.steps, args.batch * args.seq, base_mb=base_bytes / 1e6,
                      trainable=sum(p.numel() for p in model.parameters() if p.requires_grad))


CASES = {
    "tinylm-lora": lambda a: tinylm_case(a),
    "torch-lora": lambda a: torch_case(a),
    "tinylm-qlora": lambda a: tinylm_case(a, quant="nf4"),
    "torch-qlora": lambda a: torch_case(a, quant="nf4"),
    "tinylm-full": lambda a: tinylm_case(a, lora=False),
    "torch-full": lambda a: torch_case(a, lora=False),
    "tinylm-lora-ckpt": lambda a: tinylm_case(a, checkpointing=True),
}
PAIRS = [("lora", "tinylm-lora", "torch-lora"), ("qlora", "tinylm-qlora", "torch-qlora"),
         ("full", "tinylm-full", "torch-full")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ", ".join(CASES))
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(CASES[args.case](args)))
        return
    passthrough = [f"--{k}={getattr(args, k)}" for k in ("threads", "batch", "seq", "steps", "rank")]
    results = {}
    for case in args.cases.split(","):
        results[case] = run_case(__file__, case, passthrough, args.threads)
        print(f"  {case}: {results[case]}", flush=True)
    print(f"\nSmolLM-135M shape, batch {args.batch} x seq {args.seq}, r={args.rank} on all linear layers, "
          f"{args.threads} threads, best of {args.steps} steps (fwd + loss + bwd + AdamW)")
    print(f"{'':18} {'tokens/s':>9} {'peak RSS MB':>12} {'base MB':>9} {'trainable':>11}")
    for case, r in results.items():
        if "error" in r:
            print(f"{case:18} failed: {r['error']}")
        else:
            print(f"{case:18} {r['tokens_per_s']:9.0f} {r['peak_rss_mb']:12.0f} {r['base_mb']:9.1f} "
                  f"{r['trainable']:11d}")
    for name, ours, theirs in PAIRS:
        if ours in results and theirs in results:
            print(f"{name:6} tinylm/torch: tokens/s {ratio(results[ours], results[theirs], 'tokens_per_s')}, "
                  f"peak RSS {ratio(results[ours], results[theirs], 'peak_rss_mb')}")
    if "tinylm-qlora" in results and "tinylm-lora" in results and "error" not in results["tinylm-qlora"]:
        print(f"QLoRA base weights / f32 base: {ratio(results['tinylm-qlora'], results['tinylm-lora'], 'base_mb')}")
    if "tinylm-lora-ckpt" in results and "tinylm-lora" in results:
        print(f"gradient checkpointing: peak RSS {ratio(results['tinylm-lora-ckpt'], results['tinylm-lora'], 'peak_rss_mb')}"
              f", tokens/s {ratio(results['tinylm-lora-ckpt'], results['tinylm-lora'], 'tokens_per_s')}")


if __name__ == "__main__":
    main()
