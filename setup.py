"""Builds tinylm._core from csrc/ against Debian's OpenMP build of OpenBLAS.

Every .c file under csrc/ is part of the extension; csrc/py/ holds the only
code that includes Python.h. Arrays cross the boundary by the buffer protocol,
so no numpy headers are needed at build time.
"""
import glob
import os
import subprocess

from setuptools import Extension, setup


def pkg_config(*args):
    try:
        out = subprocess.run(["pkg-config", *args], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(
            f"pkg-config {' '.join(args)} failed ({exc}); run `make deps` to install the Debian -dev packages"
        )
    return out.split()


PKGS = ["openblas", "libcjson", "hdf5", "libpcre2-8", "libutf8proc"]
flags = pkg_config("--cflags", "--libs", *PKGS)
include_dirs = [f[2:] for f in flags if f.startswith("-I")] + ["csrc"]
library_dirs = [f[2:] for f in flags if f.startswith("-L")]
libraries = [f[2:] for f in flags if f.startswith("-l")]

sources = sorted(glob.glob("csrc/**/*.c", recursive=True))
debug = os.environ.get("TINYLM_DEBUG") == "1"
# A source build tunes our own loops for the building CPU; set TINYLM_MARCH=x86-64-v2 for a portable wheel.
march = os.environ.get("TINYLM_MARCH", "native")

core = Extension(
    "tinylm._core",
    sources=sources,
    include_dirs=include_dirs,
    define_macros=[("_DEFAULT_SOURCE", None)],  # POSIX (mmap, strdup, fsync) under -std=c11
    library_dirs=library_dirs,
    runtime_library_dirs=library_dirs,  # the OpenMP OpenBLAS lives outside the default search path
    libraries=libraries + ["m"],
    extra_compile_args=["-std=c11", "-fopenmp", "-Wall", "-Wextra", "-Werror=implicit-function-declaration",
                        "-O0" if debug else "-O3", f"-march={march}", "-fno-math-errno", "-fno-trapping-math", "-g"],
    extra_link_args=["-fopenmp"],
)

setup(ext_modules=[core])
