"""`tinylm demo`: the main job end to end on the embedded demo model: golden
eval of the base, LoRA fine-tune on the smart_home task, golden eval with
the adapter, export (PEFT adapter and merged model), and a before/after
table. Exit status 0 when the fine-tuned score clears the bar (90%), else 1.
With --quick: a few fine-tuning steps, the same five steps in seconds, no
bar (exit status 0 when every step ran).
"""
from __future__ import annotations

import tinylm
from tinylm.demo import BAR, QUICK_CASES, QUICK_STEPS, run_demo


def register(sub) -> None:
    # %% because argparse %-formats help strings.
    p = sub.add_parser("demo", help=f"fine-tune the embedded model on a task and show before/after "
                                    f"(passes at >= {BAR * 100:.0f}%%)", description=__doc__.split("\n\n")[0])
    p.add_argument("--output", metavar="DIR", default="out/demo", help="where everything goes (default: out/demo)")
    p.add_argument("--quick", action="store_true",
                   help=f"the same steps in seconds ({QUICK_STEPS} fine-tuning steps, {QUICK_CASES} golden cases): "
                        f"checks the pipeline, so the bar is not applied")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: the CPUs this process may use)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="settings of the fine-tune (the lora_finetune recipe's keys), e.g. train.max_steps=20")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        tinylm.set_num_threads(args.threads)
    summary = run_demo(args.output, args.overrides, quick=args.quick)
    return 0 if args.quick or summary["passed"] else 1
