"""Builds tinylm's C core from csrc/ against Debian's OpenMP build of OpenBLAS.

Every .c file under csrc/ is part of the core; csrc/py/ holds the only code
that includes Python.h. Arrays cross the boundary by the buffer protocol, so
no numpy headers are needed at build time.

Portable build, kernel path chosen at run time (docs/architecture.md, "Build"):
our loops have no intrinsics, GCC auto-vectorizes them, so the instruction set
is a compiler flag. On x86-64 the whole core is compiled once per psABI level,
each a complete extension module with its own PyInit name:

    tinylm._core_x86_64_v2   -march=x86-64-v2  SSE4.2, POPCNT: the baseline / fallback
    tinylm._core_x86_64_v3   -march=x86-64-v3  AVX2, FMA, F16C, BMI1/2
    tinylm._core_x86_64_v4   -march=x86-64-v4  AVX-512 F/BW/CD/DQ/VL
    tinylm._cpu              -march=x86-64     the CPU probe (__builtin_cpu_supports), runs anywhere

tinylm/_core.py picks the best variant the CPU (and OS) supports and installs
it as tinylm._core; TINYLM_ISA=x86-64-v2|x86-64-v3|x86-64-v4 forces one.
Elsewhere (aarch64, ...) one variant, tinylm._core_generic, with the
compiler's default flags. Whole-module variants rather than per-function
dispatch: every loop GCC vectorizes gets the wider path without being
annotated, and the paths share no code that could be mis-compiled for the
wrong CPU.

TINYLM_MARCH (build time) picks the variants: unset or "all" builds all of
them; "x86-64-v2" (or a comma list such as "x86-64-v2,x86-64-v3") builds only
those, e.g. to test the portable baseline alone. The variants compile in
parallel (build_ext --parallel; the default is one job per CPU).
"""
import copy
import glob
import os
import platform
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


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

PROBE = "csrc/py/cpu_probe.c"  # tinylm._cpu, built on its own
sources = sorted(s for s in glob.glob("csrc/**/*.c", recursive=True) if s != PROBE)
headers = sorted(glob.glob("csrc/**/*.h", recursive=True))  # a header change rebuilds the variants
debug = os.environ.get("TINYLM_DEBUG") == "1"

# ISA name (as TINYLM_ISA and TINYLM_MARCH spell it) -> compiler flags; they come
# after any CFLAGS from the environment, so they win. -std=c11 keeps
# -ffp-contract=off in every variant, so the paths differ only in vector width
# (how a reduction is split across lanes), never in fused vs separate rounding.
X86_VARIANTS = {
    "x86-64-v2": ["-march=x86-64-v2", "-mtune=generic"],
    "x86-64-v3": ["-march=x86-64-v3", "-mtune=generic"],
    "x86-64-v4": ["-march=x86-64-v4", "-mtune=generic"],
}
x86_64 = platform.machine().lower() in ("x86_64", "amd64")
if x86_64:
    wanted = os.environ.get("TINYLM_MARCH", "all").strip() or "all"
    names = list(X86_VARIANTS) if wanted == "all" else [n.strip() for n in wanted.split(",")]
    unknown = [n for n in names if n not in X86_VARIANTS]
    if unknown:
        raise SystemExit(f"TINYLM_MARCH={wanted!r}: unknown {unknown}; use 'all' or a comma list of "
                         f"{', '.join(X86_VARIANTS)} (the kernel path is chosen at run time, TINYLM_ISA)")
    variants = {n: X86_VARIANTS[n] for n in names}
else:
    variants = {"generic": []}


def core_variant(isa: str, isa_flags: list) -> Extension:
    module = "_core_" + isa.replace("-", "_")  # x86-64-v3 -> _core_x86_64_v3
    return Extension(
        f"tinylm.{module}",
        sources=sources,
        depends=headers,
        include_dirs=include_dirs,
        # _DEFAULT_SOURCE: POSIX (mmap, strdup, fsync) under -std=c11; TLM_MODULE names
        # the module and its PyInit function, TLM_ISA is what tinylm.isa() reports.
        define_macros=[("_DEFAULT_SOURCE", None), ("TLM_MODULE", module), ("TLM_ISA", f'"{isa}"')],
        library_dirs=library_dirs,
        runtime_library_dirs=library_dirs,  # the OpenMP OpenBLAS lives outside the default search path
        libraries=libraries + ["m"],
        extra_compile_args=["-std=c11", "-fopenmp", "-Wall", "-Wextra", "-Werror=implicit-function-declaration",
                            "-O0" if debug else "-O3", *isa_flags, "-fno-math-errno", "-fno-trapping-math", "-g"],
        extra_link_args=["-fopenmp"],
    )


extensions = [core_variant(isa, f) for isa, f in variants.items()]
if x86_64:  # the probe must run on any x86-64 CPU: the original x86-64 level, whatever CFLAGS the environment sets
    extensions.append(Extension("tinylm._cpu", sources=[PROBE],
                                extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-O2",
                                                    "-march=x86-64", "-mtune=generic"]))


class BuildVariants(build_ext):
    def run(self):
        # A left-over tinylm/_core.*.so from a build before the variants would
        # shadow the tinylm/_core.py selector (extensions import first).
        if self.inplace or self.editable_mode:
            for stale in glob.glob("tinylm/_core.*.so") + glob.glob("tinylm/_core.*.pyd"):
                os.remove(stale)
        super().run()

    def build_extension(self, ext):
        # Each variant compiles the same sources with other flags, and distutils
        # names an object after its source: give each its own object folder. A
        # shallow copy keeps that safe when the variants build in parallel.
        own = copy.copy(self)
        own.build_temp = os.path.join(self.build_temp, ext.name.rpartition(".")[2])
        build_ext.build_extension(own, ext)


jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
setup(ext_modules=extensions, cmdclass={"build_ext": BuildVariants},
      options={"build_ext": {"parallel": max(1, min(jobs, len(extensions)))}})
