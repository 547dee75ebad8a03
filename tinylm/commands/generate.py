"""`tinylm generate`: continue prompts with a model (greedy by default)."""
from __future__ import annotations

import json
import sys

from tinylm.commands._common import add_model_arguments, load_model


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate text from prompts", description=__doc__)
    p.add_argument("prompts", nargs="*", metavar="PROMPT", help="prompts (default: one per line of stdin)")
    add_model_arguments(p)
    p.add_argument("--chat", action="store_true", help="send each prompt as a user message through the chat template")
    p.add_argument("--max-new-tokens", type=int, default=64, metavar="N")
    p.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (default)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop string (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="one JSON object per prompt: text, tokens, finish reason")
    p.set_defaults(run=run)


def run(args) -> int:
    prompts = args.prompts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not prompts:
        raise ValueError("no prompt: pass PROMPT arguments or lines on stdin")
    model, tok, _ = load_model(args)
    if args.chat:
        prompts = [[{"role": "user", "content": p}] for p in prompts]
    results = model.generate(tok, prompts, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                             top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty,
                             stop=args.stop, seed=args.seed, return_details=True)
    for r in results:
        if args.json:
            print(json.dumps({"text": r.text, "new_tokens": len(r.token_ids), "finish_reason": r.finish_reason,
                              "prompt_tokens": r.prompt_tokens}, ensure_ascii=False))
        else:
            print(r.text)
    return 0
