"""The distillation demonstration of docs/distillation.md: a 1.3M-parameter
student and the embedded 5.8M demo model as its teacher (4.4x), on raw text
and on the shipped smart_home task. Each phase is one command and writes
its numbers to out/distill_demo/results.json (phases read the folders the
earlier ones wrote):

    python benchmarks/distill_demo.py raw       # pretraining-style: CE vs KD, same tokens
    python benchmarks/distill_demo.py teacher   # the teacher: LoRA fine-tune of the demo model on the task
    python benchmarks/distill_demo.py cache     # the offline top-32 cache of the teacher over the task
    python benchmarks/distill_demo.py task ARM [EPOCHS]   # ARM: ce | online | offline | on_policy,
                                                          # from the CE student (EPOCHS: 1)
    python benchmarks/distill_demo.py topk      # top-k 8/32/128 against the full-vocabulary loss and gradient
    python benchmarks/distill_demo.py table     # the markdown tables

Every arm of a comparison sees the same data, steps, seed and learning rate;
only the loss differs. Each phase runs in its own process, so its peak RSS
is its own.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time

import numpy as np

import tinylm
from tinylm.atomic import atomic_write_text
from tinylm.data import load_dataset
from tinylm.distill import TeacherCache, build_teacher_cache, kd_loss
from tinylm.finetune import DISTILL_DEFAULTS, FINETUNE_DEFAULTS, finetune
from tinylm.recipe_config import load_config, recipe_dir
from tinylm.recipe_support import (DATASETS, DEMO_MODEL, REPO, copy_tokenizer, export_folder, peak_rss_mb,
                                   reset_peak_rss, shipped_path, validation_perplexity)

OUT = os.path.join("out", "distill_demo")
RESULTS = os.path.join(OUT, "results.json")
TASK = os.path.join(DATASETS, "smart_home")
CORPUS = os.path.join(REPO, "datasets", "corpus", "data")
# The student: the demo model's architecture at a quarter of its size and
# its tokenizer (tied embeddings over the same 4096 ids).
STUDENT = {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4, "num_attention_heads": 4,
           "num_key_value_heads": 2}
RAW = {"steps": 400, "batch_size": 16, "seq_len": 256, "learning_rate": 2e-3}
KD = {"loss": "forward_kl", "kd_ratio": 0.5, "temperature": 1.0}
TASK_TRAIN = {"learning_rate": 3e-3, "batch_size": 16}
ARMS = {"ce": None, "online": {}, "offline": {"top_k": 32}, "on_policy": {"lmbda": 0.5, "max_new_tokens": 48}}
GOLDEN_BATCH, MAX_NEW_TOKENS = 16, 48


def record(key, value):
    os.makedirs(OUT, exist_ok=True)
    results = json.load(open(RESULTS)) if os.path.exists(RESULTS) else {}
    results[key] = value
    atomic_write_text(RESULTS, json.dumps(results, indent=2) + "\n")
    print(json.dumps({key: value}, indent=2))


def cpu_name():
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")


def golden(model, tok):
    report = tinylm.evaluate(model, tok, os.path.join(TASK, "golden.jsonl"), max_new_tokens=MAX_NEW_TOKENS,
                             batch_size=GOLDEN_BATCH)
    return report.data["totals"]["score"]


def raw_arm(name, teacher):
    """The student from random weights (seed 0) on RAW steps of packed corpus text."""
    tok = tinylm.Tokenizer.from_pretrained(DEMO_MODEL)
    base = tinylm.Model.from_pretrained(DEMO_MODEL).config
    student = tinylm.Model.from_config({**base, **STUDENT, "torch_dtype": "float32"}, seed=0)
    train, val = load_dataset(os.path.join(CORPUS, "train.jsonl"), tok, seq_len=RAW["seq_len"], packing=True,
                              validation=os.path.join(CORPUS, "validation.jsonl"), seed=0)
    cfg = {"output_dir": os.path.join(OUT, "raw", name, "train"), "max_steps": RAW["steps"],
           "batch_size": RAW["batch_size"], "learning_rate": RAW["learning_rate"], "lr_scheduler_type": "cosine",
           "warmup_ratio": 0.03, "weight_decay": 0.1, "adam_beta2": 0.95, "save_steps": None, "logging_steps": 20,
           "disable_tqdm": True, "distill": KD if teacher is not None else None}
    reset_peak_rss()
    start = time.perf_counter()
    trainer = tinylm.Trainer(student, tok, train, cfg, teacher=teacher)
    trainer.fit()
    seconds = time.perf_counter() - start
    folder = os.path.join(OUT, "raw", name, "model")
    shutil.rmtree(folder, ignore_errors=True)
    export_folder(student, folder)
    copy_tokenizer(DEMO_MODEL, folder)
    return {"params": student.num_parameters(), "train_tokens": trainer.state.num_input_tokens_seen,
            "train_s": round(seconds, 1), "tokens_per_s": round(trainer.state.num_input_tokens_seen / seconds),
            "peak_rss_mb": round(peak_rss_mb()), "validation": validation_perplexity(student, val, 16)}


def phase_raw(which):
    teacher = tinylm.Model.from_pretrained(DEMO_MODEL)
    for name in which or ("ce", "kd"):
        record(f"raw_{name}", {**raw_arm(name, teacher if name == "kd" else None), "teacher_params":
                               teacher.num_parameters(), "cpu": cpu_name()})


def task_name(arm, epochs):
    return arm if epochs == 1 else f"{arm}_e{epochs}"


def task_config(arm, epochs=1):
    overrides = [f"output_dir={OUT}/task/{task_name(arm, epochs)}", f"model={OUT}/raw/ce/model",
                 "train.logging_steps=25", f"train.learning_rate={TASK_TRAIN['learning_rate']}",
                 f"train.num_train_epochs={epochs}",
                 f"train.batch_size={TASK_TRAIN['batch_size']}", "train.disable_tqdm=true"]
    extra = ARMS[arm]
    if extra is not None:
        overrides += [f"train.distill.{k}={v}" for k, v in {**KD, **extra}.items() if k != "top_k"]
        if arm == "offline":
            overrides.append(f"teacher.cache={OUT}/cache.h5")
        else:
            overrides += [f"teacher.model={DEMO_MODEL}", f"teacher.adapter={OUT}/teacher/adapter"]
    return load_config(os.path.join(recipe_dir(), "configs", "distill.yaml"), overrides, DISTILL_DEFAULTS)


def phase_teacher():
    cfg = load_config(os.path.join(recipe_dir(), "configs", "lora_finetune.yaml"),
                      [f"output_dir={OUT}/teacher", "train.disable_tqdm=true"], FINETUNE_DEFAULTS)
    result = finetune(cfg)
    model = tinylm.Model.from_pretrained(DEMO_MODEL)
    model.load_adapter(result["output"])
    tok = tinylm.Tokenizer.from_pretrained(DEMO_MODEL)
    _, val = load_dataset(os.path.join(TASK, "train.jsonl"), tok, seq_len=128,
                          validation=os.path.join(TASK, "validation.jsonl"))
    record("teacher", {"steps": result["steps"], "train_s": round(result["train_runtime_s"], 1),
                       "golden": golden(model, tok), "validation": validation_perplexity(model, val, 16)})


def phase_cache():
    teacher = tinylm.Model.from_pretrained(DEMO_MODEL)
    teacher.load_adapter(os.path.join(OUT, "teacher", "adapter"))
    tok = tinylm.Tokenizer.from_pretrained(DEMO_MODEL)
    cfg = task_config("offline")
    data = cfg["data"]   # laid out as the offline arm's training will lay it out
    train, _ = load_dataset(shipped_path(data["train"]), tok, format=data["format"], seq_len=data["seq_len"],
                            packing=data["packing"], train_on_prompt=data["train_on_prompt"],
                            validation=shipped_path(data["validation"]), seed=cfg["seed"])
    reset_peak_rss()
    stats = build_teacher_cache(teacher, train, os.path.join(OUT, "cache.h5"), tokenizer=tok, top_k=32,
                                teacher_name="demo + smart_home LoRA")
    record("cache", {**{k: round(v, 2) if isinstance(v, float) else v for k, v in stats.items()},
                     "peak_rss_mb": round(peak_rss_mb())})


def phase_task(arm, epochs=1):
    cfg = task_config(arm, epochs)
    reset_peak_rss()
    result = finetune(cfg)
    rss = peak_rss_mb()
    tok = tinylm.Tokenizer.from_pretrained(result["output"])
    model = tinylm.Model.from_pretrained(result["output"])
    _, val = load_dataset(os.path.join(TASK, "train.jsonl"), tok, seq_len=128,
                          validation=os.path.join(TASK, "validation.jsonl"))
    record(f"task_{task_name(arm, epochs)}", {"steps": result["steps"], "train_s": round(result["train_runtime_s"], 1),
                           "tokens_per_s": round(result["tokens_per_s"]), "peak_rss_mb": round(rss),
                           "golden": golden(model, tok), "validation": validation_perplexity(model, val, 16)})


def phase_topk():
    """On the online-KD student of the task and its teacher, over 4 validation
    batches: the top-k losses (tail bucket, and renormalised) against the
    full-vocabulary forward KL, and the cosine of their logit gradients."""
    tok = tinylm.Tokenizer.from_pretrained(DEMO_MODEL)
    student = tinylm.Model.from_pretrained(os.path.join(OUT, "task", "online", "model"))
    teacher = tinylm.Model.from_pretrained(DEMO_MODEL)
    teacher.load_adapter(os.path.join(OUT, "teacher", "adapter"))
    _, val = load_dataset(os.path.join(TASK, "train.jsonl"), tok, seq_len=128,
                          validation=os.path.join(TASK, "validation.jsonl"))
    out = {}
    batches = list(val.batches(16, shuffle=False))[:4]
    for k in (None, 8, 32, 128):
        for tail in ((True,) if k is None else (True, False)):
            losses, cos = [], []
            for batch in batches:
                s = student.forward(batch["input_ids"], batch["attention_mask"])[:, :-1]
                t = teacher.forward(batch["input_ids"], batch["attention_mask"])[:, :-1]
                labels = batch["labels"][:, 1:]
                full, g_full = kd_loss(s, t, labels=labels)
                loss, g = kd_loss(s, t, labels=labels, top_k=k, tail=tail)
                losses.append((full, loss))
                cos.append(float((g * g_full).sum() / (np.linalg.norm(g) * np.linalg.norm(g_full))))
            full, loss = np.mean([a for a, _ in losses]), np.mean([b for _, b in losses])
            out["full" if k is None else f"top{k}_{'tail' if tail else 'renorm'}"] = {
                "loss": round(float(loss), 5), "full_loss": round(float(full), 5),
                "rel_diff": round(float((loss - full) / full), 4), "grad_cosine": round(float(np.mean(cos)), 5)}
    record("topk", out)


def phase_table():
    r = json.load(open(RESULTS))
    lines = ["| student (1.31M) | golden json score | validation ppl | train tokens/s | peak RSS MB |",
             "|---|---|---|---|---|"]
    for key in sorted(k for k in r if k.startswith("task_")):
        a, arm = r[key], key[len("task_"):]
        if a:
            lines.append(f"| {arm} ({a['steps']} steps) | {a['golden']:.1%} | {a['validation']['perplexity']} | {a['tokens_per_s']} | "
                         f"{a['peak_rss_mb']} |")
    print("\n".join(lines))


if __name__ == "__main__":
    phase, rest = sys.argv[1], sys.argv[2:]
    {"raw": lambda: phase_raw(rest), "teacher": phase_teacher, "cache": phase_cache,
     "task": lambda: phase_task(rest[0], int(rest[1]) if len(rest) > 1 else 1), "topk": phase_topk, "table": phase_table}[phase]()
