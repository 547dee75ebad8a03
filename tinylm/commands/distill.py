"""`tinylm distill`: distillation from a teacher model (docs/distillation.md).
`train` runs the distill recipe (online, offline or on-policy, as its config
says); `cache` runs the teacher once over a training set and stores its
top-k per labelled position for offline distillation; `generate` writes the
teacher's completions of a prompt file as a training set (sequence-level KD)."""
from __future__ import annotations

import argparse
import sys

from tinylm.commands._common import add_model_arguments, load_model
from tinylm.distill.sequence import generate_dataset


def register(sub) -> None:
    p = sub.add_parser("distill", help="distill a teacher into a student", description=__doc__)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    g = actions.add_parser("generate", help="write the teacher's completions of prompts as a JSONL training set",
                           description=generate_dataset.__doc__)
    add_model_arguments(g)
    g.add_argument("--prompts", required=True, metavar="FILE",
                   help="JSONL: one {\"prompt\": ...} or {\"messages\": [...]} per line")
    g.add_argument("--output", required=True, metavar="FILE", help="the JSONL training set to write")
    g.add_argument("--max-new-tokens", type=int, default=128, metavar="N")
    g.add_argument("--batch-size", type=int, default=8, metavar="N")
    g.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (default)")
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(run=run_generate)

    c = actions.add_parser("cache", help="store a teacher's top-k log-probs over a training set (offline KD)",
                           description="Runs the teacher once over every row of the training set, laid out as "
                                       "training will lay it out, and writes its top-k ids, log-probs and tail "
                                       "mass per labelled position to an HDF5 file with a manifest. The data "
                                       "options must be the training run's: a cache made otherwise is refused.")
    c.add_argument("--teacher", metavar="DIR", default=None, help="the teacher's model folder (default: the demo model)")
    c.add_argument("--adapter", metavar="DIR", help="a PEFT LoRA adapter on the teacher")
    c.add_argument("--quant", choices=("nf4", "int8"), help="quantize the teacher's base weights on load")
    c.add_argument("--threads", type=int, metavar="N")
    c.add_argument("--data", required=True, nargs="+", metavar="FILE", help="the training JSONL / .txt file(s)")
    c.add_argument("--output", required=True, metavar="FILE", help="the cache to write (.h5)")
    c.add_argument("--top-k", type=int, default=32, metavar="K")
    c.add_argument("--temperature", type=float, default=1.0, help="of the stored log-probs (default 1)")
    c.add_argument("--seq-len", type=int, default=128, metavar="N")
    c.add_argument("--packing", action="store_true")
    c.add_argument("--train-on-prompt", action="store_true")
    c.add_argument("--format", default=None, help="data format (default: detected)")
    c.add_argument("--validation", default=None, metavar="FRACTION|FILE",
                   help="as the training run splits its data: a fraction held out, or a separate file")
    c.add_argument("--seed", type=int, default=0, help="the training run's seed (validation draw, packing order)")
    c.add_argument("--batch-size", type=int, default=8, metavar="N")
    c.add_argument("--cache-dir", default=None, metavar="DIR", help="where token caches live")
    c.set_defaults(run=run_cache)

    t = actions.add_parser("train", help="run the distill recipe: tinylm distill train [--config FILE] [key=value ...]",
                           description="The distill recipe (recipes/distill.py) with a YAML config and key=value "
                                       "overrides, as `tinylm run distill`.")
    t.add_argument("--config", metavar="FILE", help="the recipe config (default: recipes/configs/distill.yaml)")
    t.add_argument("args", nargs=argparse.REMAINDER, metavar="[key=value ...]",
                   help="overrides, e.g. teacher.model=DIR train.distill.kd_ratio=0.7")
    t.set_defaults(run=run_train)


def _validation(value):
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


def run_cache(args) -> int:
    from tinylm.data import load_dataset
    from tinylm.distill.cache import build_teacher_cache
    teacher, tok, path = load_model(argparse.Namespace(model=args.teacher, adapter=args.adapter, quant=args.quant,
                                                       threads=args.threads))
    train, _ = load_dataset(args.data if len(args.data) > 1 else args.data[0], tok, format=args.format,
                            seq_len=args.seq_len, packing=args.packing, train_on_prompt=args.train_on_prompt,
                            validation=_validation(args.validation), seed=args.seed, cache_dir=args.cache_dir)
    stats = build_teacher_cache(teacher, train, args.output, tokenizer=tok, top_k=args.top_k,
                                temperature=args.temperature, batch_size=args.batch_size, teacher_name=path,
                                progress=sys.stderr.isatty())
    print(f"wrote the top {args.top_k} of {path} for {stats['rows']} rows, {stats['positions']} labelled positions, "
          f"to {args.output}: {stats['bytes'] / 1e6:.2f} MB, {stats['bytes_per_position']:.1f} bytes per labelled "
          f"position, {stats['tokens_per_s']:.0f} tokens/s ({stats['seconds']:.1f} s)")
    return 0


def run_train(args) -> int:
    from tinylm.commands.run import run
    config = ["--config", args.config] if args.config else []
    return run(argparse.Namespace(recipe="distill", args=config + args.args))


def run_generate(args) -> int:
    teacher, tok, path = load_model(args)
    n = generate_dataset(teacher, tok, args.prompts, args.output, max_new_tokens=args.max_new_tokens,
                         batch_size=args.batch_size, temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, seed=args.seed, progress=sys.stderr.isatty())
    print(f"wrote {n} teacher completions ({path}) to {args.output}")
    return 0
