"""Shared by the dataset generators: unique prompts, disjoint splits, JSONL out.

Each generator draws (prompt, answer) pairs from its own grammar with a
fixed seed, keeps the first occurrence of each normalised prompt (so no two
splits hold the same command up to case, spacing and punctuation), and
writes train.jsonl / validation.jsonl (prompt_completion format) and
golden.jsonl (one eval case per line).
"""
import json
import os
import re


def normalise(text):
    """Case, punctuation and spacing do not make a prompt new."""
    return " ".join(re.sub(r"[^\w%]+", " ", text.lower()).split())


def unique_pairs(draw, count):
    """`count` (prompt, answer, tags) triples from draw() with distinct normalised prompts."""
    seen, out = set(), []
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 50 * count:
            raise RuntimeError(f"the grammar yields fewer than {count} distinct prompts")
        prompt, answer, tags = draw()
        key = normalise(prompt)
        if key not in seen:
            seen.add(key)
            out.append((prompt, answer, tags))
    return out


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_splits(out_dir, name, pairs, sizes, render_prompt, render_completion, golden_case):
    """Writes the three splits from pairs in order: golden first, then validation, then train."""
    n_golden, n_val, n_train = sizes["golden"], sizes["validation"], sizes["train"]
    assert len(pairs) == n_golden + n_val + n_train
    os.makedirs(out_dir, exist_ok=True)
    golden = pairs[:n_golden]
    val = pairs[n_golden:n_golden + n_val]
    train = pairs[n_golden + n_val:]
    write_jsonl(os.path.join(out_dir, "golden.jsonl"),
                [golden_case(f"{name}-{i:04d}", render_prompt(p), a, t) for i, (p, a, t) in enumerate(golden)])
    for split, rows in (("validation", val), ("train", train)):
        write_jsonl(os.path.join(out_dir, f"{split}.jsonl"),
                    [{"prompt": render_prompt(p), "completion": render_completion(a)} for p, a, _ in rows])
