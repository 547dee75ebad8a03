"""`tinylm distill`: distillation from a teacher model. `tinylm distill
generate` writes the teacher's completions of a prompt file as a training
set (sequence-level KD); online distillation is the Trainer's
`distill` section with a teacher (docs/distillation.md)."""
from __future__ import annotations

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


def run_generate(args) -> int:
    teacher, tok, path = load_model(args)
    n = generate_dataset(teacher, tok, args.prompts, args.output, max_new_tokens=args.max_new_tokens,
                         batch_size=args.batch_size, temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, seed=args.seed, progress=sys.stderr.isatty())
    print(f"wrote {n} teacher completions ({path}) to {args.output}")
    return 0
