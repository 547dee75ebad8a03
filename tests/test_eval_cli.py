"""`tinylm eval` and `tinylm generate` through the real command in a
subprocess: exit codes 0/1/2, JUnit XML, the JSON and Markdown reports, a
baseline comparison that must fail, suites."""
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

import tinylm
from eval_fixtures import ll_tolerance, model_folder, step_logits
from tinylm.evaluate.choice import score_choice
from tinylm.evaluate.golden import parse_case
from tinylm.generate import encode_prompt
from tolerance import assert_clear_argmax, decoder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_NEW = 8


def tinylm_cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "tinylm.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A model folder and a golden file whose expectations come from the
    model's own greedy outputs: five cases pass, one fails."""
    root = tmp_path_factory.mktemp("eval")
    model_dir = root / "model"
    model_folder(model_dir, "llama_gqa")
    prompts = ["Command: turn on the kitchen lights\nJSON:\n", "Ticket: my invoice is wrong\nCategory:\n",
               "Hello world! How are", "What is 2 + 2? It is"]
    chat = [{"role": "user", "content": "Is Paris in France?"}]
    probe = root / "probe.jsonl"
    write_jsonl(probe, [{"id": f"p{i}", "prompt": p, "expected": "", "check": "exact"} for i, p in enumerate(prompts)]
                + [{"id": "p-chat", "messages": chat, "expected": "", "check": "exact"}])
    model, tok = tinylm.Model.from_pretrained(model_dir), tinylm.Tokenizer.from_pretrained(model_dir)
    out = {c["id"]: c["output"] for c in tinylm.evaluate(model, tok, probe, max_new_tokens=MAX_NEW).data["cases"]}
    assert all(out.values()), "the outputs must be non-empty for the checks to mean anything"
    # The command reruns these greedily in another process (another thread
    # count, maybe): no step may sit on a near-tie, or it could pick the other token.
    contexts = prompts + [chat]
    length = decoder(model.config, len(contexts), max(len(encode_prompt(tok, c)) for c in contexts) + MAX_NEW).forward
    for context, gen in zip(contexts, model.generate(tok, contexts, max_new_tokens=MAX_NEW, return_details=True)):
        assert_clear_argmax(step_logits(model, encode_prompt(tok, context), gen.token_ids), length=length,
                            what=repr(context))
    cases = [
        {"id": "exact", "prompt": prompts[0], "expected": out["p0"], "check": "exact", "critical": True,
         "tags": ["core"]},
        {"id": "contains", "prompt": prompts[1], "expected": out["p1"].strip()[:3], "check": "contains",
         "tags": ["core"]},
        {"id": "regex", "prompt": prompts[2], "expected": re.escape(out["p2"].strip()), "check": "regex"},
        {"id": "wrong", "prompt": prompts[3], "expected": "certainly not this", "check": "exact", "tags": ["edge"]},
        {"id": "chat", "messages": chat, "expected": out["p-chat"], "check": "normalized", "tags": ["edge"]},
        {"id": "choice", "prompt": "Paris is the capital of", "check": "choice", "choices": ["France", "the dog"],
         "expected": 0},
    ]
    scored = score_choice(model, tok, parse_case(cases[-1], "golden.jsonl:6"))
    length, scale = ll_tolerance(model, tok, cases[-1]["prompt"], cases[-1]["choices"])
    assert_clear_argmax(scored["loglikelihoods"], length=length, scale=scale(scored["loglikelihoods"]), what="choice")
    cases[-1]["expected"] = scored["pred"]
    golden = root / "golden.jsonl"
    write_jsonl(golden, cases)
    return {"root": root, "model": model_dir, "golden": golden, "cases": cases, "out": out}


def run_eval(env, *args, golden=None):
    return tinylm_cli("eval", "--model", env["model"], "--golden", golden or env["golden"],
                      "--max-new-tokens", MAX_NEW, *args)


def test_passing_gate_writes_every_report(env, tmp_path):
    r = run_eval(env, "--min-score", 0.8, "--tag-min", "core=1.0", "--report", tmp_path / "r.json",
                 "--junit", tmp_path / "r.xml", "--markdown", tmp_path / "r.md")
    assert r.returncode == 0, r.stderr
    assert "5/6 passed" in r.stdout and "all gates passed" in r.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert [c["id"] for c in report["cases"] if not c["passed"]] == ["wrong"]
    assert report["totals"]["score"] == pytest.approx(5 / 6)
    assert report["totals"]["by_tag"]["core"] == {"cases": 2, "passed": 2, "score": 1.0}
    assert report["totals"]["critical"] == {"cases": 1, "failed": 0}
    assert set(report["model"]["files"]) >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert report["tinylm_version"] == tinylm.__version__ and report["quant"] is None
    assert all(c["latency_s"] > 0 for c in report["cases"])

    xml = ET.parse(tmp_path / "r.xml").getroot()
    suites = {s.get("name"): s for s in xml.iter("testsuite")}
    cases = suites.pop("tinylm.gates")
    (name, suite), = suites.items()
    assert name.endswith("golden.jsonl")
    assert int(suite.get("tests")) == len(suite.findall("testcase")) == 6
    assert int(suite.get("failures")) == 1
    failure = suite.find("testcase[@name='wrong']/failure")
    assert "expected certainly not this, got" in failure.get("message")
    assert int(cases.get("tests")) == 2 and int(cases.get("failures")) == 0
    assert int(xml.get("tests")) == 8 and int(xml.get("failures")) == 1

    md = (tmp_path / "r.md").read_text()
    assert "PASSED" in md and "`wrong`" in md and "✅ `min_score`" in md
    assert sorted(os.listdir(tmp_path)) == ["r.json", "r.md", "r.xml"]  # no temporary files left behind


def test_failing_gate_exits_1(env):
    r = run_eval(env, "--min-score", 0.9)
    assert r.returncode == 1
    assert "FAIL min_score" in r.stdout and "a gate failed" in r.stdout
    assert run_eval(env, "--tag-min", "edge=0.75").returncode == 1


def test_baseline_comparison_that_must_fail(env, tmp_path):
    baseline = tmp_path / "baseline.json"
    assert run_eval(env, "--report", baseline).returncode == 0
    # The critical case now expects something else (it flips to fail); the
    # failing case now expects the real output (it flips to pass).
    cases = [dict(c) for c in env["cases"]]
    cases[0]["expected"] = "no longer the output"
    cases[3]["expected"] = env["out"]["p3"]
    golden = tmp_path / "golden.jsonl"
    write_jsonl(golden, cases)
    r = run_eval(env, "--baseline", baseline, "--max-drop", 0.5, "--markdown", tmp_path / "cmp.md",
                 "--report", tmp_path / "now.json", golden=golden)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL critical_flips" in r.stdout and "PASS max_drop" in r.stdout
    now = json.loads((tmp_path / "now.json").read_text())
    assert now["baseline"]["newly_failing"] == ["exact"] and now["baseline"]["newly_passing"] == ["wrong"]
    assert now["baseline"]["critical_flips"] == ["exact"]
    md = (tmp_path / "cmp.md").read_text()
    assert "**Newly failing** (1)" in md and "`exact` (critical)" in md and "**Newly passing** (1)" in md

    cases[0]["critical"] = False  # no critical flip: now only the drop decides
    cases[3]["expected"] = "certainly not this"
    write_jsonl(golden, cases)
    r = run_eval(env, "--baseline", baseline, "--max-drop", 0.1, golden=golden)
    assert r.returncode == 1 and "FAIL max_drop" in r.stdout and "PASS critical_flips" in r.stdout
    assert run_eval(env, "--baseline", baseline, "--max-drop", 0.2, golden=golden).returncode == 0


@pytest.mark.parametrize("make, args, message", [
    (lambda p: p.write_text('{"id": "a", "prompt": "p", "expected": "x", "check": "exact"}\n\n{"id": "b"\n'), (),
     r"golden\.jsonl:3: malformed JSON"),
    (lambda p: p.write_text('{"id": "a", "prompt": "p", "expected": "x", "check": "similar"}\n'), (),
     r"golden\.jsonl:1: unknown check \"similar\""),
    (None, ("--max-drop", "0.1"), "max_drop needs golden cases and a baseline"),
    (None, ("--min-score", "1.5"), r"min_score must be a number in \[0, 1\]"),
    (None, ("--baseline", "missing.json"), "missing.json"),
    (None, ("--tag-min", "nosuchtag=0.5"), "no case has that tag"),
    (None, ("--quant", "fp3"), "invalid choice"),
])
def test_bad_input_exits_2(env, tmp_path, make, args, message):
    golden = env["golden"]
    if make:
        golden = tmp_path / "golden.jsonl"
        make(golden)
    r = tinylm_cli("eval", "--model", env["model"], "--golden", golden, *args, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert re.search(message, r.stderr), r.stderr


def test_bad_model_and_baseline_exit_2(env, tmp_path):
    r = tinylm_cli("eval", "--golden", env["golden"])  # no --model: the embedded demo model
    assert r.returncode in (0, 1) and "golden.jsonl:" in r.stdout, r.stdout + r.stderr
    r = tinylm_cli("eval", "--model", tmp_path / "nope", "--golden", env["golden"])
    assert r.returncode == 2 and "nope: no such model folder" in r.stderr
    (tmp_path / "config.json").write_text("{not json")
    r = tinylm_cli("eval", "--model", tmp_path, "--golden", env["golden"])
    assert r.returncode == 2 and "config.json" in r.stderr
    (tmp_path / "base.json").write_text('{"cases": 3}')
    r = run_eval(env, "--baseline", tmp_path / "base.json")
    assert r.returncode == 2 and "not a tinylm eval report" in r.stderr
    assert tinylm_cli("eval", "--model", env["model"]).returncode == 2  # nothing to evaluate


def test_suite_bundles_golden_metrics_and_thresholds(env, tmp_path):
    (tmp_path / "corpus.txt").write_text("Hello world! The quick brown fox jumps over the lazy dog.\n" * 4)
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: release gate\ngolden:\n  - {{path: {env['golden']}, max_new_tokens: {MAX_NEW}}}\n"
                     "metrics:\n  - {path: corpus.txt, window: 16, max_perplexity: 1000000}\n"
                     "thresholds:\n  min_score: 0.8\n  tags: {core: 1.0}\n")
    r = tinylm_cli("eval", "--model", env["model"], "--suite", suite, "--report", tmp_path / "r.json")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["name"] == "release gate"
    assert report["metrics"]["corpus"]["window"] == 16 and report["metrics"]["corpus"]["perplexity"] > 1
    assert {g["gate"] for g in report["gates"]["checks"]} == {"min_score", "tag:core", "corpus:max_perplexity"}
    # a command-line threshold overrides the suite's
    assert tinylm_cli("eval", "--model", env["model"], "--suite", suite, "--min-score", 0.95).returncode == 1
    suite.write_text(suite.read_text().replace("min_score", "min_scroe"))
    r = tinylm_cli("eval", "--model", env["model"], "--suite", suite)
    assert r.returncode == 2 and "unknown key 'min_scroe' in thresholds" in r.stderr


def test_generate_command(env):
    prompt = "Hello world! How are"
    r = tinylm_cli("generate", "--model", env["model"], "--max-new-tokens", MAX_NEW, "--json", prompt)
    assert r.returncode == 0, r.stderr
    line = json.loads(r.stdout)
    assert line["text"] == env["out"]["p2"] and line["new_tokens"] >= 1


def test_quantized_base_and_adapter_are_identified(env, tmp_path):
    model = tinylm.Model.from_pretrained(env["model"])
    model.add_lora(r=2, alpha=4, target_modules=["q_proj", "v_proj"])
    model.save_adapter(tmp_path / "adapter")
    r = run_eval(env, "--quant", "nf4", "--adapter", tmp_path / "adapter", "--report", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["quant"] == "nf4"
    assert set(report["adapter"]["files"]) == {"adapter_config.json", "adapter_model.safetensors"}
    assert report["adapter"]["name"] == "default"
    assert all(len(h) == 64 for h in report["adapter"]["files"].values())
