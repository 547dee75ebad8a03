"""Which build of the C core this process loads (docs/architecture.md, "Build").

setup.py compiles the core once per x86-64 psABI level, each a complete
extension module (tinylm._core_x86_64_v2, _v3, _v4), and tinylm._cpu, a probe
built with no -march flag that says which levels the CPU and OS support.
tinylm/_core.py calls load(), which imports the best variant that is both built
and supported and installs it as tinylm._core, so `from tinylm import _core`
works unchanged. TINYLM_ISA forces a variant (tests compare the paths that way);
forcing one that is unknown, not built, or not supported by this CPU is an
ImportError that says so, never a SIGILL. Off x86-64 the one variant is
"generic" (the compiler's default flags) and there is no probe.
"""
from __future__ import annotations

import importlib
import importlib.util
import os

ENV = "TINYLM_ISA"
LEVELS = ("x86-64-v2", "x86-64-v3", "x86-64-v4")  # lowest first; x86-64-v2 is the fallback
GENERIC = "generic"
KNOWN = (*LEVELS, GENERIC)


def module_name(isa: str) -> str:
    return "tinylm._core_" + isa.replace("-", "_")  # x86-64-v3 -> tinylm._core_x86_64_v3


def built() -> list[str]:
    """The variants this installation has, lowest first."""
    return [isa for isa in KNOWN if importlib.util.find_spec(module_name(isa)) is not None]


def supported() -> list[str]:
    """The variants this CPU and OS can run, lowest first."""
    try:
        from tinylm import _cpu
    except ImportError:  # not x86-64: the generic build runs wherever it was built for
        return [GENERIC]
    return list(_cpu.supported())


def choose(forced: str | None = None) -> str:
    """The variant to load: TINYLM_ISA's if set, else the best built and supported one."""
    forced = (os.environ.get(ENV, "") if forced is None else forced).strip()
    have, runs = built(), supported()
    if not have:
        raise ImportError("tinylm's C core is not built: run `pip install -e .` (or `make build`) in the checkout")
    if forced and forced != "auto":
        if forced not in KNOWN:
            raise ImportError(f"{ENV}={forced!r} is not an instruction set tinylm knows; use one of "
                              f"{', '.join(LEVELS)}, or unset it to pick the best this CPU runs")
        if forced not in have:
            raise ImportError(f"{ENV}={forced}: this build of tinylm has no {forced} variant (it has "
                              f"{', '.join(have)}; TINYLM_MARCH chose them at build time)")
        if forced not in runs:
            raise ImportError(f"{ENV}={forced}: this CPU (or OS) does not support it; it supports "
                              f"{', '.join(runs) or 'none of ' + ', '.join(LEVELS)}")
        return forced
    usable = [isa for isa in have if isa in runs]
    if not usable:
        raise ImportError(f"this CPU supports none of the instruction sets tinylm was built for ({', '.join(have)}; "
                          f"the CPU supports {', '.join(runs) or 'none of ' + ', '.join(LEVELS)})")
    return usable[-1]


def load():
    """Imports the chosen variant and returns the module."""
    return importlib.import_module(module_name(choose()))
