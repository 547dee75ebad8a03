"""`tinylm demo`: the main job end to end on the embedded demo model: golden
eval of the base, LoRA fine-tune on the smart_home task, golden eval with
the adapter, export (PEFT adapter and merged model), and a before/after
table. Exit status 0 when the fine-tuned score clears the bar (90%), else 1.
"""
from __future__ import annotations

import tinylm
from tinylm.demo import BAR, run_demo


def register(sub) -> None:
    # %% because argparse %-formats help strings.
    p = sub.add_parser("demo", help=f"fine-tune the embedded model on a task and show before/after "
                                    f"(passes at >= {BAR * 100:.0f}%%)", description=__doc__.split("\n\n")[0])
    p.add_argument("--output", metavar="DIR", default="out/demo", help="where everything goes (default: out/demo)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: the CPUs this process may use)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="settings of the fine-tune (the lora_finetune recipe's keys), e.g. train.max_steps=20")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        tinylm.set_num_threads(args.threads)
    return 0 if run_demo(args.output, args.overrides)["passed"] else 1
