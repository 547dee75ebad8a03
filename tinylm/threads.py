"""The default thread count: the CPUs this process may really use.

OpenMP and OpenBLAS each size their pools from the machine's CPU count, which
overcounts twice over on shared machines: a process pinned to a few cores
(taskset, Slurm, `docker --cpuset-cpus`) and a container with a CPU quota
(`docker --cpus=2`, Kubernetes limits) on a large host. Running 64 spinning
OpenMP threads under a 2-CPU quota is many times slower than running 2. So
tinylm counts the CPUs in its affinity mask, caps that by the cgroup CPU
quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`, every level up the hierarchy),
and gives OpenMP and OpenBLAS that one number at import. An explicit
TINYLM_NUM_THREADS or OMP_NUM_THREADS wins over the detected count.
"""
from __future__ import annotations

import math
import os

ENV_VARS = ("TINYLM_NUM_THREADS", "OMP_NUM_THREADS")


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (the whole machine if the OS has no such mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _quota_cpus(text: str | None, period_text: str | None = None) -> float | None:
    """CPUs allowed by one cgroup level: v2's "QUOTA PERIOD" (or "max PERIOD"),
    or v1's quota with its period read from a second file; None when unlimited."""
    if not text:
        return None
    parts = text.split()
    if period_text is not None:
        parts = [parts[0], period_text.strip()]
    if len(parts) != 2 or parts[0] in ("max", "-1"):
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _cgroup_mounts(mountinfo: str) -> list[tuple[str, str, str, set[str]]]:
    """(fstype, mount root, mount point, controllers) of each cgroup mount in /proc/self/mountinfo."""
    mounts = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        mounts.append((tail[0], fields[3], fields[4], set(tail[2].split(","))))
    return mounts


def cgroup_cpu_limit(proc: str = "/proc/self", sysroot: str = "") -> float | None:
    """The tightest CPU quota over this process's cgroup and its ancestors
    (None if there is none). `proc` and `sysroot` exist for tests."""
    cgroups = _read(os.path.join(proc, "cgroup"))
    mountinfo = _read(os.path.join(proc, "mountinfo"))
    if not cgroups or not mountinfo:
        return None
    limits = []
    for fstype, root, point, controllers in _cgroup_mounts(mountinfo):
        for line in cgroups.splitlines():
            hier, _, rest = line.partition(":")
            names, _, path = rest.partition(":")
            v2 = hier == "0" and names == ""
            if (fstype == "cgroup2") != v2 or (not v2 and "cpu" not in names.split(",")):
                continue
            if not v2 and "cpu" not in controllers:
                continue
            # Inside a container the mount's root is the container's own cgroup.
            rel = os.path.relpath(path, root) if path.startswith(root) else "."
            here = os.path.normpath(os.path.join(sysroot + point, rel))
            top = os.path.normpath(sysroot + point)
            while True:
                if v2:
                    cpus = _quota_cpus(_read(os.path.join(here, "cpu.max")))
                else:
                    cpus = _quota_cpus(_read(os.path.join(here, "cpu.cfs_quota_us")),
                                       _read(os.path.join(here, "cpu.cfs_period_us")) or "")
                if cpus is not None:
                    limits.append(cpus)
                if here == top or not here.startswith(top):
                    break
                here = os.path.dirname(here)
    return min(limits) if limits else None


def default_num_threads() -> int:
    """TINYLM_NUM_THREADS or OMP_NUM_THREADS if set, else the usable CPUs."""
    for var in ENV_VARS:
        value = os.environ.get(var, "").split(",")[0].strip()  # OMP allows a per-level list
        if value.isdigit() and int(value) > 0:
            return int(value)
    cpus = affinity_cpus()
    limit = cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)
