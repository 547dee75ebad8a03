"""tinylm.evaluate(): run golden sets and corpus metrics on a model, apply the
gates, and return a Report (JSON-ready data plus the verdict)."""
from __future__ import annotations

import datetime
import hashlib
import os
import sys
import time

from tinylm.evaluate import reports
from tinylm.evaluate.choice import score_choice
from tinylm.evaluate.gate import Thresholds, UsageError, apply_gates, compare, load_baseline, preflight
from tinylm.evaluate.golden import Case, check_output, load_golden
from tinylm.evaluate.metrics import corpus_metrics, load_corpus
from tinylm.evaluate.suite import GoldenSpec, MetricSpec, load_suite

DEFAULT_MAX_NEW_TOKENS = 64
DEFAULT_BATCH_SIZE = 8


class Report:
    """The outcome of an evaluation. `data` is the JSON report; `passed` is
    True when every gate passed; `exit_code` is 0 or 1 accordingly."""

    def __init__(self, data: dict):
        self.data = data

    @property
    def passed(self) -> bool:
        return self.data["gates"]["passed"]

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    @property
    def score(self) -> float | None:
        return self.data["totals"]["score"]

    def write_json(self, path) -> None:
        reports.write_json(self.data, os.fspath(path))

    def write_junit(self, path) -> None:
        reports.write_junit(self.data, os.fspath(path))

    def write_markdown(self, path) -> None:
        reports.write_markdown(self.data, os.fspath(path))

    def markdown(self) -> str:
        return reports.markdown(self.data)


# ------------------------------------------------------------------ identity
def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_identity(path: str | None) -> dict | None:
    """{"path", "files": {name: sha256}} of a model or adapter folder's files
    (or of one model file, a .gguf)."""
    if path is None:
        return None
    path = os.path.abspath(path)
    if os.path.isfile(path):
        return {"path": path, "files": {os.path.basename(path): _sha256(path)}}
    files = sorted(f for f in os.listdir(path) if not f.startswith(".") and os.path.isfile(os.path.join(path, f)))
    return {"path": path, "files": {f: _sha256(os.path.join(path, f)) for f in files}}


# --------------------------------------------------------------------- cases
class _Progress:
    """A tqdm bar on stderr (when asked for), advanced per case and window."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled and total:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc="tinylm eval", unit="item", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _case_record(case: Case, file: str) -> dict:
    return {"id": case.id, "file": file, "source": case.source, "check": case.check, "tags": case.tags,
            "critical": case.critical, "prompt": case.context, "expected": case.expected}


def _run_generative(model, tok, cases: list[tuple[Case, str]], max_new_tokens: int, batch_size: int,
                    progress) -> dict[str, dict]:
    """Greedy generation in batches of cases that share max_new_tokens and
    stop strings (kept in file order, so a run is reproducible)."""
    groups: dict[tuple, list] = {}
    for case, file in cases:
        groups.setdefault((case.max_new_tokens or max_new_tokens, tuple(case.stop)), []).append((case, file))
    out = {}
    for (limit, stop), group in groups.items():
        for i in range(0, len(group), batch_size):
            batch = group[i:i + batch_size]
            start = time.perf_counter()
            gens = model.generate(tok, [c.context for c, _ in batch], max_new_tokens=limit, stop=list(stop),
                                  return_details=True)
            latency = time.perf_counter() - start
            for (case, file), gen in zip(batch, gens):
                passed, detail = check_output(case, gen.text)
                out[case.id] = {**_case_record(case, file), "output": gen.text, "passed": passed,
                                "score": float(passed), "detail": detail,
                                "latency_s": latency, "batch": len(batch), "new_tokens": len(gen.token_ids),
                                "finish_reason": gen.finish_reason}
            progress(len(batch))
    return out


def _run_choice(model, tok, case: Case, file: str) -> dict:
    start = time.perf_counter()
    result = score_choice(model, tok, case)
    latency = time.perf_counter() - start
    detail = "" if result["passed"] else (f"picked choice {result['pred' if case.metric == 'acc' else 'pred_norm']}"
                                          f" by {case.metric}, expected {case.expected}")
    return {**_case_record(case, file), "expected": case.choices[case.expected], "expected_index": case.expected,
            "choices": case.choices, "metric": case.metric, "output": result["output"], "passed": result["passed"],
            "score": float(result["passed"]),
            "detail": detail, "latency_s": latency, "batch": 1, "loglikelihoods": result["loglikelihoods"],
            "pred": result["pred"], "pred_norm": result["pred_norm"], "acc": result["acc"],
            "acc_norm": result["acc_norm"]}


def _totals(cases: list[dict], wall: float) -> dict:
    n = len(cases)
    passed = sum(c["passed"] for c in cases)
    by_tag: dict[str, dict] = {}
    by_check: dict[str, dict] = {}
    for c in cases:
        for key, table in [(t, by_tag) for t in c["tags"]] + [(c["check"], by_check)]:
            entry = table.setdefault(key, {"cases": 0, "passed": 0})
            entry["cases"] += 1
            entry["passed"] += int(c["passed"])
    for table in (by_tag, by_check):
        for entry in table.values():
            entry["score"] = entry["passed"] / entry["cases"]
    critical = [c for c in cases if c["critical"]]
    choice = [c for c in cases if c["check"] == "choice"]
    tokens = sum(c.get("new_tokens", 0) for c in cases)
    return {
        "cases": n, "passed": passed, "failed": n - passed, "score": passed / n if n else None,
        "by_tag": by_tag, "by_check": by_check,
        "critical": {"cases": len(critical), "failed": sum(not c["passed"] for c in critical)},
        "choice": {"cases": len(choice), "acc": sum(c["acc"] for c in choice) / len(choice),
                   "acc_norm": sum(c["acc_norm"] for c in choice) / len(choice)} if choice else None,
        "generated_tokens": tokens, "wall_s": wall,
    }


# ------------------------------------------------------------------ evaluate
def _label(path: str) -> str:
    """A file's name in reports: relative to the working directory when it
    is below it (as CI checkouts are), else absolute."""
    rel = os.path.relpath(os.path.abspath(path))
    return os.path.abspath(path) if rel.startswith(os.pardir) else rel


def _as_list(value) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, (str, os.PathLike)) else list(value)


def evaluate(model, tok, golden=None, *, suite=None, corpus=None, window: int | None = None,
             stride: int | None = None, baseline=None, min_score: float | None = None,
             max_drop: float | None = None, tag_min: dict | None = None, max_new_tokens: int | None = None,
             batch_size: int | None = None, progress: bool | None = None, name: str | None = None,
             model_path=None, adapter_path=None, quant: str | None = None) -> Report:
    """Evaluates `model` (with its active adapter) on golden sets and corpora.

    golden: a golden JSONL path or a list of them; suite: a YAML suite file
    (its golden files, metrics, thresholds and baseline; arguments given
    here add to or override it); corpus: text file(s) for perplexity, bits
    per byte and word perplexity (window/stride as in metrics.py). Gates:
    min_score, tag_min {tag: minimum}, max_drop against `baseline` (a JSON
    report from an earlier run), and with a baseline no critical case may
    flip from pass to fail. Generation is greedy, so results are
    deterministic. model_path, adapter_path and quant only identify the
    artifact in the report (with file hashes).

    Raises FormatError / FileNotFoundError for bad input and UsageError for
    gates that cannot apply; a failed gate is not an exception: see
    Report.passed.
    """
    spec = load_suite(suite) if suite is not None else None
    goldens = list(spec.golden) if spec else []
    goldens += [GoldenSpec(os.fspath(p)) for p in _as_list(golden)]
    metric_specs = list(spec.metrics) if spec else []
    for p in _as_list(corpus):
        p = os.fspath(p)
        metric_specs.append(MetricSpec(p, os.path.splitext(os.path.basename(p))[0], window, stride))
    if not goldens and not metric_specs:
        raise UsageError("nothing to evaluate: give golden file(s), a suite or a corpus")
    thresholds = spec.thresholds if spec else Thresholds()
    if min_score is not None:
        thresholds.min_score = min_score
    if max_drop is not None:
        thresholds.max_drop = max_drop
    thresholds.tag_min.update(tag_min or {})
    baseline = baseline if baseline is not None else (spec.baseline if spec else None)
    base_data = load_baseline(baseline) if baseline is not None else None
    max_new_tokens = max_new_tokens or (spec.max_new_tokens if spec else None) or DEFAULT_MAX_NEW_TOKENS
    batch_size = batch_size or (spec.batch_size if spec else None) or DEFAULT_BATCH_SIZE

    # Everything is read and checked before the model runs: bad input fails fast.
    cases, ids = [], {}
    for g in goldens:
        for case in load_golden(g.path):
            if case.id in ids:
                raise UsageError(f"{case.source}: id {case.id!r} is also used at {ids[case.id]}; ids must be "
                                 "unique across the golden files of one evaluation")
            ids[case.id] = case.source
            if g.max_new_tokens and case.max_new_tokens is None:
                case.max_new_tokens = g.max_new_tokens
            cases.append((case, _label(g.path)))
    corpora = [(m.name, load_corpus(model, tok, m.path, m.window, m.stride)) for m in metric_specs]
    preflight(thresholds, {t for c, _ in cases for t in c.tags}, bool(cases), {name for name, _ in corpora},
              base_data is not None)

    show = sys.stderr.isatty() if progress is None else progress
    bar = _Progress(len(cases) + sum(len(c.spans) for _, c in corpora), show)
    start = time.perf_counter()
    try:
        results = _run_generative(model, tok, [(c, f) for c, f in cases if c.check != "choice"], max_new_tokens,
                                  batch_size, bar)
        for case, file in cases:
            if case.check == "choice":
                results[case.id] = _run_choice(model, tok, case, file)
                bar(1)
        metrics = {name: corpus_metrics(model, corpus, batch_size, bar) for name, corpus in corpora}
    finally:
        bar.close()
    wall = time.perf_counter() - start

    records = [results[case.id] for case, _ in cases]
    totals = _totals(records, wall)
    comparison = None
    if base_data is not None:
        comparison = {"path": os.path.abspath(baseline), **compare(records, base_data)}
    gates = apply_gates(thresholds, totals, metrics, comparison)
    from tinylm import __version__  # here, not at the top: tinylm imports this module before defining it
    data = {
        "name": name or (spec.name if spec else ", ".join(_label(g.path) for g in goldens) or "corpus"),
        "tinylm_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": folder_identity(model_path) or {"path": None, "files": {}},
        "adapter": {**folder_identity(adapter_path), "name": model.active_adapter} if adapter_path else None,
        "quant": quant,
        "settings": {"decoding": "greedy", "max_new_tokens": max_new_tokens, "batch_size": batch_size},
        "golden": [{"path": os.path.abspath(g.path), "sha256": _sha256(g.path)} for g in goldens],
        "totals": totals,
        "metrics": metrics,
        "gates": {"passed": all(g["passed"] for g in gates), "checks": gates},
        "baseline": comparison,
        "cases": records,
    }
    return Report(data)
