"""Golden-set evaluation (and corpus perplexity) of a model, with an optional
LoRA adapter, written as JSON, JUnit XML and Markdown reports.

    python recipes/eval.py --config recipes/configs/eval.yaml [key=value ...]
    tinylm run eval adapter=out/lora/adapter

Generation is greedy, so a run is reproducible. With min_score set, the
run's exit status is 1 when the score is below it (see docs/eval.md for the
gates of `tinylm eval`).
"""
import os

import tinylm
from tinylm.finetune import load_base
from tinylm.recipe_config import run_recipe
from tinylm.recipe_support import shipped_path

DEFAULTS = {
    "output_dir": "out/eval",
    "threads": None,
    "model": None,              # a Hugging Face folder; None: the embedded demo model
    "adapter": None,            # a PEFT adapter folder to apply
    "quant": None,
    "golden": ["datasets/smart_home/golden.jsonl"],
    "corpus": [],               # text files for perplexity
    "max_new_tokens": 64,
    "batch_size": 16,
    "min_score": None,
}


def main(cfg: dict):
    """Evaluates a model (and adapter) on golden sets; writes reports."""
    if cfg["threads"]:
        tinylm.set_num_threads(cfg["threads"])
    model, tok, folder = load_base(cfg)
    if cfg["adapter"]:
        model.load_adapter(cfg["adapter"])
    golden = [cfg["golden"]] if isinstance(cfg["golden"], str) else cfg["golden"]
    report = tinylm.evaluate(model, tok, [shipped_path(p) for p in golden], corpus=cfg["corpus"] or None,
                             max_new_tokens=cfg["max_new_tokens"], batch_size=cfg["batch_size"],
                             min_score=cfg["min_score"], model_path=folder, adapter_path=cfg["adapter"],
                             quant=cfg["quant"])
    out = cfg["output_dir"]
    os.makedirs(out, exist_ok=True)
    report.write_json(os.path.join(out, "report.json"))
    report.write_junit(os.path.join(out, "junit.xml"))
    report.write_markdown(os.path.join(out, "report.md"))
    totals = report.data["totals"]
    print(f"eval: {totals['passed']}/{totals['cases']} passed (score {totals['score']:.3f}); "
          f"reports in {out}/report.{{json,md}} and junit.xml")
    return report


if __name__ == "__main__":
    raise SystemExit(run_recipe(main, DEFAULTS, __file__).exit_code)
