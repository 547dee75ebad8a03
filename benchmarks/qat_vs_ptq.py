"""PTQ against QAT, measured on the file that ships: the embedded demo model
fine-tuned on a shipped task (LoRA on smart_home, or full fine-tuning on
support_triage) in float and then quantized (PTQ: save_gguf of the float
result), and the same fine-tune with QAT for the same steps and exported to
the same type. For each file: the golden-set score (tinylm running the
file's blocks), llama.cpp's perplexity of the file on the task's held-out
text (prompt + completion per line) next to tinylm's by the same chunking,
and the file size; and the share of PTQ's loss that QAT recovers.

    python benchmarks/qat_vs_ptq.py [--mode lora|full] [--types Q4_0 Q4_K_M] [--epochs N] [--out DIR]

Needs the llama.cpp build (make test-llamacpp) for llama-perplexity.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

import tinylm  # noqa: E402
from tinylm.evaluate.llama_perplexity import llama_perplexity  # noqa: E402
from tinylm.finetune import FINETUNE_DEFAULTS, finetune  # noqa: E402
from tinylm.recipe_config import load_config, recipe_dir  # noqa: E402

MODES = {"lora": ("lora_finetune.yaml", "smart_home"), "full": ("full_finetune.yaml", "support_triage")}
N_CTX = 128


def held_out_text(task: str, path: str) -> str:
    with open(os.path.join(REPO, "datasets", task, "validation.jsonl")) as f, open(path, "w") as out:
        for line in f:
            row = json.loads(line)
            out.write(row["prompt"] + row["completion"] + "\n")
    return path


def measure(gguf: str, task: str, text: str, tok) -> dict:
    import llamacpp_ref
    model = tinylm.Model.from_pretrained(gguf)
    golden = os.path.join(REPO, "datasets", task, "golden.jsonl")
    score = tinylm.evaluate(model, tok, golden, max_new_tokens=48, progress=False).score
    ids = llamacpp_ref.tokenize(gguf, open(text).read()[:-1])
    ours = llama_perplexity(model, ids, N_CTX, model.config["bos_token_id"])["perplexity"]
    theirs = llamacpp_ref.perplexity(gguf, text, N_CTX, threads=tinylm.get_num_threads())
    return {"golden": score, "ppl_llama_cpp": theirs, "ppl_tinylm": ours, "mb": os.path.getsize(gguf) / 1e6}


def run(mode: str, types: list[str], epochs: float | None, out: str) -> list[dict]:
    config, task = MODES[mode]
    tok = tinylm.Tokenizer.from_pretrained(tinylm.DEMO_MODEL)
    text = held_out_text(task, os.path.join(out, f"{task}-heldout.txt"))
    extra = [f"train.num_train_epochs={epochs}"] if epochs else []
    rows = []

    def fine_tune(name, qat):
        """(output folder, the .gguf QAT wrote or None, training tokens/s); a
        run whose output is already in out/name is reused."""
        folder = os.path.join(out, name)
        done = os.path.join(folder, "adapter" if mode == "lora" else "model")
        if not os.path.isdir(done):
            cfg = load_config(os.path.join(recipe_dir(), "configs", config),
                              [f"output_dir={folder}", "train.disable_tqdm=true", *extra], FINETUNE_DEFAULTS)
            cfg["train"]["qat"] = qat
            finetune(cfg)
        records = [json.loads(line) for line in open(os.path.join(folder, "train", "metrics.jsonl"))]
        speeds = [r["tokens_per_s"] for r in records if "tokens_per_s" in r]
        gguf = os.path.join(folder, "model.gguf")
        return done, gguf if os.path.exists(gguf) else None, sum(speeds) / len(speeds)

    float_out, _, float_speed = fine_tune("float", None)
    trained = tinylm.Model.from_pretrained(tinylm.DEMO_MODEL)
    if mode == "lora":
        trained.load_adapter(float_out)
    else:
        trained = tinylm.Model.from_pretrained(float_out)
    golden = os.path.join(REPO, "datasets", task, "golden.jsonl")
    f32 = os.path.join(out, "float.gguf")
    trained.save_gguf(f32, "F32", tokenizer=tok, merged=mode == "lora")
    rows.append({"run": "float", "type": "F32", "tokens_s": float_speed, **measure(f32, task, text, tok)})
    rows[-1]["golden_float_model"] = tinylm.evaluate(trained, tok, golden, max_new_tokens=48, progress=False).score
    for t in types:
        ptq = os.path.join(out, f"ptq-{t}.gguf")
        trained.save_gguf(ptq, t, tokenizer=tok, merged=mode == "lora")
        rows.append({"run": "PTQ", "type": t, "tokens_s": float_speed, **measure(ptq, task, text, tok)})
        _, qat_gguf, qat_speed = fine_tune(f"qat-{t}", {"scheme": t})
        rows.append({"run": "QAT", "type": t, "tokens_s": qat_speed, **measure(qat_gguf, task, text, tok)})
    return rows


def report(rows: list[dict], mode: str) -> None:
    print(f"\n{mode}: {'run':5} {'type':7} {'golden':>7} {'ppl llama.cpp':>14} {'ppl tinylm':>11} {'MB':>6} "
          f"{'train tok/s':>11}")
    for r in rows:
        print(f"{'':{len(mode) + 2}}{r['run']:5} {r['type']:7} {r['golden']:7.3f} {r['ppl_llama_cpp']:14.4f} "
              f"{r['ppl_tinylm']:11.4f} {r['mb']:6.2f} {r['tokens_s']:11.0f}")
    base = rows[0]
    for t in sorted({r["type"] for r in rows if r["run"] == "QAT"}):
        ptq = next(r for r in rows if r["run"] == "PTQ" and r["type"] == t)
        qat = next(r for r in rows if r["run"] == "QAT" and r["type"] == t)
        for key, sign in (("golden", 1), ("ppl_llama_cpp", -1)):  # golden: higher is better; perplexity: lower
            loss = sign * (base[key] - ptq[key])
            gain = sign * (qat[key] - ptq[key])
            if loss <= 0:
                print(f"  {t} {key}: PTQ loses nothing ({ptq[key]:.4f} vs float {base[key]:.4f}); "
                      f"QAT {'gains' if gain >= 0 else 'loses'} {abs(gain):.4f} against PTQ")
            else:
                print(f"  {t} {key}: PTQ loses {loss:.4f}, QAT recovers {gain / loss:.0%} of it")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=sorted(MODES), default="lora")
    p.add_argument("--types", nargs="+", default=["Q4_0", "Q4_K_M"])
    p.add_argument("--epochs", type=float, default=None, help="override the recipe config's epochs")
    p.add_argument("--out", default="out/qat_bench")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    print(f"CPU: {tinylm.isa()}, {tinylm.get_num_threads()} threads")
    rows = run(args.mode, args.types, args.epochs, args.out)
    with open(os.path.join(args.out, f"{args.mode}.json"), "w") as f:
        json.dump(rows, f, indent=1)
    report(rows, args.mode)


if __name__ == "__main__":
    main()
