"""`tinylm eval`: golden sets and corpus metrics on a model, with the CI gate.

Exit status 0 when every gate passes, 1 when one fails (score below the
minimum, a drop beyond max_drop, a critical case flipped from pass to fail),
2 for bad input or usage.
"""
from __future__ import annotations

import argparse
import sys

from tinylm.commands._common import add_model_arguments, load_model
from tinylm.evaluate.gate import UsageError
from tinylm.evaluate.runner import evaluate


def _tag_minimum(text: str) -> tuple[str, float]:
    tag, sep, value = text.rpartition("=")
    try:
        if not sep or not tag:
            raise ValueError
        return tag, float(value)
    except ValueError:
        raise UsageError(f"--tag-min expects TAG=X, got {text!r}") from None


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model on golden sets; gate CI on the result", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("what to evaluate (at least one of --golden, --suite)")
    what.add_argument("--golden", action="append", default=[], metavar="FILE", help="golden JSONL file (repeatable)")
    what.add_argument("--suite", metavar="FILE", help="YAML suite: golden files, metrics, thresholds, baseline")
    what.add_argument("--corpus", action="append", default=[], metavar="FILE",
                      help="text file for perplexity / bits per byte / word perplexity (repeatable)")
    what.add_argument("--window", type=int, metavar="N", help="corpus window in tokens (default: model context, "
                                                              "at most 2048)")
    what.add_argument("--stride", type=int, metavar="N", help="corpus stride (default: window - 1, disjoint)")
    add_model_arguments(p)
    gates = p.add_argument_group("gates")
    gates.add_argument("--baseline", metavar="REPORT.json", help="an earlier JSON report to compare with")
    gates.add_argument("--min-score", type=float, metavar="X", help="minimum pass rate in [0, 1]")
    gates.add_argument("--max-drop", type=float, metavar="X", help="largest allowed score drop against the baseline")
    gates.add_argument("--tag-min", action="append", default=[], metavar="TAG=X", help="minimum pass rate of a tag")
    out = p.add_argument_group("reports")
    out.add_argument("--report", metavar="FILE", help="JSON report (every case, totals, identity)")
    out.add_argument("--junit", metavar="FILE", help="JUnit XML for CI test views")
    out.add_argument("--markdown", metavar="FILE", help="Markdown summary with the baseline comparison")
    run_opts = p.add_argument_group("generation")
    run_opts.add_argument("--max-new-tokens", type=int, metavar="N", help="per case unless the case sets it "
                                                                        "(default 64)")
    run_opts.add_argument("--batch-size", type=int, metavar="N", help="prompts per batch (default 8)")
    bar = run_opts.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help="show a progress bar")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show one (default: on a "
                                                                                   "terminal)")
    p.set_defaults(run=run)


def run(args) -> int:
    if not args.golden and not args.suite:
        raise UsageError("give --golden FILE or --suite FILE")
    for flag in ("max_new_tokens", "batch_size", "window", "stride"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    tag_min = dict(_tag_minimum(t) for t in args.tag_min)
    model, tok, path = load_model(args)
    report = evaluate(model, tok, args.golden, suite=args.suite, corpus=args.corpus, window=args.window,
                      stride=args.stride, baseline=args.baseline, min_score=args.min_score, max_drop=args.max_drop,
                      tag_min=tag_min, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                      progress=args.progress, model_path=path, adapter_path=args.adapter, quant=args.quant)
    if args.report:
        report.write_json(args.report)
    if args.junit:
        report.write_junit(args.junit)
    if args.markdown:
        report.write_markdown(args.markdown)
    _summary(report.data, sys.stdout)
    return report.exit_code


def _summary(data: dict, out) -> None:
    t = data["totals"]
    if t["cases"]:
        print(f"{data['name']}: {t['passed']}/{t['cases']} passed (score {t['score']:.4f}), "
              f"{t['critical']['failed']} critical failed", file=out)
    for name, m in data["metrics"].items():
        print(f"{name}: perplexity {m['perplexity']:.4f}, bits/byte {m['bits_per_byte']:.4f}, "
              f"word perplexity {m['word_perplexity']:.4f} ({m['tokens']} tokens)", file=out)
    if data["baseline"]:
        b = data["baseline"]
        print(f"against {b['path']}: {len(b['newly_failing'])} newly failing, {len(b['newly_passing'])} newly "
              "passing", file=out)
    for g in data["gates"]["checks"]:
        print(f"{'PASS' if g['passed'] else 'FAIL'} {g['gate']}: {g['detail']}", file=out)
    print("all gates passed" if data["gates"]["passed"] else "a gate failed", file=out)
