"""The regression gate: thresholds a report must meet, and the comparison
with a baseline report (what newly fails, what newly passes)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from tinylm.errors import FormatError


class UsageError(ValueError):
    """A gate or option that cannot be applied (exit status 2 on the command line)."""


METRIC_LIMITS = ("max_perplexity", "max_bits_per_byte", "max_word_perplexity")


@dataclass
class Thresholds:
    min_score: float | None = None              # overall pass rate
    tag_min: dict = field(default_factory=dict)  # tag -> minimum pass rate
    max_drop: float | None = None                # largest allowed score drop against the baseline
    critical_flips: bool = True                  # fail when a critical case passed in the baseline and fails now
    metric_max: dict = field(default_factory=dict)  # metric name -> {"max_perplexity": x, ...}


def _rate(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise UsageError(f"{what} must be a number in [0, 1], got {value!r}")
    return float(value)


def check_thresholds(t: Thresholds) -> None:
    if t.min_score is not None:
        _rate(t.min_score, "min_score")
    if t.max_drop is not None:
        _rate(t.max_drop, "max_drop")
    for tag, value in t.tag_min.items():
        _rate(value, f"the minimum of tag {tag!r}")


def load_baseline(path: str | os.PathLike) -> dict:
    """A JSON report written by tinylm eval; FormatError if it is not one."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}: the baseline report is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except UnicodeDecodeError:
        raise FormatError(f"{path}: the baseline report is not UTF-8 text") from None
    cases = data.get("cases") if isinstance(data, dict) else None
    if (not isinstance(cases, list) or not isinstance(data.get("totals"), dict)
            or not all(isinstance(c, dict) and isinstance(c.get("id"), str) and isinstance(c.get("passed"), bool)
                       for c in cases)):
        raise FormatError(f"{path}: not a tinylm eval report (needs \"totals\" and \"cases\" with \"id\" and "
                          f"\"passed\")")
    return data


def compare(cases: list[dict], baseline: dict) -> dict:
    """Case-by-case differences with a baseline report, matched by id."""
    before = {c["id"]: c for c in baseline["cases"]}
    now = {c["id"]: c for c in cases}
    newly_failing = [c["id"] for c in cases if c["id"] in before and before[c["id"]]["passed"] and not c["passed"]]
    newly_passing = [c["id"] for c in cases if c["id"] in before and not before[c["id"]]["passed"] and c["passed"]]
    return {
        "score": baseline["totals"].get("score"),
        "newly_failing": newly_failing,
        "newly_passing": newly_passing,
        "critical_flips": [i for i in newly_failing if now[i].get("critical")],
        "only_in_baseline": [i for i in before if i not in now],
        "only_now": [i for i in now if i not in before],
    }


def _gate(name: str, passed: bool, value, threshold, detail: str) -> dict:
    return {"gate": name, "passed": bool(passed), "value": value, "threshold": threshold, "detail": detail}


def preflight(t: Thresholds, tags: set[str], has_cases: bool, metric_names: set[str], has_baseline: bool) -> None:
    """Raises UsageError for a gate that cannot apply, before any model runs."""
    check_thresholds(t)
    if t.min_score is not None and not has_cases:
        raise UsageError("min_score needs golden cases to score")
    unknown = sorted(set(t.tag_min) - tags)
    if unknown:
        raise UsageError(f"a minimum is set for tag {unknown[0]!r} but no case has that tag")
    unknown = sorted(set(t.metric_max) - metric_names)
    if unknown:
        raise UsageError(f"limits are set for metric {unknown[0]!r} but the evaluation has no such corpus")
    if t.max_drop is not None and not (has_baseline and has_cases):
        raise UsageError("max_drop needs golden cases and a baseline report (--baseline)")


def apply_gates(t: Thresholds, totals: dict, metrics: dict, comparison: dict | None) -> list[dict]:
    """Every gate that applies, passed or not (a report lists them all);
    preflight() has checked that each can apply."""
    gates = []
    score = totals.get("score")
    if t.min_score is not None:
        gates.append(_gate("min_score", score >= t.min_score, score, t.min_score,
                           f"score {score:.4f} {'>=' if score >= t.min_score else '<'} minimum {t.min_score:.4f}"))
    for tag, minimum in t.tag_min.items():
        entry = totals["by_tag"][tag]
        ok = entry["score"] >= minimum
        gates.append(_gate(f"tag:{tag}", ok, entry["score"], minimum,
                           f"tag {tag!r} score {entry['score']:.4f} {'>=' if ok else '<'} minimum {minimum:.4f}"))
    for name, limits in t.metric_max.items():
        for key, limit in limits.items():
            value = metrics[name][key[len("max_"):]]
            gates.append(_gate(f"{name}:{key}", value <= limit, value, limit,
                               f"{name} {key[len('max_'):]} {value:.4f} {'<=' if value <= limit else '>'} {limit}"))
    if t.max_drop is not None:
        if comparison["score"] is None:
            raise UsageError("max_drop needs a baseline report with a score; this one scored no golden cases")
        drop = comparison["score"] - score  # scores are ratios: 0.9 - 0.85 is 0.05000000000000004, hence the 1e-12
        gates.append(_gate("max_drop", drop <= t.max_drop + 1e-12, drop, t.max_drop,
                           f"score {comparison['score']:.4f} -> {score:.4f} (drop {drop:+.4f}, allowed "
                           f"{t.max_drop:.4f})"))
    if comparison is not None and t.critical_flips:
        flips = comparison["critical_flips"]
        gates.append(_gate("critical_flips", not flips, len(flips), 0,
                           "no critical case went from pass to fail" if not flips else
                           f"critical cases that passed in the baseline fail now: {', '.join(flips)}"))
    return gates
