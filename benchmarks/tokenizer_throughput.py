"""Encode throughput of tinylm.Tokenizer against Hugging Face `tokenizers` on
the same text and threads, in one run. Each (side, threads) runs in its own
process: `tokenizers` sizes its rayon pool from RAYON_NUM_THREADS at import,
tinylm uses tinylm.set_num_threads.

    python benchmarks/tokenizer_throughput.py [--threads 1 2] [--mb 8] [--repeats 5] [TOKENIZER_DIR ...]

The text is real: Python standard-library sources (code) and the Debian
license texts (English prose), cut into ~2 KB documents at line breaks and
encoded with encode_batch. Both sides deliver list[int] per document, so the
`tokenizers` timings include reading .ids from its Encodings (encode_batch,
and encode_batch_fast, which skips offsets). Prints MB/s (best of the
repeats; UTF-8 bytes) and the ratio tinylm / tokenizers, after checking that
both sides produced the same ids.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import time

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "fixtures", "tokenizers")


def documents(mb: float) -> list[str]:
    code = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    prose = sorted(glob.glob("/usr/share/common-licenses/*")) or code
    # Alternate code and prose so that any amount of text holds both.
    order = [f for i, c in enumerate(code) for f in (c, prose[i % len(prose)])]
    docs, cur, size, total, limit = [], [], 0, 0, int(mb * 1e6)
    for path in order:
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f.read().splitlines(keepends=True):
                cur.append(line)
                size += len(line.encode())
                if size >= 2000:
                    docs.append("".join(cur))
                    total += size
                    cur, size = [], 0
                    if total >= limit:
                        return docs
    return docs


def run_side(side: str, path: str, threads: int, mb: float, repeats: int) -> dict:
    docs = documents(mb)
    nbytes = sum(len(d.encode()) for d in docs)
    if side == "tinylm":
        import tinylm
        tinylm.set_num_threads(threads)
        tok = tinylm.Tokenizer.from_pretrained(path)
        variants = {"encode_batch": lambda: tok.encode_batch(docs)}
    else:
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
        variants = {"encode_batch": lambda: [e.ids for e in tok.encode_batch(docs)],
                    "encode_batch_fast": lambda: [e.ids for e in tok.encode_batch_fast(docs)]}
    out = {"bytes": nbytes, "docs": len(docs)}
    for name, fn in variants.items():
        ids = fn()   # warm-up (pages, caches, thread pools)
        best = min(timed(fn) for _ in range(repeats))
        out[name] = nbytes / best / 1e6
        out["digest"] = hashlib.sha256(json.dumps(ids).encode()).hexdigest()
    return out


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tokenizers", nargs="*", help="tokenizer folders (default: the shared fixtures)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--mb", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--side", choices=["tinylm", "tokenizers"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    paths = args.tokenizers or [os.path.abspath(os.path.join(FIXTURES, n)) for n in ("qwen3", "mistral-7b")]
    if args.side:
        print(json.dumps(run_side(args.side, paths[0], args.threads[0], args.mb, args.repeats)))
        return
    print(f"{'tokenizer':12} {'threads':>7} {'tinylm MB/s':>12} {'tokenizers MB/s':>16} {'(fast)':>8} {'ratio':>7}")
    for path in paths:
        for threads in args.threads:
            env = dict(os.environ, RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true",
                       OMP_NUM_THREADS=str(threads))
            res = {}
            for side in ("tinylm", "tokenizers"):
                cmd = [sys.executable, __file__, path, "--side", side, "--threads", str(threads),
                       "--mb", str(args.mb), "--repeats", str(args.repeats)]
                out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
                res[side] = json.loads(out.strip().splitlines()[-1])
            ours, ref = res["tinylm"], res["tokenizers"]
            if ours["digest"] != ref["digest"]:
                raise SystemExit(f"{path}: tinylm and tokenizers produced different ids")
            best_ref = max(ref["encode_batch"], ref["encode_batch_fast"])
            print(f"{os.path.basename(path):12} {threads:7d} {ours['encode_batch']:12.2f} {ref['encode_batch']:16.2f} "
                  f"{ref['encode_batch_fast']:8.2f} {ours['encode_batch'] / best_ref:6.2f}x")
    print(f"text: {ours['bytes'] / 1e6:.1f} MB in {ours['docs']} documents (stdlib code + license prose); "
          f"best of {args.repeats}; ratio against the faster tokenizers call")


if __name__ == "__main__":
    main()
