"""The default thread count follows the CPUs the process may use, and OpenMP
and OpenBLAS get the same count (no oversubscription)."""
import os
import subprocess
import sys

import pytest

from tinylm import threads

# Prints tinylm's count and the count of the OpenBLAS the extension links
# (found in the process's mappings; numpy's and torch's own copies are not it).
PROBE = r"""
import ctypes, re, tinylm
libs = sorted({m.group(0) for m in re.finditer(r"/\S*/libopenblas[^/\s]*\.so[.0-9]*", open("/proc/self/maps").read())})
ours = [p for p in libs if "scipy_openblas" not in p and "numpy" not in p]
blas = ctypes.CDLL(ours[0]).openblas_get_num_threads() if ours else -1
print(tinylm.get_num_threads(), blas)
"""


def probe(env=None, cpus=None):
    env = {k: v for k, v in os.environ.items() if k not in threads.ENV_VARS} | (env or {})
    pre = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, preexec_fn=pre, capture_output=True,
                         text=True, check=True).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_default_follows_the_affinity_mask_and_blas_agrees():
    one = sorted(os.sched_getaffinity(0))[:1]
    assert probe(cpus=one) == (1, 1)
    everything = len(os.sched_getaffinity(0))
    limit = threads.cgroup_cpu_limit()
    expected = everything if limit is None else min(everything, max(1, -(-limit // 1)))
    assert probe() == (expected, expected)


def test_explicit_counts_win_and_reach_blas():
    assert probe({"OMP_NUM_THREADS": "3"}) == (3, 3)
    assert probe({"TINYLM_NUM_THREADS": "2", "OMP_NUM_THREADS": "3"}) == (2, 2)


def test_set_num_threads_sets_both_pools():
    script = PROBE.replace("import ctypes, re, tinylm", "import ctypes, re, tinylm; tinylm.set_num_threads(5)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["5", "5"]


def fake_proc(tmp_path, cgroup, mountinfo):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup)
    (proc / "mountinfo").write_text(mountinfo)
    return str(proc)


def write(root, rel, name, text):
    folder = root / rel.lstrip("/")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text + "\n")


def test_cgroup_v2_quota_is_the_tightest_level(tmp_path):
    mountinfo = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    proc = fake_proc(tmp_path, "0::/kubepods/pod1/ctr\n", mountinfo)
    sysroot = tmp_path / "root"
    write(sysroot, "/sys/fs/cgroup/kubepods/pod1/ctr", "cpu.max", "max 100000")
    write(sysroot, "/sys/fs/cgroup/kubepods/pod1", "cpu.max", "150000 100000")
    write(sysroot, "/sys/fs/cgroup/kubepods", "cpu.max", "400000 100000")
    assert threads.cgroup_cpu_limit(proc, str(sysroot)) == 1.5


def test_cgroup_v2_inside_a_container_reads_its_own_root(tmp_path):
    # Without a cgroup namespace the container's mount root is its own cgroup.
    mountinfo = "600 590 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n"
    proc = fake_proc(tmp_path, "0::/docker/abc\n", mountinfo)
    sysroot = tmp_path / "root"
    write(sysroot, "/sys/fs/cgroup", "cpu.max", "200000 100000")
    assert threads.cgroup_cpu_limit(proc, str(sysroot)) == 2.0


def test_cgroup_v1_quota_and_no_quota(tmp_path):
    mountinfo = ("25 23 0:22 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
                 "26 23 0:23 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")
    proc = fake_proc(tmp_path, "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n", mountinfo)
    sysroot = tmp_path / "root"
    write(sysroot, "/sys/fs/cgroup/cpu,cpuacct/docker/abc", "cpu.cfs_quota_us", "300000")
    write(sysroot, "/sys/fs/cgroup/cpu,cpuacct/docker/abc", "cpu.cfs_period_us", "100000")
    write(sysroot, "/sys/fs/cgroup/cpu,cpuacct", "cpu.cfs_quota_us", "-1")
    write(sysroot, "/sys/fs/cgroup/cpu,cpuacct", "cpu.cfs_period_us", "100000")
    assert threads.cgroup_cpu_limit(proc, str(sysroot)) == 3.0
    write(sysroot, "/sys/fs/cgroup/cpu,cpuacct/docker/abc", "cpu.cfs_quota_us", "-1")
    assert threads.cgroup_cpu_limit(proc, str(sysroot)) is None


def test_quota_below_one_cpu_still_gives_one_thread(monkeypatch):
    for var in threads.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 0.25)
    assert threads.default_num_threads() == 1
