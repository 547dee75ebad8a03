"""Crash safety, measured: a process SIGKILLed in the middle of writing each
kind of file tinylm writes leaves the previous version intact and loadable,
and the next run recovers; a full disk is a clear OSError that leaves no
partial file; two processes building one HDF5 cache both succeed.

The kill lands mid-write deterministically: the child runs with
TINYLM_TEST_STOP_AT=<point>[:<n>] (csrc/core/testpoint.c), stops itself with
SIGSTOP at that point of its n-th write, the test checks that the write is
really under way (its temporary file is on disk) and SIGKILLs it. The
writers the children run are tests/crash_writers.py. docs/reliability.md ("Crash-safe writes")
lists the scenarios.
"""
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import crash_writers as cw
import tinylm
from tinylm import _core, atomic, cli
from tinylm.export import export
from tinylm.recipe_support import DEMO_MODEL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMP = re.compile(r"\.tmp-\d+-[0-9a-f]+$")
STEPS = 4  # the checkpoint tests' run: a checkpoint every step


# ----------------------------------------------------------------- children
def child_env(**extra):
    return {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1", **extra}


def writer(*args):
    return [sys.executable, os.path.join(ROOT, "tests", "crash_writers.py"), *map(str, args)]


def tinylm_cli(*args):
    return [sys.executable, "-m", "tinylm", *map(str, args)]


def spawn(cmd, point=None):
    env = child_env()
    env.pop("TINYLM_TEST_STOP_AT", None)
    if point:
        env["TINYLM_TEST_STOP_AT"] = point
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(cmd):
    proc = spawn(cmd)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return out


def wait_stopped(proc, point, timeout=120):
    """Waits until proc has stopped itself at `point`; fails if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
        if pid and os.WIFSTOPPED(status):
            return
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            _, err = proc.communicate()
            pytest.fail(f"the child exited ({proc.returncode}) without reaching {point}:\n{err[-3000:]}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"the child did not reach {point} in {timeout} s")


def kill(proc):
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the child must die by SIGKILL, not finish"


def cont(proc):
    """Lets a stopped child go on; returns its stdout."""
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return out


@contextlib.contextmanager
def stopped_at(point, cmd):
    """Runs cmd until it stops at `point`, yields while it is frozen there
    (mid-write), then SIGKILLs it."""
    proc = spawn(cmd, point)
    wait_stopped(proc, point)
    try:
        yield proc
    finally:
        kill(proc)


def finals(folder):
    """sha256 by name of the files in folder that are not temporary."""
    return {name: h for name, h in cw.digest(folder).items() if not TEMP.search(name)}


def temps(directory):
    """Temporary files and folders under directory (relative paths)."""
    return sorted(os.path.relpath(os.path.join(root, n), directory) for root, dirs, files in os.walk(directory)
                  for n in dirs + files if TEMP.search(n))


# ------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def train_files(tmp_path_factory):
    """(data file, token cache folder) of the checkpoint tests."""
    root = tmp_path_factory.mktemp("train")
    cw.write_data(root / "train.jsonl", 12)
    return root / "train.jsonl", root / "cache"


@pytest.fixture(scope="module")
def uninterrupted(train_files, tmp_path_factory):
    """The final checkpoint of a run that was never killed."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    run(writer("train", *train_files, out, STEPS))
    return cw.digest(out / f"checkpoint-{STEPS}")


def assert_complete_checkpoint(folder):
    for name in ("trainer_state.json", "rng_state.json"):
        with open(os.path.join(folder, name)) as f:
            json.load(f)
    cw.model(0).load_adapter(folder)
    with _core.SafetensorsFile(os.path.join(folder, "optimizer.safetensors")) as st:
        assert st.tensors()


def checkpoint_steps(out):
    return [step for step, _ in tinylm.trainer.checkpointing.checkpoints(str(out))]


# Checkpoint k writes adapter_model.safetensors (safetensors write 2k-1),
# adapter_config.json (text write 3k-2), optimizer.safetensors (2k),
# trainer_state.json (3k-1), rng_state.json (3k), then renames its folder
# (folder rename k).
@pytest.mark.parametrize("point, half_written", [
    ("safetensors:partial:5", "adapter_model.safetensors"), ("safetensors:rename:6", "optimizer.safetensors"),
    ("file:partial:8", "trainer_state.json"), ("folder:rename:3", None)])
def test_kill_while_writing_a_checkpoint_then_resume(point, half_written, train_files, uninterrupted, tmp_path):
    out = tmp_path / "run"
    with stopped_at(point, writer("train", *train_files, out, STEPS)):
        pending = [t for t in temps(out) if t.startswith("checkpoint-3.tmp-") and os.sep not in t]
        assert len(pending) == 1, temps(out)
        inside = os.listdir(out / pending[0])
        if half_written:
            assert any(n.startswith(half_written + ".tmp-") for n in inside), inside
        else:
            assert set(inside) == {"adapter_model.safetensors", "adapter_config.json", "optimizer.safetensors",
                                   "trainer_state.json", "rng_state.json"}
        assert checkpoint_steps(out) == [1, 2]
    assert checkpoint_steps(out) == [1, 2]
    assert_complete_checkpoint(out / "checkpoint-2")
    run(writer("train", *train_files, out, STEPS, "resume"))
    assert checkpoint_steps(out) == [2, 3, 4] and temps(out) == []
    final = cw.digest(out / f"checkpoint-{STEPS}")
    for name in ("adapter_model.safetensors", "optimizer.safetensors"):
        assert final[name] == uninterrupted[name], f"{name}: the resumed run must end where an unkilled one does"


def test_kill_while_pruning_an_old_checkpoint(train_files, uninterrupted, tmp_path):
    """save_total_limit=3: checkpoint 4 deletes checkpoint 1. Killed in the
    middle of that deletion, the run leaves checkpoint 1 either whole or gone
    (renamed away first, then emptied), never a folder with half its files."""
    out = tmp_path / "run"
    with stopped_at("folder:remove:1", writer("train", *train_files, out, STEPS)):
        assert checkpoint_steps(out) == [2, 3, 4]
        assert [t for t in temps(out) if os.sep not in t and t.startswith("checkpoint-1.tmp-")]
    for step in checkpoint_steps(out):
        assert_complete_checkpoint(out / f"checkpoint-{step}")
    run(writer("train", *train_files, out, STEPS, "resume"))
    assert temps(out) == []
    final = cw.digest(out / f"checkpoint-{STEPS}")
    assert final["adapter_model.safetensors"] == uninterrupted["adapter_model.safetensors"]


def _run_timing_checkpoints(cmd, out, steps):
    """Runs cmd to the end, noting when each checkpoint appears: the seconds
    one training step (with its checkpoint) takes."""
    proc, seen = spawn(cmd), {}
    while proc.poll() is None:
        for step in checkpoint_steps(out):
            seen.setdefault(step, time.monotonic())
        time.sleep(0.005)
    _, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    times = sorted(seen.values())
    return (times[-1] - times[0]) / max(len(times) - 1, 1)


def test_random_kills_during_training(train_files, tmp_path):
    """Kills a training run (a checkpoint every step) at random times, a
    bounded number of times, resuming after each kill; every checkpoint on
    disk is complete after every kill, and the run ends where an unkilled
    one does. A kill lands at a random point of a random step short of the
    last (after that step's predecessor's checkpoint appeared), so it does
    not depend on how fast the machine is. TINYLM_CRASH_SEED picks the times
    (printed on failure)."""
    seed = int(os.environ.get("TINYLM_CRASH_SEED", "0"))
    rng = random.Random(seed)
    steps, rounds = 10, 4
    clean = tmp_path / "clean"
    step_time = _run_timing_checkpoints(writer("train", *train_files, clean, steps), clean, steps)
    out, killed, mid_write = tmp_path / "run", 0, 0
    for _ in range(rounds):
        done = max(checkpoint_steps(out), default=0)
        target = rng.randint(done, steps - 2)  # the checkpoint after which this run dies
        proc = spawn(writer("train", *train_files, out, steps, "resume" if done else "fresh"))
        while proc.poll() is None and max(checkpoint_steps(out), default=0) < target:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.9) * step_time)
        if proc.poll() is None:
            kill(proc)
            killed += 1
        else:
            proc.communicate()
        mid_write += bool(temps(out))
        for step in checkpoint_steps(out):
            assert_complete_checkpoint(out / f"checkpoint-{step}")
    run(writer("train", *train_files, out, steps, "resume"))
    print(f"seed {seed}: {killed} of {rounds} runs killed, {mid_write} of them mid-write")
    assert killed >= rounds // 2, f"seed {seed}: most runs must be killed for the test to mean anything"
    final, expected = cw.digest(out / f"checkpoint-{steps}"), cw.digest(clean / f"checkpoint-{steps}")
    assert final["adapter_model.safetensors"] == expected["adapter_model.safetensors"], f"seed {seed}"


# ------------------------------------------------------- models, adapters
def load(kind, folder):
    if kind == "adapter":
        cw.model(0).load_adapter(folder)
    else:
        tinylm.Model.from_pretrained(folder)


# changed: the files that already hold the new version when the kill lands
# (the config is written last, as Hugging Face and PEFT do).
@pytest.mark.parametrize("kind, point, changed", [
    ("model", "safetensors:partial", set()), ("model", "safetensors:rename", set()),
    ("model", "file:partial", {"model.safetensors"}), ("merged", "safetensors:partial", set()),
    ("adapter", "safetensors:partial", set()), ("adapter", "file:partial", {"adapter_model.safetensors"})])
def test_kill_while_saving_a_model(kind, point, changed, tmp_path):
    folder = tmp_path / kind
    cw.main([kind, str(folder), "1"])
    before = finals(folder)

    def changed_files():
        now = finals(folder)
        assert now.keys() == before.keys()
        return {name for name in now if now[name] != before[name]}

    with stopped_at(point, writer(kind, folder, 2)):
        assert len(temps(folder)) == 1, "the new file is under its temporary name"
        assert changed_files() == changed
    assert changed_files() == changed
    load(kind, folder)
    cw.main([kind, str(folder), "2"])  # the next save recovers, and clears what the killed one left
    cw.main([kind, str(tmp_path / "fresh"), "2"])
    assert temps(folder) == [] and cw.digest(folder) == cw.digest(tmp_path / "fresh")


# --------------------------------------------------------------- the cache
@pytest.mark.parametrize("point", ["cache:partial", "cache:rename"])
def test_kill_while_building_the_cache_then_rebuild(point, tmp_path):
    data, cache = tmp_path / "data.jsonl", tmp_path / "cache"
    cw.write_data(data, 600)  # more than one append (tinylm.data.cache.CHUNK)
    with stopped_at(point, writer("cache", data, cache)):
        left = os.listdir(cache)
        assert len(left) == 1 and TEMP.search(left[0]), left
    first = cw.cache_contents(cw.load_data(data, cache))
    assert not first["hit"], "the cache is rebuilt"
    assert [n for n in os.listdir(cache)] == [re.sub(TEMP, "", left[0])], "the killed build's file is gone"
    assert cw.cache_contents(cw.load_data(data, cache)) == dict(first, hit=True)
    assert first == dict(cw.cache_contents(cw.load_data(data, tmp_path / "fresh")))


def test_two_processes_building_one_cache(tmp_path):
    """Both end with a valid cache and neither crashes, in the orders that
    matter: both finish writing before either renames; one renames while
    the other is half-way; and several free-running rounds."""
    data = tmp_path / "data.jsonl"
    cw.write_data(data, 1500)
    expected = dict(cw.cache_contents(cw.load_data(data, tmp_path / "reference")), hit=False)

    def check(outputs, cache):
        for out in outputs:
            got = json.loads(out)
            assert {k: got[k] for k in ("rows", "digest")} == {k: expected[k] for k in ("rows", "digest")}
        assert len(os.listdir(cache)) == 1 and temps(cache) == []
        assert cw.cache_contents(cw.load_data(data, cache)) == dict(expected, hit=True)

    cache = tmp_path / "both-at-rename"
    a, b = spawn(writer("cache", data, cache), "cache:rename"), spawn(writer("cache", data, cache), "cache:rename")
    wait_stopped(a, "cache:rename")
    wait_stopped(b, "cache:rename")
    os.kill(b.pid, signal.SIGCONT)
    check([cont(a), cont(b)], cache)

    cache = tmp_path / "one-half-way"
    a = spawn(writer("cache", data, cache), "cache:partial")
    wait_stopped(a, "cache:partial")
    b = run(writer("cache", data, cache))
    check([b, cont(a)], cache)

    for i in range(1):
        cache = tmp_path / f"free-{i}"
        procs = [spawn(writer("cache", data, cache)) for _ in range(2)]
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err[-3000:]
            outs.append(out)
        check(outs, cache)


# ----------------------------------------------------------- eval reports
@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """Two golden files for the demo model: the previous run's and the next one's."""
    root = tmp_path_factory.mktemp("golden")
    cases = [{"id": f"c{i}", "prompt": f"Command: turn on light {i}\nJSON:\n", "expected": "{}", "check": "exact"}
             for i in range(3)]
    for name, n in (("old.jsonl", 2), ("new.jsonl", 3)):
        (root / name).write_text("".join(json.dumps(c) + "\n" for c in cases[:n]))
    return root


def eval_args(golden_file, out):
    return ["eval", "--model", DEMO_MODEL, "--golden", golden_file, "--max-new-tokens", "2", "--no-progress",
            "--report", out / "r.json", "--junit", out / "r.xml", "--markdown", out / "r.md"]


def read_report(path):
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix == ".xml":
        return ET.parse(path)
    return path.read_text()


@pytest.mark.parametrize("nth, name", [(1, "r.json"), (2, "r.xml"), (3, "r.md")])  # the order they are written
def test_kill_while_writing_eval_reports(nth, name, golden, tmp_path):
    assert cli.main([str(a) for a in eval_args(golden / "old.jsonl", tmp_path)]) == 0
    before = {n: (tmp_path / n).read_bytes() for n in ("r.json", "r.xml", "r.md")}
    with stopped_at(f"file:partial:{nth}", tinylm_cli(*eval_args(golden / "new.jsonl", tmp_path))):
        assert [t for t in temps(tmp_path) if t.startswith(name + ".tmp-")], temps(tmp_path)
    assert (tmp_path / name).read_bytes() == before[name]
    for n in before:
        read_report(tmp_path / n)
    assert cli.main([str(a) for a in eval_args(golden / "new.jsonl", tmp_path)]) == 0
    assert temps(tmp_path) == [] and len(json.loads((tmp_path / "r.json").read_text())["cases"]) == 3


def test_kill_while_writing_the_demo_summary(tmp_path):
    path = tmp_path / "summary.json"
    cw.write_summary(str(path), cw.summary(1))
    before = path.read_bytes()
    with stopped_at("file:partial", writer("summary", path, 2)):
        (tmp, ) = temps(tmp_path)
        half = (tmp_path / tmp).read_text()
        assert 0 < len(half) < len(json.dumps(cw.summary(2), indent=2)), "the temporary file is half written"
    assert path.read_bytes() == before and json.loads(before)["seed"] == 1
    cw.write_summary(str(path), cw.summary(2))
    assert temps(tmp_path) == [] and json.loads(path.read_text())["seed"] == 2


# ----------------------------------------------------------------- exports
@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Two adapters of the demo model, the export of the first (the previous
    one on disk) and of the second (what a completed export writes)."""
    root = tmp_path_factory.mktemp("exports")
    for seed in (1, 2):
        m = tinylm.Model.from_pretrained(DEMO_MODEL)
        m.add_lora(r=2, alpha=4, target_modules=["q_proj", "v_proj"], seed=seed)
        rng = np.random.default_rng(seed)
        for name in m.trainable_names():
            m.param(name)[...] = rng.normal(0, 0.02, m.param(name).shape)
        m.save_adapter(root / f"adapter{seed}")
        export(str(root / f"adapter{seed}"), str(root / f"export{seed}"))
    return root


def export_digests(out):
    return {d: cw.digest(out / d) for d in ("adapter", "merged")}


# Writes in order: the adapter's weights (safetensors 1), its folder
# (folder rename 1), the merged weights (safetensors 2), its folder (2).
@pytest.mark.parametrize("point, done", [("safetensors:partial:1", []), ("folder:rename:1", []),
                                         ("safetensors:partial:2", ["adapter"])])
def test_kill_while_exporting(point, done, exports, tmp_path):
    out = tmp_path / "export"
    shutil.copytree(exports / "export1", out)
    old, new = export_digests(exports / "export1"), export_digests(exports / "export2")
    with stopped_at(point, tinylm_cli("export", "--adapter", exports / "adapter2", "--output", out)):
        assert [t for t in temps(out) if TEMP.search(t.split(os.sep)[0])], "a folder is being filled"
    now = export_digests(out)
    assert now == {d: (new if d in done else old)[d] for d in now}
    tinylm.Model.from_pretrained(DEMO_MODEL).load_adapter(out / "adapter")
    tinylm.Model.from_pretrained(out / "merged")
    export(str(exports / "adapter2"), str(out))
    assert temps(out) == [] and export_digests(out) == new


# ------------------------------------------------ folders without exchange
def test_kill_between_the_two_renames_of_a_folder_replacement(tmp_path):
    """Where RENAME_EXCHANGE is missing, a folder is replaced in two
    renames; killed between them, the next write of the folder puts the
    previous one back before anything else, even when that write fails."""
    folder = tmp_path / "best"
    atomic.write_folder(folder, cw.fill_folder(1))
    with stopped_at("folder:swap", writer("folder-fallback", folder, 2)):
        assert not folder.exists() and (tmp_path / "best.old").is_dir()

    def fail(path):
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        atomic.write_folder(folder, fail)
    assert json.loads((folder / "a.json").read_text()) == {"seed": 1} and temps(tmp_path) == []
    atomic.write_folder(folder, cw.fill_folder(2))
    assert json.loads((folder / "a.json").read_text()) == {"seed": 2}
    assert sorted(os.listdir(tmp_path)) == ["best"]


def test_folders_are_swapped_in_one_step_here(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    if not atomic._exchange(str(tmp_path / "a"), str(tmp_path / "b")):
        pytest.skip("this filesystem or C library has no renameat2(RENAME_EXCHANGE): folders use two renames")
    assert (tmp_path / "b" / "x").read_text() == "a" and os.listdir(tmp_path / "a") == []


# --------------------------------------------------------------- full disk
def _tmpfs_works():
    probe = "mount -t tmpfs -o size=64k tmpfs /mnt 2>/dev/null"
    try:
        return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", probe],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


TMPFS = _tmpfs_works()
TMPFS_SIZE = 512 * 1024    # room for the previous versions, not for the new ones
FILE_LIMIT = 256 * 1024    # RLIMIT_FSIZE: the same, per file
# What names the failed write in its message.
NAMED = {"text": "report.json", "safetensors": "model.safetensors", "cache": ".h5", "checkpoint": "checkpoint-1"}


@pytest.mark.parametrize("method", ["tmpfs", "rlimit"])
@pytest.mark.parametrize("kind", ["text", "safetensors", "cache", "checkpoint"])
def test_full_disk_is_a_clear_error_and_leaves_nothing(kind, method, tmp_path):
    disk, inputs = tmp_path / "disk", tmp_path / "inputs"
    disk.mkdir()
    inputs.mkdir()
    args = writer("full-disk", kind, disk, inputs)
    if method == "tmpfs":
        if not TMPFS:
            pytest.skip("cannot mount a tmpfs in a user namespace here (unshare --user --mount)")
        script = f"mount -t tmpfs -o size={TMPFS_SIZE} tmpfs {disk} && exec " + " ".join(map(str, args))
        cmd, reason = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], "No space left on device"
    else:
        cmd, reason = args + [str(FILE_LIMIT)], "File too large"
    result = json.loads(run(cmd))
    error = result["error"]
    assert error and error["type"] == "OSError", result
    assert reason in error["message"] and NAMED[kind] in error["message"], error["message"]
    assert not [n for n in result["left"] if TEMP.search(n)], result["left"]
    if kind == "checkpoint":
        assert not [n for n in result["left"] if "checkpoint" in n], result["left"]
    else:
        assert result["previous_intact"] is True
