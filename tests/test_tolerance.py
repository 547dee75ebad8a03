"""The tolerance helper itself: the bound is what its docstring says, it
fails beyond it, and the discrete comparisons allow a divergence only at a
near-tie."""
import numpy as np
import pytest

import hf_models
from tolerance import (U, approx, assert_argmax_agree, assert_clear_argmax, assert_close, assert_greedy_agree,
                       bound, decoder, gemm_scale, rtol, tie_gap)


def test_worked_example():
    config_cls, _, kwargs = hf_models.CONFIGS["llama_head_dim"]
    chain = decoder(config_cls(vocab_size=hf_models.VOCAB, **kwargs), 3, 37)
    assert (chain.forward, chain.loss, chain.backward) == (1278, 1606, 3596)  # the module docstring's numbers
    assert rtol(chain.forward) == pytest.approx(1.52e-4, rel=1e-2)
    assert decoder(kwargs | {"vocab_size": 211}, 3, 37, lora_r=4).forward > chain.forward


def test_assert_close_is_the_bound_and_no_more():
    expected = np.array([2.0, -1.0, 1e-3, 0.0])
    allowed = bound(100, 2.0)  # the floor: 2 L U times the largest magnitude
    assert assert_close(expected + allowed, expected, length=100) == pytest.approx(1.0)
    with pytest.raises(AssertionError, match="reordering bound"):
        assert_close(expected + 1.01 * allowed, expected, length=100)
    with pytest.raises(AssertionError, match="non-finite"):
        assert_close([np.nan, 1.0], [1.0, 1.0], length=100)
    assert_close([np.inf, 1.0], [np.inf, 1.0], length=1)
    # a per-element scale: sum|terms| of a GEMM
    x, w = np.array([[1.0, -1.0]]), np.array([[1.0, 1.0]])
    assert gemm_scale(x, w).item() == 2.0
    with pytest.raises(AssertionError):
        assert_close([[1e-6]], [[0.0]], length=2, scale=gemm_scale(x, w))
    assert_close([[4 * U * 2.0]], [[0.0]], length=2, scale=gemm_scale(x, w))


def test_approx():
    assert 1.0 + 0.9 * rtol(10) == approx(1.0, length=10)
    assert 1.0 + 1.1 * rtol(10) != approx(1.0, length=10)
    assert 1e-9 == approx(0.0, length=10, scale=1.0)


def test_greedy_comparisons_allow_only_near_ties():
    logits = np.zeros((3, 5))
    logits[:, 1] = 2.0
    logits[1, 3] = 2.0 - 0.5 * tie_gap(100, 2.0)  # a near-tie at step 1
    assert assert_greedy_agree([1, 1, 1], [1, 1, 1], logits, length=100) == 3
    assert assert_greedy_agree([1, 1, 1], [1, 3, 4], logits, length=100) == 1  # diverged at the tie: rest not compared
    with pytest.raises(AssertionError, match="more than rounding"):
        assert_greedy_agree([1, 1, 1], [4, 1, 1], logits, length=100)
    assert_argmax_agree([1, 3, 1], logits, length=100)
    with pytest.raises(AssertionError, match="below the argmax"):
        assert_argmax_agree([1, 1, 0], logits, length=100)
    assert_clear_argmax(logits[[0, 2]], length=100)
    with pytest.raises(AssertionError, match="near-tie"):
        assert_clear_argmax(logits, length=100)
