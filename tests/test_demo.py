"""A fast smoke of `tinylm demo`: the five steps on a few examples of the
smart_home task and a few fine-tuning steps (the full run is `make demo`)."""
import json
import os

import tinylm.demo
from tinylm import cli

TASK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "datasets", "smart_home")


def test_demo_pipeline(tmp_path, monkeypatch, capsys):
    task = tmp_path / "smart_home"
    task.mkdir()
    for name, n in (("train.jsonl", 32), ("validation.jsonl", 8), ("golden.jsonl", 8)):
        with open(os.path.join(TASK, name)) as f:
            (task / name).write_text("".join(f.readlines()[:n]))
    monkeypatch.setattr(tinylm.demo, "TASK", str(task))
    out = tmp_path / "demo"
    # A few steps cannot clear the 90% bar: the demo says so with exit status 1.
    code = cli.main(["demo", "--output", str(out), "train.max_steps=3", "train.batch_size=8", "train.disable_tqdm=true"])
    assert code == 1
    text = capsys.readouterr().out
    for step in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert step in text
    assert "golden 'json' score (8 cases)" in text and "FAIL: fine-tuned golden score" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fine_tune"]["steps"] == 3 and summary["before"]["cases"] == 8
    assert set(summary["phases"]) == {"eval before", "fine-tune", "eval after", "export"}
    assert all(p["seconds"] > 0 and p["peak_rss_mb"] > 0 for p in summary["phases"].values())
    assert summary["after"]["perplexity"] < summary["before"]["perplexity"]
    for path in (summary["files"]["adapter"], summary["files"]["merged"], *summary["files"]["reports"]):
        assert os.path.exists(path), path
    assert os.listdir(summary["files"]["merged"])


def test_demo_clears_its_bar(tmp_path, capsys):
    """The whole job as `make demo` runs it (about 4 minutes on 2 cores): the
    shipped model and fine-tune config must take the golden score from near
    zero to the bar. Catches any regression in training, LoRA, generation or
    the checks that the fast tests above cannot see."""
    code = cli.main(["demo", "--output", str(tmp_path / "demo"), "train.disable_tqdm=true"])
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["before"]["score"] <= 0.05, summary["before"]
    assert summary["after"]["score"] >= tinylm.demo.BAR, summary["after"]
    assert code == 0 and "PASS: fine-tuned golden score" in capsys.readouterr().out


def test_demo_quick(tmp_path, monkeypatch, capsys):
    """`tinylm demo --quick`: the same five steps on a slice of the task, a
    few steps, no bar (exit status 0), and it says so."""
    monkeypatch.setattr(tinylm.demo, "QUICK_STEPS", 2)
    out = tmp_path / "demo"
    code = cli.main(["demo", "--quick", "--output", str(out), "train.disable_tqdm=true"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "QUICK RUN (pipeline check, 2 steps)" in text and "bar applies only to the full run" in text
    assert "PASS" not in text and "FAIL" not in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quick"] and summary["passed"] is None and summary["bar"] is None
    assert summary["fine_tune"]["steps"] == 2
    assert summary["before"]["cases"] == summary["after"]["cases"] == tinylm.demo.QUICK_CASES
    assert os.listdir(summary["files"]["merged"])
