"""Shared benchmark machinery: each measured case runs in its own Python
process (so its peak RSS is its own and no library's import cost leaks into
another's), times the best of a few steps after a warm-up, and reports back
one JSON line."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time


def peak_rss_mb() -> float:
    """This process's peak resident set. Linux's VmHWM belongs to the address
    space exec made; ru_maxrss is carried over from the parent across
    fork+exec, so a child of a large parent would report the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_steps(step, steps: int, tokens_per_step: int, **extra) -> dict:
    """Runs step() once to warm up (memory planned, pages touched), then
    `steps` times; reports the best step."""
    step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"step_s": best, "tokens_per_s": tokens_per_step / best, "peak_rss_mb": peak_rss_mb(), **extra}


def run_case(script: str, case: str, args: list[str], threads: int) -> dict:
    """Runs `script --case CASE args...` in a fresh process with `threads`
    threads for every pool (OpenMP, OpenBLAS, MKL, torch intra-op)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, script, "--case", case, *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_selected(script: str, args, cases: dict, keys: list[str]) -> dict | None:
    """In a child (--case NAME): runs that case and prints its JSON line,
    returning None. In the parent: runs each case of args.cases in its own
    process, passing the options named in `keys` through, and returns
    {case: result}."""
    if args.case:
        print(json.dumps(cases[args.case](args)))
        return None
    passthrough = [f"--{k}={getattr(args, k)}" for k in keys]
    import tinylm  # the children inherit TINYLM_ISA, so they load the same build
    print(f"  tinylm kernels: {tinylm.isa()} (the best this CPU runs unless TINYLM_ISA forces one)", flush=True)
    results = {}
    for case in args.cases.split(","):
        results[case] = run_case(script, case, passthrough, args.threads)
        print(f"  {case}: {results[case]}", flush=True)
    return results


def ratio(a: dict, b: dict, key: str) -> str:
    if "error" in a or "error" in b:
        return "n/a"
    return f"{a[key] / b[key]:.2f}x"


def tinylm_train_step(model, optimizer, ids, labels):
    """A closure for one tinylm training step (zero_grad, loss, backward, AdamW)."""
    def step():
        model.zero_grad()
        model.loss(ids, labels)
        model.backward()
        optimizer.step()
    return step


def torch_train_step(model, optimizer, ids, labels):
    """The same step in PyTorch."""
    def step():
        optimizer.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
    return step
