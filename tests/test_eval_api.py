"""tinylm.evaluate() called from Python: determinism, batching, progress,
corpus-only runs, per-tag gates."""
import json
import os

import pytest

import tinylm
from eval_fixtures import model_folder
from tinylm.evaluate.gate import UsageError

DATASETS = os.path.join(os.path.dirname(__file__), "..", "datasets")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    path = tmp_path_factory.mktemp("m")
    model_folder(path, "llama_mqa_tied")
    golden = path / "golden.jsonl"
    with open(f"{DATASETS}/support_triage/golden.jsonl", encoding="utf-8") as f:
        golden.write_text("".join(f.readline() for _ in range(12)))
    return tinylm.Model.from_pretrained(path), tinylm.Tokenizer.from_pretrained(path), golden


def outputs(report):
    return [(c["id"], c["output"], c["passed"]) for c in report.data["cases"]]


def test_greedy_results_are_deterministic_and_independent_of_batching(setup):
    model, tok, golden = setup
    first = tinylm.evaluate(model, tok, golden, max_new_tokens=6, batch_size=5)
    assert outputs(tinylm.evaluate(model, tok, golden, max_new_tokens=6, batch_size=5)) == outputs(first)
    assert outputs(tinylm.evaluate(model, tok, golden, max_new_tokens=6, batch_size=1)) == outputs(first)
    assert all(c["new_tokens"] <= 6 for c in first.data["cases"])
    json.dumps(first.data)  # the report is plain JSON


def test_progress_bar_and_tag_gates(setup, capsys):
    model, tok, golden = setup
    report = tinylm.evaluate(model, tok, golden, max_new_tokens=2, progress=True, tag_min={"shipping": 0.0})
    assert "tinylm eval" in capsys.readouterr().err
    assert report.passed and report.exit_code == 0
    assert [g["gate"] for g in report.data["gates"]["checks"]] == ["tag:shipping"]
    report = tinylm.evaluate(model, tok, golden, max_new_tokens=2, progress=False, min_score=0.5)
    assert not report.passed and report.exit_code == 1 and report.score == 0.0
    assert capsys.readouterr().err == ""
    with pytest.raises(UsageError, match="nothing to evaluate"):
        tinylm.evaluate(model, tok)


def test_corpus_only(setup, tmp_path):
    model, tok, _ = setup
    (tmp_path / "wiki.txt").write_text("Paris is the capital of France. " * 20)
    report = tinylm.evaluate(model, tok, corpus=tmp_path / "wiki.txt", window=24, stride=8)
    m = report.data["metrics"]["wiki"]
    assert (m["window"], m["stride"]) == (24, 8) and m["perplexity"] > 1.0
    assert report.score is None and report.passed and report.data["totals"]["cases"] == 0
    assert "| wiki |" in report.markdown()
