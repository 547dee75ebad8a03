"""The binary wheel as a user gets it: `make wheel` (sdist, `pip wheel` from
it with every x86-64 level of the core, `auditwheel repair`), installed with pip into
a fresh venv in a folder with no checkout, then

- `ldd` of every extension in the installed package: each library resolves,
  and every one that is not glibc (or one of the two other libraries the
  manylinux policy guarantees, libgcc_s and libz) resolves inside the
  venv, in tinylm.libs/;
- `tinylm demo --quick` and `tinylm train` for a few steps run there, and the
  process maps its OpenBLAS, libgomp, HDF5, PCRE2, utf8proc and cJSON from
  the wheel.

Where mount namespaces are permitted (`unshare -m`, root or user namespaces)
the install and the runs happen with /usr/include empty (no -dev headers)
and the system copies of those six libraries replaced by empty files, so a
fallback to them would fail; elsewhere they run as they are and a warning
says so.

The wheel: $TINYLM_WHEEL if set (`make test-wheel` passes the one `make
wheel` built); else one built by `make wheel` into a cache keyed by the
hash of the sources ($XDG_CACHE_HOME/tinylm/wheel/, ~/.cache by default):
about a minute on 2 cores the first time, nothing after. The venv's
dependencies (numpy, tqdm, pyyaml, jinja2) come from PyPI or pip's cache.
"""
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import warnings
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHEEL_MARCH = "all"
# What goes into the sdist (MANIFEST.in, pyproject.toml): the cache key.
SOURCES = ("setup.py", "pyproject.toml", "MANIFEST.in", "Makefile", "README.md", "csrc", "tinylm", "recipes",
           "datasets")
SKIP = re.compile(r"(__pycache__|\.so$|\.pyc$|^datasets/corpus/)")
# glibc's libraries and the dynamic loader, and the two others the manylinux
# policy lets a wheel take from the system (auditwheel never grafts them).
SYSTEM = re.compile(r"^(linux-vdso\.so|ld-linux-x86-64\.so|lib(c|m|dl|pthread|rt|resolv|util|nsl|mvec)\.so"
                    r"|libgcc_s\.so|libz\.so)")
# The libraries the issue names: none of them may come from the system.
VENDORED = ("libopenblas", "libgomp", "libhdf5", "libpcre2-8", "libutf8proc", "libcjson")
SYSTEM_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu")


def source_hash() -> str:
    h = hashlib.sha256(f"{sys.version_info[:2]} {WHEEL_MARCH}".encode())
    for top in SOURCES:
        path = os.path.join(REPO, top)
        files = [path] if os.path.isfile(path) else sorted(
            os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)
        for f in files:
            rel = os.path.relpath(f, REPO)
            if not SKIP.search(rel):
                h.update(rel.encode() + b"\0")
                with open(f, "rb") as fh:
                    h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()[:16]


def build_wheel() -> str:
    """The cached wheel of these sources, built by `make wheel` if missing."""
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tinylm", "wheel")
    folder = os.path.join(cache, source_hash())
    found = glob.glob(os.path.join(folder, "tinylm-*-manylinux*.whl"))
    if found:
        return found[0]
    if not shutil.which("make"):
        pytest.skip("no `make`: build the wheel with `make wheel` and set TINYLM_WHEEL")
    tmp = f"{folder}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    r = subprocess.run(["make", "-C", REPO, "wheel", f"DIST={tmp}", f"VENV={os.path.join(cache, 'tools')}",
                        f"PYTHON={sys.executable}", f"WHEEL_MARCH={WHEEL_MARCH}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"make wheel failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return glob.glob(os.path.join(folder, "tinylm-*-manylinux*.whl"))[0]


def system_copies() -> list[str]:
    """The system's files of the VENDORED libraries (real paths)."""
    out = set()
    for d in SYSTEM_LIB_DIRS:
        for name in VENDORED:
            for f in glob.glob(os.path.join(d, "**", name + "*.so*"), recursive=True):
                if os.path.isfile(f):
                    out.add(os.path.realpath(f))
    return sorted(out)


class Sandbox:
    """Runs commands in the test folder with a clean environment and, where
    permitted, in a mount namespace without the -dev headers or the system
    copies of the VENDORED libraries."""

    def __init__(self, root: str, venv: str):
        self.root, self.venv = root, venv
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "LD_LIBRARY_PATH", "LD_PRELOAD",
                                 "VIRTUAL_ENV", "PYTHONUSERBASE", "TINYLM_FORCE_ISA")}
        self.env.update(PATH=os.path.join(venv, "bin") + os.pathsep + os.environ.get("PATH", ""),
                        PYTHONNOUSERSITE="1", TINYLM_CACHE_DIR=os.path.join(root, "cache"),
                        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        empty = os.path.join(root, "empty.so")
        open(empty, "w").close()
        # mount(8) itself loads libpcre2-8 (through libselinux): hide it last.
        self.hidden = sorted(system_copies(), key=lambda f: "libpcre2" in f)
        script = "set -e; mount -t tmpfs tmpfs /usr/include; " + "".join(
            f"mount --bind '{empty}' '{f}'; " for f in self.hidden) + 'exec "$@"'
        unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]
        self.prefix = [*unshare, "sh", "-c", script, "sh"]
        probe = self.run("sh", "-c", '[ -z "$(ls -A /usr/include)" ]', check=False) if shutil.which("unshare") else None
        if probe is None or probe.returncode != 0:
            self.prefix = []
            warnings.warn("mount namespaces not permitted here: the wheel runs with the system's headers and "
                          "libraries present (ldd and /proc/self/maps still show where each library comes from)")

    def run(self, *cmd, check=True, timeout=600):
        r = subprocess.run([*getattr(self, "prefix", []), *cmd], cwd=self.root, env=self.env, capture_output=True,
                           text=True, timeout=timeout)
        if check:
            assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
        return r


@pytest.fixture(scope="module")
def wheel():
    path = os.path.abspath(os.environ.get("TINYLM_WHEEL") or build_wheel())
    assert os.path.isfile(path), path
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """(sandbox, site-packages) with the wheel installed in a fresh venv."""
    root = str(tmp_path_factory.mktemp("wheel-user"))
    venv = os.path.join(root, "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, cwd=root)
    box = Sandbox(root, venv)
    box.run(os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel)
    site = box.run(os.path.join(venv, "bin", "python"), "-c",
                   "import sysconfig; print(sysconfig.get_paths()['platlib'])").stdout.strip()
    return box, site


def test_wheel_is_manylinux_and_carries_its_data(wheel):
    name = os.path.basename(wheel)
    assert re.match(r"tinylm-[^-]+-cp\d+-cp\d+-manylinux_2_\d+_x86_64\.whl$", name), name
    files = zipfile.ZipFile(wheel).namelist()
    libs = [os.path.basename(f) for f in files if f.startswith("tinylm.libs/")]
    for lib in VENDORED:
        assert any(f.startswith(lib) for f in libs), (lib, libs)
    for data in ("tinylm/models/demo/model.safetensors", "tinylm/models/demo/tokenizer.json",
                 "tinylm/recipes/configs/lora_finetune.yaml", "tinylm/datasets/smart_home/train.jsonl",
                 "tinylm/datasets/smart_home/golden.jsonl", "tinylm/datasets/support_triage/train.jsonl"):
        assert data in files, data


def test_every_extension_resolves_inside_the_wheel(installed):
    box, site = installed
    extensions = sorted(glob.glob(os.path.join(site, "tinylm", "**", "*.so"), recursive=True))
    assert extensions, f"no extension module under {site}/tinylm"
    for ext in extensions:
        out = box.run("ldd", ext).stdout
        assert "not found" not in out, out
        # the CPU probe needs no shared library at all: ldd says "statically linked"
        for line in ([] if out.strip() == "statically linked" else out.splitlines()):
            m = re.match(r"\s*(\S+)(?: => (\S+))?", line)
            name, path = m.group(1), m.group(2)
            if SYSTEM.match(os.path.basename(name)):
                continue
            assert path and os.path.realpath(path).startswith(os.path.realpath(site) + os.sep), \
                f"{os.path.basename(ext)}: {name} resolves outside the wheel: {line.strip()}"
        if shutil.which("readelf"):
            dyn = box.run("readelf", "-d", ext).stdout
            assert "/usr/" not in dyn, f"{ext}: an RPATH/RUNPATH into the system:\n{dyn}"
            # Each variant built for its own level, never the building CPU: gcc records -march=native
            # as the CPU's own name (e.g. -march=icelake-server) in the debug info.
            info = box.run("readelf", "--debug-dump=info", ext).stdout
            marches = set(re.findall(r"DW_AT_producer.*?-march=(\S+)", info))
            level = re.match(r"_core_(x86_64_v\d)", os.path.basename(ext))
            expected = {level.group(1).replace("_", "-")} if level else {"x86-64"}  # the probe: plain x86-64
            assert marches == expected, f"{os.path.basename(ext)} compiled with -march={marches}, not {expected}"
    names = {os.path.basename(e).split(".")[0] for e in extensions}
    assert names == {"_cpu", "_core_x86_64_v2", "_core_x86_64_v3", "_core_x86_64_v4"}, names


def test_demo_and_finetune_run_from_the_wheel(installed):
    box, site = installed
    py = os.path.join(box.venv, "bin", "python")
    # Imported from the venv, not a checkout; the libraries mapped are the wheel's.
    maps = box.run(py, "-c", "import tinylm, tinylm._core\nimport glob, importlib, os\n"
                   "for f in glob.glob(os.path.join(os.path.dirname(tinylm.__file__), '_*.so')):\n"
                   "    importlib.import_module('tinylm.' + os.path.basename(f).split('.')[0])\n"
                   "tinylm.Model.from_pretrained(os.path.join(os.path.dirname(tinylm.__file__), 'models', 'demo'))\n"
                   "print(tinylm.__file__)\nprint(open('/proc/self/maps').read())").stdout
    inside = os.path.realpath(site) + os.sep
    assert os.path.realpath(maps.splitlines()[0]).startswith(inside), maps.splitlines()[0]
    mapped = {os.path.realpath(p) for p in re.findall(r"(/\S+\.so[.\d]*)$", maps, re.M)}
    for lib in VENDORED:
        hits = [p for p in mapped if os.path.basename(p).startswith(lib)]
        assert hits, f"{lib} not mapped"
        assert all(p.startswith(inside) for p in hits), f"{lib} mapped from outside the wheel: {hits}"

    if box.prefix:   # the system's copies really are gone in the namespace
        for soname in ("libcjson.so.1", "libopenblas.so.0", "libgomp.so.1"):
            r = box.run(py, "-c", f"import ctypes; ctypes.CDLL({soname!r})", check=False)
            assert r.returncode != 0, f"{soname} still loads from the system"

    r = box.run("tinylm", "demo", "--quick", "--output", "demo", "train.disable_tqdm=true")
    for step in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]", "QUICK RUN"):
        assert step in r.stdout, r.stdout
    assert os.listdir(os.path.join(box.root, "demo", "export", "merged"))

    # A few fine-tuning steps with the defaults: the embedded model and the
    # shipped smart_home data, found from a folder with no checkout.
    r = box.run("tinylm", "train", "--max-steps", "3", "--batch-size", "8", "--output", "train",
                "data.validation=null", "train.disable_tqdm=true")
    assert "tinylm train: 3 steps" in r.stdout, r.stdout
    assert os.path.isfile(os.path.join(box.root, "train", "adapter", "adapter_model.safetensors"))
    assert not os.path.exists(os.path.join(box.root, "datasets"))
