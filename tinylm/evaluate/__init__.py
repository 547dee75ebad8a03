"""Golden-set evaluation and the CI regression gate (see docs/eval.md).

`tinylm.evaluate` is also the function `tinylm` exports
(`tinylm.evaluate(model, tok, golden)`), which shadows this package as an
attribute of `tinylm`: import from the modules by their full name, as in
`from tinylm.evaluate.golden import load_golden`.
"""
from tinylm.evaluate.choice import score_choice
from tinylm.evaluate.gate import Thresholds, UsageError
from tinylm.evaluate.golden import CHECKS, Case, check_output, load_golden, normalize
from tinylm.evaluate.metrics import corpus_metrics, load_corpus
from tinylm.evaluate.runner import Report, evaluate
from tinylm.evaluate.suite import load_suite

__all__ = ["evaluate", "Report", "Case", "CHECKS", "load_golden", "check_output", "normalize", "score_choice",
           "corpus_metrics", "load_corpus", "load_suite", "Thresholds", "UsageError"]
