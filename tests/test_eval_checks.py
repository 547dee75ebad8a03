"""Golden-set parsing and every check type on crafted outputs (no model)."""
import json
import os
import xml.etree.ElementTree as ET

import pytest

import tinylm
from tinylm.evaluate.golden import check_output, first_number, json_equal, load_golden, normalize, parse_case

DATASETS = os.path.join(os.path.dirname(__file__), "..", "datasets")


def case(**record):
    return parse_case({"id": "c", "prompt": "p", **record}, "golden.jsonl:1")


@pytest.mark.parametrize("record, output, passed", [
    ({"check": "exact", "expected": "billing"}, "  billing\n", True),
    ({"check": "exact", "expected": "billing"}, "Billing", False),
    ({"check": "exact", "expected": "billing"}, "billing.", False),
    ({"check": "normalized", "expected": "The  Answer, is: 42!"}, "the answer is 42", True),
    ({"check": "normalized", "expected": "New York"}, "new\tyork.", True),
    ({"check": "normalized", "expected": "New York"}, "newyork", False),
    ({"check": "contains", "expected": "kitchen"}, "turn on the kitchen lights", True),
    ({"check": "contains", "expected": ["kitchen", "on"]}, "kitchen lights on", True),
    ({"check": "contains", "expected": ["kitchen", "bedroom"]}, "kitchen lights off", False),
    ({"check": "contains", "expected": "Kitchen"}, "kitchen", False),
    ({"check": "regex", "expected": r"\d{3}-\d{4}"}, " 555-1234 \n", True),
    ({"check": "regex", "expected": r"\d{3}-\d{4}"}, "call 555-1234", False),  # full match, not search
    ({"check": "regex", "expected": r"yes|no"}, "yes", True),
    ({"check": "json", "expected": {"intent": "lights_on", "room": "kitchen"}, "fields": ["intent", "room"]},
     '{"room": "kitchen", "intent": "lights_on", "extra": 1}', True),
    ({"check": "json", "expected": {"intent": "lights_on", "room": "kitchen"}, "fields": ["intent"]},
     '{"intent": "lights_on", "room": "hall"}', True),
    ({"check": "json", "expected": {"intent": "lights_on", "room": "kitchen"}, "fields": ["intent", "room"]},
     '{"intent": "lights_on", "room": "hall"}', False),
    ({"check": "json", "expected": {"value": 21}, "fields": ["value"]}, '{"value": 21.0}', True),
    ({"check": "json", "expected": {"on": True}, "fields": ["on"]}, '{"on": 1}', False),
    ({"check": "json", "expected": {"a": 1}, "fields": ["a"]}, '{"a": 1', False),
    ({"check": "json", "expected": {"a": 1}, "fields": ["a"]}, "[1]", False),
    ({"check": "json", "expected": [1, {"b": "c"}]}, ' [1, {"b": "c"}] ', True),
    ({"check": "json", "expected": [1, {"b": "c"}]}, '[1, {"b": "d"}]', False),
    ({"check": "numeric", "expected": 42}, "42", True),
    ({"check": "numeric", "expected": 42}, "The answer is 42.0 apples", True),
    ({"check": "numeric", "expected": 1234.5}, "about 1,234.5", True),
    ({"check": "numeric", "expected": 3.14159, "tolerance": 0.01}, "3.14", True),
    ({"check": "numeric", "expected": 3.14159}, "3.14", False),
    ({"check": "numeric", "expected": 1000, "rel_tolerance": 0.05}, "1040", True),
    ({"check": "numeric", "expected": 1000, "rel_tolerance": 0.05}, "1060", False),
    ({"check": "numeric", "expected": -2}, "-2", True),
    ({"check": "numeric", "expected": 5}, "five", False),
])
def test_checks(record, output, passed):
    ok, why = check_output(case(**record), output)
    assert ok is passed
    assert (why == "") is passed  # a failure always says why


def test_normalize_and_helpers():
    assert normalize("  Hello,   World!\n«Ça»  va?") == "hello world ça va"
    assert first_number("x -3.5e2 y 7") == -350.0
    assert first_number("no digits") is None
    assert json_equal({"a": [1, 2.0]}, {"a": [1.0, 2]}) and not json_equal(True, 1) and not json_equal("1", 1)


def test_shipped_golden_files_parse():
    for name, check, n in (("smart_home", "json", 200), ("support_triage", "exact", 200)):
        cases = load_golden(f"{DATASETS}/{name}/golden.jsonl")
        assert len(cases) == n and {c.check for c in cases} == {check}
        assert all(c.tags for c in cases)
    first = load_golden(f"{DATASETS}/smart_home/golden.jsonl")[0]
    assert check_output(first, json.dumps(first.expected))[0]


def test_choice_cases_parse():
    c = case(check="choice", choices=["red", "green", "blue"], expected="green")
    assert c.expected == 1 and c.metric == "acc" and c.target_delimiter == " "
    assert case(check="choice", choices=["a", "b"], expected=0, metric="acc_norm").metric == "acc_norm"


@pytest.mark.parametrize("line, message", [
    ('{"id": "a", "prompt": "p", "expected": "x", "check": "fuzzy"}', 'unknown check "fuzzy"'),
    ('{"id": "a", "prompt": "p", "expected": "x"}', 'missing "check"'),
    ('{"id": "a", "prompt": "p", "check": "exact"}', 'missing "expected"'),
    ('{"id": "a", "expected": "x", "check": "exact"}', 'exactly one of "prompt"'),
    ('{"id": "a", "prompt": "p", "messages": [], "expected": "x", "check": "exact"}', 'exactly one of "prompt"'),
    ('{"id": "a", "messages": [{"role": "user"}], "expected": "x", "check": "exact"}', '"messages" must be'),
    ('{"id": "a", "prompt": "p", "expected": 3, "check": "exact"}', 'needs a string "expected"'),
    ('{"id": "a", "prompt": "p", "expected": "(", "check": "regex"}', "not a valid regular expression"),
    ('{"id": "a", "prompt": "p", "expected": {"x": 1}, "check": "json", "fields": ["y"]}', "not in \"expected\""),
    ('{"id": "a", "prompt": "p", "expected": "1", "check": "numeric"}', "needs a number"),
    ('{"id": "a", "prompt": "p", "expected": 1, "check": "numeric", "tolerance": -1}', '"tolerance" must be'),
    ('{"id": "a", "prompt": "p", "expected": "z", "check": "choice", "choices": ["x", "y"]}', "not one of the choices"),
    ('{"id": "a", "prompt": "p", "expected": 2, "check": "choice", "choices": ["x", "y"]}', "index in [0, 2)"),
    ('{"id": "a", "prompt": "p", "expected": 0, "check": "choice", "choices": ["x"]}', "at least two"),
    ('{"id": "a", "prompt": "p", "expected": "x", "check": "exact", "critical": "yes"}', '"critical" must be'),
    ('{"id": "a", "prompt": "p", "expected": "x", "check": "exact", "max_new_tokens": 0}', '"max_new_tokens"'),
    ('{"id": "a", "prompt": "p", "expected": "x", "check": "exact", "tags": "t"}', None),  # one tag is fine
    ('{"id": "a", "prompt": "p", "expected": "x", "check": "exact", "tags": [1]}', '"tags" must be'),
    ('{"id": "a", "prompt": "p", "expected": "x", "check": "exact"', "malformed JSON"),
    ('["a"]', "expected a JSON object"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "golden.jsonl"
    good = '{"id": "ok", "prompt": "p", "expected": "x", "check": "exact"}'
    path.write_text(good + "\n\n" + line + "\n")
    if message is None:
        assert len(load_golden(path)) == 2
        return
    with pytest.raises(tinylm.FormatError) as err:
        load_golden(path)
    assert f"{path}:3: " in str(err.value) and message in str(err.value)


def test_duplicate_ids_and_empty_files(tmp_path):
    path = tmp_path / "g.jsonl"
    line = '{"id": "same", "prompt": "p", "expected": "x", "check": "exact"}\n'
    path.write_text(line * 2)
    with pytest.raises(tinylm.FormatError, match=r"g\.jsonl:2: duplicate id 'same' \(first at line 1\)"):
        load_golden(path)
    path.write_text("\n")
    with pytest.raises(tinylm.FormatError, match="no cases"):
        load_golden(path)
    with pytest.raises(FileNotFoundError):
        load_golden(tmp_path / "missing.jsonl")


def test_junit_holds_outputs_with_characters_xml_cannot(tmp_path):
    from tinylm.evaluate.reports import write_junit
    case = {"id": "c\x01", "file": "g.jsonl", "source": "g.jsonl:1", "check": "exact", "expected": "a",
            "output": "\x00\x1b[31m red", "passed": False, "critical": True, "detail": "output differs",
            "latency_s": 2.0, "batch": 4}
    write_junit({"name": "n", "cases": [case], "gates": {"checks": []}}, tmp_path / "r.xml")
    failure = ET.parse(tmp_path / "r.xml").getroot().find("testsuite/testcase/failure")
    assert failure.get("message") == "critical case: expected a, got \\x00\\x1b[31m red"
    assert "got:      \\x00\\x1b[31m red" in failure.text
    assert ET.parse(tmp_path / "r.xml").getroot().find("testsuite/testcase").get("time") == "0.500"
