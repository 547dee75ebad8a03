"""Golden sets: JSONL files of evaluation cases, and the checks that decide
whether a model's output passes.

One case a line:

    {"id": "sh-1", "prompt": "...", "expected": {...}, "check": "json", "fields": ["intent"],
     "critical": true, "max_new_tokens": 32, "tags": ["lights"]}

Every problem in a file is a FormatError naming "file:line", raised while
loading, before any model runs.
"""
from __future__ import annotations

import json
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field

from tinylm.data.reader import Skips, read_jsonl
from tinylm.errors import FormatError

GENERATIVE_CHECKS = ("exact", "normalized", "contains", "regex", "json", "numeric")
CHECKS = GENERATIVE_CHECKS + ("choice",)


@dataclass
class Case:
    id: str
    check: str
    expected: object
    prompt: str | None = None
    messages: list | None = None
    source: str = ""               # "file:line"
    tags: list[str] = field(default_factory=list)
    critical: bool = False
    max_new_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    fields: list[str] | None = None          # json
    tolerance: float = 1e-6                  # numeric: absolute
    rel_tolerance: float = 0.0               # numeric: relative to |expected|
    choices: list[str] | None = None         # choice
    target_delimiter: str = " "              # choice: put between the prompt and each choice
    metric: str = "acc"                      # choice: which prediction decides pass ("acc" or "acc_norm")

    @property
    def context(self):
        return self.messages if self.messages is not None else self.prompt


# ------------------------------------------------------------------- parsing
def _fail(where: str, message: str):
    raise FormatError(f"{where}: {message}")


def _str_list(value, where: str, name: str, allow_empty: bool = True) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or (not value and not allow_empty):
        _fail(where, f"\"{name}\" must be a list of strings, got {json.dumps(value)}")
    return value


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_choice(case: Case, record: dict, where: str) -> None:
    case.choices = _str_list(record.get("choices"), where, "choices", allow_empty=False)
    if len(case.choices) < 2:
        _fail(where, "a \"choice\" case needs at least two \"choices\"")
    expected = case.expected
    if isinstance(expected, str):
        if expected not in case.choices:
            _fail(where, f"\"expected\" {expected!r} is not one of the choices {case.choices}")
        case.expected = case.choices.index(expected)
    elif not isinstance(expected, int) or isinstance(expected, bool) or not 0 <= expected < len(case.choices):
        _fail(where, f"\"expected\" must be a choice or its index in [0, {len(case.choices)}), got "
                     f"{json.dumps(expected)}")
    case.target_delimiter = record.get("target_delimiter", " ")
    if not isinstance(case.target_delimiter, str):
        _fail(where, "\"target_delimiter\" must be a string")
    case.metric = record.get("metric", "acc")
    if case.metric not in ("acc", "acc_norm"):
        _fail(where, f"\"metric\" must be \"acc\" or \"acc_norm\", got {json.dumps(case.metric)}")


def _parse_expected(case: Case, record: dict, where: str) -> None:
    """Checks that expected (and the check's own fields) fit the check."""
    check, expected = case.check, case.expected
    if check in ("exact", "normalized", "regex") and not isinstance(expected, str):
        _fail(where, f"check \"{check}\" needs a string \"expected\", got {json.dumps(expected)}")
    if check == "contains":
        case.expected = _str_list(expected, where, "expected", allow_empty=False)
    if check == "regex":
        try:
            re.compile(expected)
        except re.error as exc:
            _fail(where, f"\"expected\" is not a valid regular expression: {exc}")
    if check == "json" and "fields" in record:
        case.fields = _str_list(record["fields"], where, "fields", allow_empty=False)
        if not isinstance(expected, dict):
            _fail(where, "check \"json\" with \"fields\" needs an object as \"expected\"")
        missing = [f for f in case.fields if f not in expected]
        if missing:
            _fail(where, f"\"fields\" {missing} are not in \"expected\"")
    if check == "numeric":
        if not _number(expected):
            _fail(where, f"check \"numeric\" needs a number as \"expected\", got {json.dumps(expected)}")
        for key in ("tolerance", "rel_tolerance"):
            if key in record:
                if not _number(record[key]) or record[key] < 0:
                    _fail(where, f"\"{key}\" must be a number >= 0, got {json.dumps(record[key])}")
                setattr(case, key, float(record[key]))
    if check == "choice":
        _parse_choice(case, record, where)


def parse_case(record: dict, where: str) -> Case:
    """A Case from one JSON object; where is "file:line" for messages."""
    check = record.get("check")
    if check is None:
        _fail(where, f"missing \"check\" (one of {', '.join(CHECKS)})")
    if check not in CHECKS:
        _fail(where, f"unknown check {json.dumps(check)}; known checks: {', '.join(CHECKS)}")
    if ("prompt" in record) == ("messages" in record):
        _fail(where, "a case needs exactly one of \"prompt\" (a string) or \"messages\" (a chat)")
    if "expected" not in record:
        _fail(where, "missing \"expected\"")
    case_id = record.get("id", where)
    if not isinstance(case_id, (str, int)) or isinstance(case_id, bool):
        _fail(where, f"\"id\" must be a string, got {json.dumps(case_id)}")
    case = Case(id=str(case_id), check=check, expected=record["expected"], source=where)
    if "prompt" in record:
        if not isinstance(record["prompt"], str):
            _fail(where, "\"prompt\" must be a string")
        case.prompt = record["prompt"]
    else:
        messages = record["messages"]
        if (not isinstance(messages, list) or not messages
                or not all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                           for m in messages)):
            _fail(where, "\"messages\" must be a non-empty list of {\"role\": str, \"content\": str}")
        case.messages = messages
    case.tags = _str_list(record.get("tags", []), where, "tags")
    case.critical = record.get("critical", False)
    if not isinstance(case.critical, bool):
        _fail(where, f"\"critical\" must be true or false, got {json.dumps(case.critical)}")
    if "max_new_tokens" in record:
        value = record["max_new_tokens"]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            _fail(where, f"\"max_new_tokens\" must be an integer >= 1, got {json.dumps(value)}")
        case.max_new_tokens = value
    case.stop = _str_list(record.get("stop", []), where, "stop")
    if any(not s for s in case.stop):
        _fail(where, "\"stop\" strings must not be empty")
    _parse_expected(case, record, where)
    return case


def load_golden(path: str | os.PathLike) -> list[Case]:
    """Every case of a golden JSONL file (blank lines skipped). Raises
    FileNotFoundError, or FormatError naming file:line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such golden file")
    cases, seen = [], {}
    for line, record in read_jsonl(path, "raise", Skips()):
        case = parse_case(record, f"{path}:{line}")
        if case.id in seen:
            _fail(case.source, f"duplicate id {case.id!r} (first at line {seen[case.id]})")
        seen[case.id] = line
        cases.append(case)
    if not cases:
        raise FormatError(f"{path}: the golden file has no cases")
    return cases


# -------------------------------------------------------------------- checks
def normalize(text: str) -> str:
    """Lower case, punctuation (Unicode category P*) removed, runs of
    whitespace made one space, ends stripped."""
    text = "".join(c for c in text.lower() if not unicodedata.category(c).startswith("P"))
    return " ".join(text.split())


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?(?:[eE][-+]?\d+)?|[-+]?\.\d+(?:[eE][-+]?\d+)?")


def first_number(text: str) -> float | None:
    """The first number written in text (thousands separators allowed), or None."""
    match = _NUMBER.search(text)
    return float(match.group(0).replace(",", "")) if match else None


def json_equal(a, b) -> bool:
    """JSON equality: true is not 1, 1 equals 1.0, objects ignore key order."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _number(a) and _number(b):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _check_json(case: Case, got: str) -> tuple[bool, str]:
    try:
        value = json.loads(got)
    except json.JSONDecodeError as exc:
        return False, f"output is not JSON ({exc.msg} at column {exc.colno})"
    if case.fields is None:
        return (True, "") if json_equal(value, case.expected) else (False, "parsed JSON differs from expected")
    if not isinstance(value, dict):
        return False, f"output JSON is a {type(value).__name__}, not an object"
    wrong = [f for f in case.fields if f not in value or not json_equal(value[f], case.expected[f])]
    if wrong:
        return False, "fields differ: " + ", ".join(
            f"{f}: expected {json.dumps(case.expected[f])}, got {json.dumps(value[f]) if f in value else 'missing'}"
            for f in wrong)
    return True, ""


def check_output(case: Case, output: str) -> tuple[bool, str]:
    """(passed, why not) for a generative case's output."""
    got = output.strip()
    if case.check == "exact":
        return got == case.expected.strip(), "" if got == case.expected.strip() else "output differs"
    if case.check == "normalized":
        same = normalize(got) == normalize(case.expected)
        return same, "" if same else "output differs after normalization"
    if case.check == "contains":
        missing = [s for s in case.expected if s not in output]
        return not missing, "" if not missing else f"output lacks {json.dumps(missing[0])}"
    if case.check == "regex":
        ok = re.fullmatch(case.expected, got) is not None
        return ok, "" if ok else "output does not fully match the pattern"
    if case.check == "json":
        return _check_json(case, got)
    if case.check == "numeric":
        value = first_number(got)
        if value is None:
            return False, "output has no number"
        limit = max(case.tolerance, case.rel_tolerance * abs(case.expected))
        ok = abs(value - case.expected) <= limit
        return ok, "" if ok else f"{value:g} is {abs(value - case.expected):g} away (tolerance {limit:g})"
    raise ValueError(f"check {case.check!r} does not judge generated text")
