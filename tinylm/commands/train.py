"""`tinylm train`: fine-tunes a model (LoRA by default, QLoRA with --quant,
every weight with --full, quantization-aware with --qat) on a dataset and
writes the adapter or model (and with --qat GGUF, the GGUF file).

Without --config the settings are the lora_finetune recipe's defaults
(recipes/configs/lora_finetune.yaml: the embedded demo model on the
smart_home task); the options below and key=value overrides change them.
"""
from __future__ import annotations

import os

from tinylm.evaluate.gate import UsageError
from tinylm.finetune import FINETUNE_DEFAULTS, finetune
from tinylm.recipe_config import load_config, recipe_dir

# option -> config key it sets
_OPTIONS = {"model": "model", "data": "data.train", "validation": "data.validation", "output": "output_dir",
            "quant": "quant", "seq_len": "data.seq_len", "epochs": "train.num_train_epochs",
            "max_steps": "train.max_steps", "lr": "train.learning_rate", "batch_size": "train.batch_size",
            "lora_r": "lora.r", "lora_alpha": "lora.alpha", "threads": "threads", "seed": "seed"}


def register(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a model: LoRA, QLoRA (--quant) or full (--full)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--config", metavar="FILE", help="YAML config with the lora_finetune recipe's keys "
                                                   "(default: recipes/configs/lora_finetune.yaml)")
    p.add_argument("--model", metavar="PATH", help="Hugging Face model folder or .gguf file (a quantized GGUF "
                                                  "trains an adapter on its blocks; default: the embedded demo "
                                                  "model)")
    p.add_argument("--data", metavar="FILE", help="training data: JSONL (prompt/completion, alpaca, chat, text) "
                                                 "or .txt")
    p.add_argument("--validation", metavar="FILE", help="validation data (evaluated every eval_steps and at the end)")
    p.add_argument("--output", metavar="DIR", help="output folder (adapter/ or model/, train/)")
    p.add_argument("--full", action="store_true", help="train every weight instead of a LoRA adapter")
    p.add_argument("--quant", choices=("nf4", "int8"), help="store the frozen base quantized (QLoRA)")
    p.add_argument("--qat", metavar="SCHEME", help="quantization-aware training for the file to ship: a GGUF file "
                                                 "type (Q4_0, Q4_K_M, Q8_0, ...: ends with out/model.gguf) or a "
                                                 "torchao scheme (int4_g32, 8da4w_g32); docs/qat.md")
    p.add_argument("--qat-after", type=int, metavar="N", help="with --qat: train N steps in float first")
    p.add_argument("--qat-self-distill", action="store_true",
                   help="with --qat: the float model is the online teacher (train.distill sets the loss)")
    p.add_argument("--seq-len", type=int, metavar="N", help="tokens per row")
    p.add_argument("--epochs", type=float, metavar="N", help="training epochs (fractions allowed)")
    p.add_argument("--max-steps", type=int, metavar="N", help="optimizer steps (overrides --epochs)")
    p.add_argument("--lr", type=float, metavar="X", help="peak learning rate")
    p.add_argument("--batch-size", type=int, metavar="N", help="rows per step")
    p.add_argument("--lora-r", type=int, metavar="R", help="LoRA rank")
    p.add_argument("--lora-alpha", type=float, metavar="A", help="LoRA alpha (scale alpha / r)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: the CPUs this process may use)")
    p.add_argument("--seed", type=int, metavar="N", help="seed of the adapter's initialisation and the data order")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="any other config key, e.g. "
                                                                     "train.warmup_ratio=0.1 lora.dropout=0.05")
    p.set_defaults(run=run)


def run(args) -> int:
    config = args.config or os.path.join(recipe_dir(), "configs", "lora_finetune.yaml")
    overrides = [f"{key}={getattr(args, option)}" for option, key in _OPTIONS.items()
                 if getattr(args, option) is not None]
    if args.full:
        overrides.append("lora=null")
    if args.qat:
        overrides.append(f"train.qat={{scheme: '{args.qat}', fake_quant_after_n_steps: {args.qat_after or 0}, "
                         f"self_distill: {str(args.qat_self_distill).lower()}}}")
    elif args.qat_after is not None or args.qat_self_distill:
        raise UsageError("--qat-after and --qat-self-distill need --qat SCHEME")
    result = finetune(load_config(config, overrides + args.overrides, FINETUNE_DEFAULTS))
    what = "adapter" if result["kind"] == "lora" else "model"
    evaluated = "no validation" if result["eval_loss"] is None else f"eval loss {result['eval_loss']:.4f}"
    shipped = f" and {result['gguf']}" if result["gguf"] else ""
    print(f"tinylm train: {result['steps']} steps in {result['train_runtime_s']:.0f} s "
          f"({result['tokens_per_s']:.0f} tokens/s), train loss {result['train_loss']:.4f}, {evaluated}; "
          f"{what} in {result['output']}{shipped}")
    return 0
