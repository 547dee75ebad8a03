"""tinylm._core: the C core, in the build for this CPU.

There is one compiled module per instruction-set level (tinylm._core_x86_64_v2,
_v3, _v4); tinylm._isa picks one (TINYLM_ISA forces it) and this module
replaces itself with it in sys.modules, so `from tinylm import _core` and
`import tinylm._core` give that extension module. _core.ISA names it.
"""
import sys

from tinylm import _isa

sys.modules[__name__] = _isa.load()
