"""The main job end to end on the embedded demo model (`tinylm demo`, `make demo`).

1. golden-set eval of the base model on the smart_home task (the "before");
2. LoRA fine-tune on its train split (recipes/configs/lora_finetune.yaml);
3. golden-set eval again with the adapter (the "after");
4. export: the PEFT adapter and the merged model;
5. a before/after table (score per check type, validation perplexity,
   generation tokens/s, peak memory) and where the files are.

The run passes when the fine-tuned golden score is at least BAR. The quick
mode (`tinylm demo --quick`) runs the same five steps in seconds:
QUICK_STEPS fine-tuning steps of QUICK_BATCH rows, and the first
QUICK_CASES golden and validation cases. It checks that the pipeline works
(an installed wheel, a new machine), not the score, so the bar is not
applied to it.
"""
from __future__ import annotations

import json
import os
import time

import tinylm
from tinylm.atomic import atomic_write_text
from tinylm.data import load_dataset
from tinylm.export import export
from tinylm.finetune import FINETUNE_DEFAULTS, finetune
from tinylm.recipe_config import load_config, recipe_dir
from tinylm.recipe_support import DATASETS, DEMO_MODEL, peak_rss_mb, reset_peak_rss, validation_perplexity

BAR = 0.90                     # fine-tuned golden score (json check) the demo must reach
QUICK_STEPS, QUICK_BATCH = 5, 8   # the quick mode's fine-tune (no bar) ...
QUICK_CASES = 16                  # ... and its golden and validation cases
TASK = os.path.join(DATASETS, "smart_home")
MAX_NEW_TOKENS = 48            # the longest smart_home answer is 45 tokens with EOS
EVAL_BATCH = 16


def _timed(fn):
    """(fn(), seconds, peak RSS in MiB during fn)."""
    reset_peak_rss()
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start, peak_rss_mb()


def evaluate_phase(model, tok, golden: str, validation, report_prefix: str) -> dict:
    """Golden-set scores and validation perplexity of model (with its active
    adapter); writes the eval reports at report_prefix.{json,md}."""
    report = tinylm.evaluate(model, tok, golden, max_new_tokens=MAX_NEW_TOKENS, batch_size=EVAL_BATCH, progress=True)
    report.write_json(report_prefix + ".json")
    report.write_markdown(report_prefix + ".md")
    totals = report.data["totals"]
    return {"score": totals["score"], "by_check": {k: v["score"] for k, v in totals["by_check"].items()},
            "cases": totals["cases"], "perplexity": validation_perplexity(model, validation, EVAL_BATCH)["perplexity"],
            "tokens_per_s": totals["generated_tokens"] / totals["wall_s"]}


def _quick_task(output_dir: str) -> str:
    """output_dir/quick_task: the first QUICK_CASES lines of the task's
    validation and golden files."""
    folder = os.path.join(output_dir, "quick_task")
    os.makedirs(folder, exist_ok=True)
    for name in ("validation.jsonl", "golden.jsonl"):
        with open(os.path.join(TASK, name), encoding="utf-8") as f:
            lines = [line for line, _ in zip(f, range(QUICK_CASES))]
        atomic_write_text(os.path.join(folder, name), "".join(lines))
    return folder


def run_demo(output_dir: str = "out/demo", overrides: list[str] = (), quick: bool = False) -> dict:
    """Runs the five steps and returns the summary (also written to
    output_dir/summary.json); overrides are key=value settings of the
    lora_finetune config (e.g. train.max_steps=5). quick: QUICK_STEPS
    fine-tuning steps (overrides may still set train.max_steps) and no bar:
    summary["passed"] is None."""
    os.makedirs(output_dir, exist_ok=True)
    task = _quick_task(output_dir) if quick else TASK
    quick_settings = [f"train.max_steps={QUICK_STEPS}", f"train.batch_size={QUICK_BATCH}"] if quick else []
    cfg = load_config(os.path.join(recipe_dir(), "configs", "lora_finetune.yaml"),
                      [f"output_dir={os.path.join(output_dir, 'lora')}", f"model={DEMO_MODEL}",
                       f"data.train={os.path.join(TASK, 'train.jsonl')}",
                       f"data.validation={os.path.join(task, 'validation.jsonl')}", *quick_settings, *overrides],
                      FINETUNE_DEFAULTS)
    golden = os.path.join(task, "golden.jsonl")
    tok = tinylm.Tokenizer.from_pretrained(DEMO_MODEL)
    validation = load_dataset(cfg["data"]["validation"], tok, seq_len=cfg["data"]["seq_len"]).train
    phases = {}

    print(f"[1/5] golden-set eval of the base model ({DEMO_MODEL})")
    base = tinylm.Model.from_pretrained(DEMO_MODEL)
    before, *phases["eval before"] = _timed(
        lambda: evaluate_phase(base, tok, golden, validation, os.path.join(output_dir, "eval_before")))
    del base

    steps = f"{cfg['train']['max_steps']} steps" if quick else "the full schedule"
    print(f"[2/5] LoRA fine-tune on datasets/smart_home/train.jsonl ({steps})")
    trained, *phases["fine-tune"] = _timed(lambda: finetune(cfg))

    print("[3/5] golden-set eval with the adapter")
    tuned = tinylm.Model.from_pretrained(DEMO_MODEL)
    tuned.load_adapter(trained["output"])
    after, *phases["eval after"] = _timed(
        lambda: evaluate_phase(tuned, tok, golden, validation, os.path.join(output_dir, "eval_after")))

    print("[4/5] export: PEFT adapter and merged model")
    paths, *phases["export"] = _timed(lambda: export(trained["output"], os.path.join(output_dir, "export"), DEMO_MODEL))

    summary = {"bar": None if quick else BAR, "passed": None if quick else after["score"] >= BAR, "quick": quick,
               "before": before, "after": after,
               "fine_tune": {k: trained[k] for k in ("steps", "train_loss", "eval_loss", "tokens_per_s", "trainable")},
               "kernels": {"isa": tinylm.isa(), "threads": tinylm.get_num_threads()},
               "phases": {name: {"seconds": round(s, 3), "peak_rss_mb": round(m)} for name, (s, m) in phases.items()},
               "files": {"adapter": paths["adapter"], "merged": paths["merged"],
                         "loss_curve": os.path.join(cfg["output_dir"], "train", "loss_curve.png"),
                         "reports": [os.path.join(output_dir, f"eval_{w}.json") for w in ("before", "after")]}}
    write_summary(os.path.join(output_dir, "summary.json"), summary)
    print("[5/5] before / after\n")
    print(format_table(summary))
    return summary


def write_summary(path: str, summary: dict) -> None:
    """summary.json, written to a temporary name and renamed: a demo killed
    while writing it leaves the previous run's summary."""
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")


def format_table(summary: dict) -> str:
    """The before/after table, the phase times and the output files, as text."""
    before, after, phases = summary["before"], summary["after"], summary["phases"]
    rows = [("", "before (base)", "after (LoRA)")]
    for check in sorted(after["by_check"]):
        rows.append((f"golden '{check}' score ({after['cases']} cases)", f"{before['by_check'].get(check, 0):.1%}",
                     f"{after['by_check'][check]:.1%}"))
    rows += [("validation perplexity", f"{before['perplexity']:.2f}", f"{after['perplexity']:.2f}"),
             ("generation tokens/s", f"{before['tokens_per_s']:.0f}", f"{after['tokens_per_s']:.0f}"),
             ("peak memory (MiB)", f"{phases['eval before']['peak_rss_mb']}", f"{phases['eval after']['peak_rss_mb']}")]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"  {r[0]:<{width[0]}}  {r[1]:>{width[1]}}  {r[2]:>{width[2]}}" for r in rows]
    tune = summary["fine_tune"]
    lines += ["", f"  fine-tune: {tune['steps']} steps, {tune['trainable']:,} trainable parameters, "
                  f"{tune['tokens_per_s']:.0f} tokens/s, final train loss {tune['train_loss']:.4f}",
              "  phases: " + ", ".join(f"{name} {p['seconds']:.0f} s ({p['peak_rss_mb']} MiB peak)"
                                       for name, p in phases.items())]
    if "kernels" in summary:
        lines.append(f"  kernels: {summary['kernels']['isa']} build of the C core (TINYLM_ISA forces one), "
                     f"{summary['kernels']['threads']} threads")
    lines.append("")
    if summary.get("quick"):
        lines.append(f"  QUICK RUN (pipeline check, {tune['steps']} steps): fine-tuned golden score "
                     f"{after['score']:.1%}, base model {before['score']:.1%}; the {BAR:.0%} bar applies only to "
                     f"the full run (`tinylm demo`)")
    else:
        verdict = "PASS" if summary["passed"] else "FAIL"
        lines.append(f"  {verdict}: fine-tuned golden score {after['score']:.1%} (bar: >= {summary['bar']:.0%}, "
                     f"base model {before['score']:.1%})")
    lines += ["", "  files:"] + [f"    {k:<10} {v}" for k, v in summary["files"].items() if isinstance(v, str)]
    lines += [f"    {'reports':<10} {' '.join(summary['files']['reports'])}"]
    return "\n".join(lines)
