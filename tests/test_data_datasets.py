"""The shipped datasets: reproducible from their scripts, disjoint splits,
golden cases in the eval format, and loadable by the pipeline."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tinylm.data import load_dataset

ROOT = os.path.join(os.path.dirname(__file__), "..", "datasets")
TASKS = {"smart_home": "make_smart_home.py", "support_triage": "make_support_triage.py"}
SIZES = {"train": 2000, "validation": 200, "golden": 200}

# datasets/ holds scripts, not a package: load the generators' helper by path
_spec = importlib.util.spec_from_file_location("tinylm_datasets_common", os.path.join(ROOT, "common.py"))
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)
normalise = _common.normalise


def read(task, split):
    with open(os.path.join(ROOT, task, f"{split}.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def answer(task, record):
    """The answer as the golden check compares it."""
    if "expected" in record:
        return record["expected"]
    return json.loads(record["completion"]) if task == "smart_home" else record["completion"]


@pytest.mark.parametrize("task", TASKS)
def test_script_reproduces_the_files(task, tmp_path):
    subprocess.run([sys.executable, os.path.join(ROOT, TASKS[task]), "--out", str(tmp_path)], check=True)
    for split in SIZES:
        with open(os.path.join(ROOT, task, f"{split}.jsonl"), "rb") as f:
            assert (tmp_path / f"{split}.jsonl").read_bytes() == f.read(), split


@pytest.mark.parametrize("task", TASKS)
def test_splits_are_disjoint_and_answers_are_functions_of_prompts(task):
    seen = {}
    for split, size in SIZES.items():
        records = read(task, split)
        assert len(records) == size
        for r in records:
            key = normalise(r["prompt"])
            assert key not in seen, f"{split} repeats a prompt of {seen[key]}: {r['prompt']!r}"
            seen[key] = split
            if task == "smart_home":   # every slot is copied from the command
                assert all(str(v) in r["prompt"].lower() for k, v in answer(task, r).items() if k != "intent")


@pytest.mark.parametrize("task", TASKS)
def test_golden_cases(task):
    golden = read(task, "golden")
    assert len({g["id"] for g in golden}) == len(golden)
    train = read(task, "train")
    for g in golden:
        assert set(g) >= {"id", "prompt", "expected", "check", "tags"}
        assert g["prompt"].endswith("\n") and g["tags"]
        if task == "smart_home":
            assert g["check"] == "json" and g["fields"] == sorted(g["expected"])
            assert g["tags"] == [g["expected"]["intent"]]
        else:
            assert g["check"] == "exact" and g["tags"] == [g["expected"]]
    # the golden answers come from the same label set the model trains on
    kinds = lambda rs: {json.dumps(answer(task, r)["intent"] if task == "smart_home" else answer(task, r))
                        for r in rs}
    assert kinds(golden) <= kinds(train) and len(kinds(train)) >= 5


@pytest.mark.parametrize("task", TASKS)
def test_pipeline_loads_them(task, tokenizer_case, tmp_path):
    tok, _, _ = tokenizer_case
    train, val = load_dataset(os.path.join(ROOT, task, "train.jsonl"), tok, seq_len=64, truncation="error",
                              validation=os.path.join(ROOT, task, "validation.jsonl"), cache_dir=tmp_path)
    assert (train.stats.examples, val.stats.examples) == (2000, 200)
    assert train.stats.prompt_mismatch == 0   # the prompts end in a newline: a clean token boundary
    batch = next(iter(train.batches(16, seed=0)))
    assert ((batch["labels"] != -100).sum(axis=1) >= 2).all()   # every row has an answer and an EOS to learn
