"""The writers tests/test_crash_safety.py runs in a child process, to be
stopped (TINYLM_TEST_STOP_AT) and SIGKILLed mid-write, or to meet a full disk:

    python tests/crash_writers.py WRITER ARG...

Each writer is also imported by the tests, which use the same functions to
write the "previous" version in-process and to check what is on disk.
"""
import hashlib
import json
import os
import resource
import signal
import sys

import numpy as np

import tinylm
import tinylm.data
from byte_model import CONFIG, ByteTok
from tinylm import atomic
from tinylm.demo import write_summary

# About 2 MB of float32 weights: more than the full-disk tests leave room for.
BIG = dict(CONFIG, hidden_size=128, intermediate_size=512, num_hidden_layers=4)


def write_data(path, rows, width=40):
    """A prompt/completion JSONL file of `rows` examples."""
    rng = np.random.default_rng(rows)
    with open(path, "w") as f:
        for i in range(rows):
            text = "".join(rng.choice(list("abcdefgh "), width))
            f.write(json.dumps({"prompt": f"q{i}: {text}\n", "completion": "xyz"[: 1 + i % 3]}) + "\n")


def load_data(data, cache_dir):
    return tinylm.data.load_dataset(data, ByteTok(), seq_len=64, cache_dir=cache_dir).train


def cache_contents(data):
    """What a loaded dataset holds: its row count, a digest of its tokens
    and whether it came from the cache."""
    ids = data.rows(range(len(data)))["input_ids"]
    return {"rows": len(data), "digest": hashlib.sha256(ids.tobytes()).hexdigest(), "hit": data.stats.cache_hit}


def model(seed, config=CONFIG, lora=False):
    """A tiny Llama; with lora, an adapter whose A and B are noise (so a
    merge changes the weights and two seeds give two adapters)."""
    m = tinylm.Model.from_config(config, seed=seed)
    if lora:
        m.add_lora(r=4, alpha=8, target_modules="all-linear", seed=seed)
        rng = np.random.default_rng(seed)
        for name in m.trainable_names():
            m.param(name)[...] = rng.normal(0, 0.05, m.param(name).shape)
    return m


def train_config(out, steps, resume):
    return tinylm.TrainConfig(output_dir=out, learning_rate=1e-2, batch_size=2, max_steps=steps, save_steps=1,
                              save_total_limit=3, seed=3, warmup_steps=1, disable_tqdm=True,
                              resume_from_checkpoint=resume)


def train(data, cache_dir, out, steps, resume=False):
    """A LoRA fine-tune checkpointing every step; returns the trained adapter."""
    m = model(0)
    m.add_lora(r=4, alpha=8, dropout=0.1, target_modules="all-linear", seed=0)
    tinylm.Trainer(m, None, load_data(data, cache_dir), train_config(out, steps, resume)).fit()
    return {name: m.param(name).copy() for name in m.trainable_names()}


def digest(folder):
    """sha256 of every file in folder, by name."""
    return {name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(folder))}


def summary(seed):
    return {"bar": 0.9, "passed": True, "seed": seed, "cases": list(range(2000))}


def fill_folder(seed):
    def fill(folder):
        for name in ("a.json", "b.json"):
            atomic.atomic_write_text(os.path.join(folder, name), json.dumps({"seed": seed}))
    return fill


# ---------------------------------------------------------------- full disk
def _full_disk_writes(kind, directory, inputs):
    """(target, write the small previous version, write one too big to fit);
    data files go to inputs, off the full disk."""
    small, big = os.path.join(inputs, "small.jsonl"), os.path.join(inputs, "big.jsonl")
    if kind == "text":
        target = os.path.join(directory, "report.json")
        return (target, lambda: atomic.atomic_write_text(target, "{}\n"),
                lambda: atomic.atomic_write_text(target, json.dumps({"cases": ["x" * 100] * 20000})))
    if kind == "safetensors":
        target = os.path.join(directory, "model")
        return target, lambda: model(1).save_pretrained(target), lambda: model(2, BIG).save_pretrained(target)
    if kind == "cache":
        target = os.path.join(directory, "cache")
        write_data(small, 10)
        write_data(big, 3000, width=200)
        return target, lambda: load_data(small, target), lambda: load_data(big, target)
    if kind == "checkpoint":  # the first checkpoint of a full fine-tune does not fit
        target = os.path.join(directory, "run")
        write_data(small, 10)
        data = load_data(small, os.path.join(inputs, "cache"))
        return (target, None,
                lambda: tinylm.Trainer(model(0, BIG), None, data, train_config(target, 1, False)).fit())
    raise SystemExit(f"unknown kind {kind!r}")


def full_disk(kind, directory, inputs, limit):
    """Writes a small previous version of one kind of file in directory,
    then one too big for the room left: directory is a small tmpfs, or
    limit caps every file's size (RLIMIT_FSIZE). Prints the outcome as JSON:
    the exception, every file left, whether the previous version is intact
    (None for a checkpoint, which has none)."""
    target, previous, too_big = _full_disk_writes(kind, directory, inputs)

    def state():
        return digest(target) if os.path.isdir(target) else digest(directory)[os.path.basename(target)]

    before = None
    if previous:
        previous()
        before = state()
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so write() fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    error = None
    try:
        too_big()
    except Exception as exc:  # noqa: BLE001 -- reported to the test, which checks the type
        error = {"type": type(exc).__name__, "message": str(exc), "errno": getattr(exc, "errno", None)}
    intact = None if before is None else before == state()
    left = sorted(os.path.relpath(os.path.join(root, n), directory)
                  for root, dirs, files in os.walk(directory) for n in dirs + files)
    print(json.dumps({"error": error, "left": left, "previous_intact": intact, "target": target}))


def main(argv):
    writer, args = argv[0], argv[1:]
    if writer == "model":
        model(int(args[1])).save_pretrained(args[0])
    elif writer == "merged":
        model(int(args[1]), lora=True).save_pretrained(args[0], merged=True)
    elif writer == "adapter":
        model(int(args[1]), lora=True).save_adapter(args[0])
    elif writer == "train":
        train(args[0], args[1], args[2], int(args[3]), resume=len(args) > 4 and args[4] == "resume")
    elif writer == "cache":
        print(json.dumps(cache_contents(load_data(args[0], args[1]))))
    elif writer == "summary":
        write_summary(args[0], summary(int(args[1])))
    elif writer == "folder-fallback":
        atomic._exchange = lambda a, b: False  # as on a filesystem without RENAME_EXCHANGE
        atomic.write_folder(args[0], fill_folder(int(args[1])))
    elif writer == "full-disk":
        full_disk(args[0], args[1], args[2], int(args[3]) if len(args) > 3 else None)
    else:
        raise SystemExit(f"unknown writer {writer!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
