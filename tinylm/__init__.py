"""tinylm: fine-tune, distill, quantization-aware-train and evaluate tiny
language models on a CPU, with the ecosystem's own file formats."""
from tinylm._core import get_num_threads, set_num_threads
from tinylm import distill
from tinylm.errors import FormatError, NumericError, UnsupportedError
from tinylm.evaluate import evaluate
from tinylm.model import Model
from tinylm.optim import AdamW, clip_grad_norm
from tinylm.recipe_support import DEMO_MODEL
from tinylm.threads import default_num_threads
from tinylm.tokenizer import Tokenizer
from tinylm.trainer import TrainConfig, Trainer

__version__ = "0.1.0"


def isa() -> str:
    """The instruction set of the C core build in use: "x86-64-v2" (SSE4.2, the
    portable baseline), "x86-64-v3" (AVX2+FMA), "x86-64-v4" (AVX-512), or
    "generic" off x86-64. The best the CPU supports unless TINYLM_ISA forces one."""
    from tinylm import _core
    return _core.ISA


# One count for OpenMP and OpenBLAS, from the CPUs this process may use (tinylm/threads.py).
set_num_threads(default_num_threads())

__all__ = [
    "Model", "Tokenizer", "AdamW", "evaluate", "clip_grad_norm", "set_num_threads", "get_num_threads", "isa",
    "distill", "FormatError", "UnsupportedError", "NumericError", "__version__",
    "Trainer", "TrainConfig", "DEMO_MODEL",
]
