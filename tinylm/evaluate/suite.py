"""Suite files: one YAML file bundling golden sets, corpus metrics,
thresholds and a baseline, so CI runs `tinylm eval --suite eval.yaml`.

    name: smart-home release gate         # default: the file's stem
    golden:                                # paths relative to this file
      - ../datasets/smart_home/golden.jsonl
      - {path: extra.jsonl, max_new_tokens: 32}
    metrics:
      - {path: corpus.txt, name: wiki, window: 512, stride: 256, max_perplexity: 40}
    thresholds:
      min_score: 0.9
      tags: {unlock_door: 0.8}             # per-tag minimum pass rates
      max_drop: 0.02                       # against the baseline's score
      critical_flips: true                 # a critical pass -> fail fails the gate (default)
    baseline: reports/main.json
    max_new_tokens: 64
    batch_size: 8

Unknown keys are errors: a misspelt threshold must not pass silently.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import yaml

from tinylm.errors import FormatError
from tinylm.evaluate.gate import METRIC_LIMITS, Thresholds, UsageError, check_thresholds

TOP_KEYS = {"name", "golden", "metrics", "thresholds", "baseline", "max_new_tokens", "batch_size"}
GOLDEN_KEYS = {"path", "max_new_tokens"}
METRIC_KEYS = {"path", "name", "window", "stride", *METRIC_LIMITS}
THRESHOLD_KEYS = {"min_score", "tags", "max_drop", "critical_flips"}


@dataclass
class GoldenSpec:
    path: str
    max_new_tokens: int | None = None


@dataclass
class MetricSpec:
    path: str
    name: str
    window: int | None = None
    stride: int | None = None


@dataclass
class Suite:
    name: str
    golden: list[GoldenSpec] = field(default_factory=list)
    metrics: list[MetricSpec] = field(default_factory=list)
    thresholds: Thresholds = field(default_factory=Thresholds)
    baseline: str | None = None
    max_new_tokens: int | None = None
    batch_size: int | None = None


def _where(path: str, what: str) -> str:
    return f"{path}: {what}"


def _keys(value, allowed: set, path: str, what: str) -> dict:
    if not isinstance(value, dict):
        raise FormatError(_where(path, f"{what} must be a mapping, got {type(value).__name__}"))
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise FormatError(_where(path, f"unknown key {unknown[0]!r} in {what}; allowed: {', '.join(sorted(allowed))}"))
    return value


def _positive_int(value, path: str, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FormatError(_where(path, f"{what} must be an integer >= 1, got {value!r}"))
    return value


def _file(base: str, value, path: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise FormatError(_where(path, f"{what} must be a file path, got {value!r}"))
    return os.path.normpath(os.path.join(base, os.path.expanduser(value)))


def _metric(entry, base: str, path: str, i: int) -> tuple[MetricSpec, dict]:
    what = f"metrics[{i}]"
    entry = _keys({"path": entry} if isinstance(entry, str) else entry, METRIC_KEYS, path, what)
    file = _file(base, entry.get("path"), path, f"{what}.path")
    name = entry.get("name", os.path.splitext(os.path.basename(file))[0])
    if not isinstance(name, str) or not name:
        raise FormatError(_where(path, f"{what}.name must be a non-empty string"))
    limits = {}
    for key in METRIC_LIMITS:
        if key in entry:
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise FormatError(_where(path, f"{what}.{key} must be a number > 0, got {value!r}"))
            limits[key] = float(value)
    spec = MetricSpec(file, name, _positive_int(entry.get("window"), path, f"{what}.window"),
                      _positive_int(entry.get("stride"), path, f"{what}.stride"))
    return spec, limits


def load_suite(path: str | os.PathLike) -> Suite:
    """Parses and validates a suite file; FormatError names the file and key."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such suite file")
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise FormatError(_where(path, f"not valid YAML: {exc}")) from None
    raw = _keys(raw if raw is not None else {}, TOP_KEYS, path, "the suite")
    base = os.path.dirname(os.path.abspath(path))
    suite = Suite(name=str(raw.get("name") or os.path.splitext(os.path.basename(path))[0]))
    golden = raw.get("golden", [])
    if not isinstance(golden, list):
        raise FormatError(_where(path, "golden must be a list of files"))
    for i, entry in enumerate(golden):
        entry = _keys({"path": entry} if isinstance(entry, str) else entry, GOLDEN_KEYS, path, f"golden[{i}]")
        suite.golden.append(GoldenSpec(_file(base, entry.get("path"), path, f"golden[{i}].path"),
                                       _positive_int(entry.get("max_new_tokens"), path,
                                                     f"golden[{i}].max_new_tokens")))
    metrics = raw.get("metrics", [])
    if not isinstance(metrics, list):
        raise FormatError(_where(path, "metrics must be a list"))
    for i, entry in enumerate(metrics):
        spec, limits = _metric(entry, base, path, i)
        if any(m.name == spec.name for m in suite.metrics):
            raise FormatError(_where(path, f"two metrics are named {spec.name!r}"))
        suite.metrics.append(spec)
        if limits:
            suite.thresholds.metric_max[spec.name] = limits
    if not suite.golden and not suite.metrics:
        raise FormatError(_where(path, "the suite has neither golden files nor metrics"))
    t = _keys(raw.get("thresholds") or {}, THRESHOLD_KEYS, path, "thresholds")
    suite.thresholds.min_score = t.get("min_score")
    suite.thresholds.max_drop = t.get("max_drop")
    suite.thresholds.tag_min = dict(_keys(t.get("tags") or {}, set(t.get("tags") or {}), path, "thresholds.tags"))
    flips = t.get("critical_flips", True)
    if not isinstance(flips, bool):
        raise FormatError(_where(path, f"thresholds.critical_flips must be true or false, got {flips!r}"))
    suite.thresholds.critical_flips = flips
    try:
        check_thresholds(suite.thresholds)
    except UsageError as exc:
        raise FormatError(_where(path, f"thresholds: {exc}")) from None
    if raw.get("baseline") is not None:
        suite.baseline = _file(base, raw["baseline"], path, "baseline")
    suite.max_new_tokens = _positive_int(raw.get("max_new_tokens"), path, "max_new_tokens")
    suite.batch_size = _positive_int(raw.get("batch_size"), path, "batch_size")
    return suite
