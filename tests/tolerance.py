"""How far two float32 computations of the same quantity may legitimately
differ: the one place the numerical tests take their tolerances from.

Why tolerances at all
---------------------
tinylm and its references (PyTorch, transformers, PEFT, bitsandbytes) compute
in float32 and add the same terms in different orders: OpenBLAS picks its
GEMM kernel and blocking from the CPU (AVX2 and AVX-512 sum in different
lanes), OpenMP splits reductions by the thread count, PyTorch vectorises its
own way, a KV cache sums attention over other blocks than a full forward.
Each order is as right as any other; none is the reference. A tolerance says
how far those orders can drift apart, and nothing else.

The bound
---------
U = 2**-24 is float32's unit roundoff: each rounded operation is exact to a
relative U. Summing n terms in any order, recursive or blocked or across
threads, gives (Higham, Accuracy and Stability of Numerical Algorithms, §4.2)

    |computed - exact| <= gamma_n * sum|terms|,   gamma_n = n U / (1 - n U) ~ n U

and two computations, each within that of the exact sum, are within twice it
of each other:

    |a - b| <= 2 n U sum|terms|                                        (1)

A model is a chain of dependent stages; the relative error a stage passes on
adds to its own, so along the chain the lengths add (decoder() spells out
the chain of a decoder, forward and backward, from the config and the batch
shape). A stage of k elementwise rounded operations (an AdamW update, a
dequantization, RoPE, an activation) counts k. Hence the tolerance for a
value at the end of a chain of total length L:

    |actual - expected| <= 2 L U * max(|expected|, scale)              (2)

scale is the magnitude of the terms. Where a test knows sum|terms| for each
element (e.g. |x| @ |w|) it passes it; otherwise it is the largest magnitude
in the tensor, a usable proxy because every layer of these models is
normalised (RMSNorm before each projection, softmax rows summing to one), so
sum|terms| of an element is of the order of the largest elements of its
tensor. Elements near zero then get the tensor's absolute floor, not a
relative bound they cannot meet (cancellation leaves them an absolute error).

Why this holds on every CPU and never hides a bug
-------------------------------------------------
(1) is a worst case over all orders: it does not depend on SIMD width, GEMM
kernel, blocking, thread count or which side is the reference, so one bound
serves AVX2, AVX-512, the scalar fallback and any number of threads. Rounding
errors of real orders partly cancel and grow like sqrt(L) U, not L U: for the
chains here (L of 1,000 to 4,000) that leaves a factor of 30 to 60 in hand,
which also covers stages that amplify relative error a little (a softmax over
scores of a few units, a residual sum with partial cancellation).

Worked example, tests/test_model.py on llama_head_dim (D=64, H=4, K=2, E=24,
F=96, 2 layers, V=211), B=3, T=37 (decoder(config, 3, 37)):
    one layer, forward: RMSNorm 64+4, q/k/v 64, RoPE 4, scores 24+1,
    softmax 37+6, P.V 37, o_proj 96, residual 1; RMSNorm 64+4, gate/up 64,
    SiLU 5, product 1, down 96, residual 1                  =  573
    logits: 2 layers + final RMSNorm 68 + LM head 64          = 1278
    loss: + log-softmax 211+6 + the mean over B*T=111 tokens  = 1606
    gradients: + LM head 211 + RMSNorm 68 + 2 layers' backward
    (attention 470, MLP 330) + weight-gradient sums over 111  = 3596
so logits may differ by 2*1278*U = 1.5e-4 of the largest logit (2.85 here:
4.3e-4), gradients by 2*3596*U = 4.3e-4 of the largest gradient of their
tensor. The failure on a 2-core EPYC this replaced (1.08e-6 on a logit of
-0.00726, against an atol of 1e-6 chosen on one machine) is 2.5e-3 of that
bound. Measured (tests/tolerance_report.py) on the AVX-512 Xeon with 1 and 2
threads and with OpenBLAS' AVX2 kernels (OPENBLAS_CORETYPE=Haswell), the
largest error is 5.3e-3 of its bound against transformers, 4.2e-3 between 1
and 2 threads, and 7.5e-2 anywhere (a merge and unmerge, whose chain is a
handful of roundings).

The same model with a real bug moves far more (measured with transformers on
llama_head_dim, largest change / largest logit): attention scale
1/sqrt(D/H) instead of 1/sqrt(E) 0.16; one real key masked out 0.29 on its
row; two rows of lm_head swapped 0.75; RoPE theta 10000 -> 10500 3.6e-3;
rms_norm_eps 1e-6 -> 1e-5 (a tenfold epsilon) 1.2e-3. The subtlest of these is
8 times the forward bound (1.5e-4), the others 24 to 5,000 times: errors of
layout, masking or scale, the bugs this suite exists for, are 1,000 times it
or more.

Exact comparisons stay exact: a reload of saved bits, NF4/int8 codes, a
resume or recomputation in one process with one thread count, a disabled
adapter. Those are not tolerances, and their tests say why.

Discrete outcomes (greedy tokens, argmax, top-k/top-p cut-offs, the chosen
answer of a multiple-choice case) follow floats: if two logits are within
the bound of each other, either order may pick either. tie_gap() is the gap
below which that may happen; assert_greedy_agree() and the margin checks
allow a divergence only there.

Set TINYLM_TOLERANCE_LOG=FILE to have every assert_close append its
largest error / bound ratio to FILE (JSON lines), for the margin report
(tests/tolerance_report.py).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

U = 2.0 ** -24  # float32 unit roundoff
TWO_SIDED = 2   # both computations are rounded: each is within n U of the exact value

# Elementwise stages, in rounded operations each (an exp or a division is
# correctly rounded or within an ulp or two; count generously).
EXP = 4
NORM_OPS = 4      # mean of squares, rsqrt, scale, weight
SOFTMAX_OPS = 6   # max-subtraction, exp, division
ROPE_OPS = 4      # angle, cos/sin, two products and a sum
ACT_OPS = 5       # SiLU/GELU: exp, add, divide (or tanh's), product


def rtol(length: int) -> float:
    """Relative tolerance of a chain of total reduction length `length`: 2 L U."""
    return TWO_SIDED * length * U


def bound(length: int, scale) -> float | np.ndarray:
    """Absolute tolerance (2): 2 L U times the magnitude of the terms."""
    return rtol(length) * np.asarray(scale, dtype=np.float64)


def _log(what, length, ratio):
    path = os.environ.get("TINYLM_TOLERANCE_LOG")
    if path:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"test": test, "what": what, "length": int(length), "ratio": float(ratio)}) + "\n")


def assert_close(actual, expected, *, length: int, scale=None, what: str = "") -> float:
    """|actual - expected| <= 2 L U max(|expected|, scale), element by element.

    length: the reduction length of the chain that computed the values
    (decoder(...).forward / .loss / .backward, or a sum of lengths).
    scale: the magnitude of the terms: a number, or an array broadcastable
    to expected (e.g. |x| @ |w|); default the largest |expected|.
    Returns the largest error as a fraction of the bound (<= 1).

    For two paths of one kernel (AVX2 against AVX-512, 1 against 2 threads,
    a KV cache against a full forward) the length is that kernel's own
    reduction length, e.g. a GEMM over K: assert_close(a, b, length=K,
    scale=gemm_scale(x, w)), or decoder(...) for a whole model."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if expected.size == 0:
        return 0.0
    assert np.array_equal(np.isfinite(actual), np.isfinite(expected)), f"{what}: non-finite values differ"
    finite = np.isfinite(expected)
    assert np.array_equal(actual[~finite], expected[~finite]), f"{what}: infinities differ"
    if scale is None:
        scale = np.max(np.abs(expected[finite]), initial=0.0)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), expected.shape)
    allowed = bound(length, np.maximum(np.abs(expected), scale))
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.where(finite, np.abs(actual - expected), 0.0)
        ratios = np.where(allowed > 0, err / allowed, np.where(err > 0, np.inf, 0.0))
    worst = np.unravel_index(int(np.argmax(ratios)), ratios.shape)
    ratio = float(ratios[worst])
    _log(what, length, ratio)
    assert ratio <= 1.0, (
        f"{what}: |actual - expected| = {err[worst]:.3g} at {tuple(map(int, worst))} "
        f"(actual {actual[worst]:.7g}, expected {expected[worst]:.7g}) exceeds the float32 "
        f"reordering bound 2*L*U*scale = {allowed[worst]:.3g} (L={length}): {ratio:.3g} times the bound")
    return ratio


def gemm_scale(x, w):
    """sum|terms| of each element of x @ w.T: |x| @ |w|.T (the scale of a
    GEMM's outputs for assert_close; x [N, K], w [M, K])."""
    return np.abs(np.asarray(x, np.float64)) @ np.abs(np.asarray(w, np.float64)).T


def approx(expected: float, *, length: int, scale: float | None = None, what: str = "loss"):
    """A scalar (a loss, a norm, a perplexity) to compare with ==, within the
    tolerance (2); scale defaults to |expected|. `actual == approx(...)`."""
    return _Approx(float(expected), length, abs(float(expected)) if scale is None else float(scale), what)


class _Approx:
    def __init__(self, expected, length, scale, what):
        self.expected, self.length, self.what = expected, length, what
        self.tol = float(bound(length, max(abs(expected), scale)))

    def _ratio(self, actual):
        err = abs(float(actual) - self.expected)
        return err / self.tol if self.tol > 0 else (0.0 if err == 0 else float("inf"))

    def __eq__(self, actual):
        ratio = self._ratio(actual)
        _log(self.what, self.length, ratio)
        return ratio <= 1.0

    def __ne__(self, actual):  # "must differ by more than rounding": not a margin, so not logged
        return self._ratio(actual) > 1.0

    __hash__ = None

    def __repr__(self):
        return f"{self.expected!r} ± {self.tol:.3g} (2*L*U*scale, L={self.length})"


@dataclass(frozen=True)
class Chain:
    """Reduction lengths of a decoder's outputs (see the module docstring)."""
    forward: int   # logits
    loss: int      # the mean cross-entropy
    backward: int  # every parameter gradient


# Families (tests/test_families.py) whose blocks have stages a Llama has not.
_GEMMA_TYPES = ("gemma", "gemma2", "gemma3_text")
_SANDWICH_TYPES = ("gemma2", "gemma3_text")     # a norm on the attention and MLP outputs too
_LAYERNORM_TYPES = ("phi", "stablelm")          # LayerNorm, not RMSNorm
_QK_NORM_TYPES = ("qwen3", "gemma3_text")       # q and k normed per head before RoPE


def decoder(config, B: int, T: int, *, lora_r: int = 0, tokens: int | None = None) -> Chain:
    """The chain lengths of a decoder (an HF config dict or PretrainedConfig)
    on a [B, T] batch. lora_r: the rank of adapters on the projections (their
    path adds a sum over r). tokens: labelled tokens of the loss (default B*T).

    Forward, one layer: RMSNorm over D, q/k/v over D, RoPE, scores over E,
    softmax and P.V over T, o_proj over H*E, the MLP over D then F; then the
    final norm and the LM head over D. Loss: log-softmax over V, the mean over
    the tokens. Backward adds the same chain transposed (LM head over V,
    down's input over D, gate/up's over 2F, o_proj's over D, attention over E
    and T, q/k/v's over (H+2K)E, norms over D) and the weight-gradient sums
    over the B*T tokens.

    Stages of the other families, added where the config has them (forward,
    and the same again backward, where the chain runs through them twice):
    - LayerNorm (Phi, StableLM): the mean, then the sum of squared deviations
      from it, both over D (2D), and the bias: 2D + NORM_OPS + 1 per norm.
    - Gemma's (1 + w) norms: one more rounded operation per norm; the input
      embedding times sqrt(D): one.
    - Sandwich norms (Gemma 2/3): a norm on the attention output and one on
      the MLP output, each a full norm over D.
    - q/k norms (Qwen3, Gemma3 RMSNorm; Phi's and StableLM's qk_layernorm
      LayerNorm): a norm over E in front of RoPE.
    - Soft-capping (Gemma2's attention scores, the final logits): a division,
      a tanh and a product: ACT_OPS + 2 each.
    - A parallel residual (Phi-2, StableLM): x + attn + mlp, one more sum; the
      two branches are counted one after the other, an over-count.
    - LongRoPE's attention_factor: one more product on cos and sin; an
      lm_head bias: one more sum.
    A sliding window only shortens the softmax and P.V sums (counted over T
    still), and NoPE layers skip RoPE: both over-counts, which are harmless."""
    c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    D, F, L, V = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    H = c["num_attention_heads"]
    K = c.get("num_key_value_heads") or H
    E = c.get("head_dim") or D // H
    r = lora_r
    N = B * T
    model_type = c.get("model_type", "")
    layer_norm = model_type in _LAYERNORM_TYPES
    gemma = model_type in _GEMMA_TYPES

    def norm_of(n):
        return 2 * n + NORM_OPS + 1 if layer_norm else n + NORM_OPS + (1 if gemma else 0)

    norm = norm_of(D)
    qk_norm = norm_of(E) if model_type in _QK_NORM_TYPES or c.get("qk_layernorm") else 0
    sandwich = norm if model_type in _SANDWICH_TYPES else 0
    cap = ACT_OPS + 2
    attn_cap = cap if model_type == "gemma2" and c.get("attn_logit_softcapping") else 0
    final_cap = cap if c.get("final_logit_softcapping") else 0
    parallel = 1 if model_type == "phi" or c.get("use_parallel_residual") else 0
    rope_type = (c.get("rope_parameters") or c.get("rope_scaling") or {}).get("rope_type")
    rope = ROPE_OPS + (1 if rope_type == "longrope" else 0)
    embed = 1 if gemma else 0
    head_bias = 1 if model_type == "phi" else 0

    attention = (norm + (D + r) + qk_norm + rope + (E + 1) + attn_cap + (T + SOFTMAX_OPS) + T + (H * E + r)
                 + sandwich + 1)
    mlp = norm + (D + r) + ACT_OPS + 1 + (F + r) + sandwich + 1 + parallel
    forward = embed + L * (attention + mlp) + norm + D + head_bias + final_cap
    loss = forward + V + SOFTMAX_OPS + (tokens if tokens is not None else N)
    back_attention = (norm + ((H + 2 * K) * E + 3 * r) + qk_norm + rope + E + attn_cap + 2 * T + T + SOFTMAX_OPS
                      + (D + r) + sandwich + 1)
    back_mlp = norm + (2 * F + 2 * r) + ACT_OPS + (D + r) + sandwich + 1 + parallel
    backward = loss + final_cap + V + norm + L * (back_attention + back_mlp) + embed + N + r
    return Chain(forward=forward, loss=loss, backward=backward)


def tie_gap(length: int, scale) -> float:
    """Two logits closer than this may come out in either order: if a and b
    each satisfy (2), a_i >= a_j and b_j >= b_i imply a_i - a_j <= 2 bound."""
    return float(2 * bound(length, scale))


def top2_gap(row) -> float:
    """The gap between the largest and second-largest value of a row."""
    top = np.sort(np.asarray(row, dtype=np.float64))[-2:]
    return float(top[1] - top[0]) if top.size == 2 else float("inf")


def assert_greedy_agree(ours, theirs, logits, *, length: int, scale=None, what: str = "") -> int:
    """Greedy token sequences of two implementations agree, except that from a
    step where the two tokens' logits are within tie_gap() of each other (a
    near-tie, which rounding may break either way) the rest is not compared
    (the contexts differ from there on). logits[i]: one implementation's
    logits for step i along `ours` (e.g. a full forward over ours' tokens).
    A divergence anywhere else fails. Returns the number of steps compared."""
    logits = np.asarray(logits, dtype=np.float64)
    scale = np.max(np.abs(logits)) if scale is None else scale
    gap = tie_gap(length, scale)
    n = min(len(ours), len(theirs))
    for i in range(n):
        if ours[i] != theirs[i]:
            d = abs(logits[i, ours[i]] - logits[i, theirs[i]])
            assert d <= gap, (f"{what}: step {i} chose {ours[i]} against {theirs[i]}, whose logits differ by "
                              f"{d:.3g}, more than rounding can explain ({gap:.3g}); ours {list(ours)}, "
                              f"theirs {list(theirs)}")
            return i
    return n


def assert_argmax_agree(tokens, logits, *, length: int, scale=None, what: str = "") -> None:
    """Each token is the argmax of its row of logits, or within tie_gap() of
    it (the tokens came from another order of the same computation, e.g. a
    KV cache against a full forward, on the same context)."""
    logits = np.asarray(logits, dtype=np.float64)
    scale = np.max(np.abs(logits)) if scale is None else scale
    gap = tie_gap(length, scale)
    for i, t in enumerate(tokens):
        best = int(np.argmax(logits[i]))
        d = logits[i, best] - logits[i, t]
        assert d <= gap, f"{what}: step {i}: token {t} is {d:.3g} below the argmax {best} (ties allowed: {gap:.3g})"


def assert_clear_argmax(rows, *, length: int, scale=None, what: str = "") -> float:
    """Every row's largest value leads the next by more than tie_gap(): the
    argmax (a greedy token, a chosen answer) is the same on every CPU and
    thread count. For fixtures whose expectations come from an argmax; if one
    fails, the fixture sits on a near-tie: pick another prompt or seed.
    Returns the smallest gap as a multiple of tie_gap()."""
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    scale = np.max(np.abs(rows[np.isfinite(rows)])) if scale is None else scale
    gap = tie_gap(length, scale)
    gaps = np.array([top2_gap(r) for r in rows])
    i = int(np.argmin(gaps))
    assert gaps[i] > gap, f"{what}: row {i} is a near-tie: its top two differ by {gaps[i]:.3g} <= {gap:.3g}"
    return float(gaps[i] / gap)
