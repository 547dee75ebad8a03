"""AdamW and gradient clipping against torch.optim.AdamW and clip_grad_norm_."""
import numpy as np
import pytest
import torch

import tinylm
from hf_models import batch, build
from tolerance import approx, assert_close

ADAMW_OPS = 16  # rounded operations of one AdamW update of one element (decay, lerp, v, sqrt, two divisions, ...)


def _twins(name="llama_gqa"):
    """A transformers model and a tinylm model with the same weights, with
    gradients planned (one backward) so they can be set by hand."""
    ref = build(name)
    model = tinylm.Model(ref.config.to_dict() | {"architectures": [type(ref).__name__]})
    model.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()}, strict=False)
    ids, mask, labels = batch(B=1, T=8)
    model.loss(ids, labels, mask)
    model.backward()
    return ref, model


def _grad_view(model, name):
    """The core's own gradient memory (Model.grads() returns copies)."""
    return np.asarray(model._core.grad(model.parameter_names().index(name)))


def _set_same_grads(ref, model, rng, scale=1.0):
    for pname, p in ref.named_parameters():
        g = (rng.standard_normal(p.shape) * scale).astype(np.float32)
        _grad_view(model, pname)[...] = g
        p.grad = torch.from_numpy(g.copy())


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_five_adamw_steps_equal_torch(weight_decay):
    ref, model = _twins()
    hp = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=weight_decay)
    torch_opt = torch.optim.AdamW(ref.parameters(), **hp)
    ours = tinylm.AdamW(model, **hp, no_decay=())  # torch decays every parameter
    rng = np.random.default_rng(0)
    for _ in range(5):
        _set_same_grads(ref, model, rng)
        torch_opt.step()
        ours.step()
    # Elementwise, no reductions: each step rounds ADAMW_OPS times, and the
    # moments carry earlier steps' rounding on. The terms are the parameter
    # and the updates (each at most about lr).
    params = model.state_dict()
    for pname, p in ref.named_parameters():
        expected = p.detach().numpy()
        assert_close(params[pname], expected, length=5 * ADAMW_OPS, scale=np.abs(expected) + 5 * hp["lr"], what=pname)


def test_no_decay_patterns_skip_weight_decay():
    ref, model = _twins()
    opt = tinylm.AdamW(model, lr=0.1, weight_decay=0.5)  # default: no decay on norms and biases
    model.zero_grad()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    opt.step()
    after = model.state_dict()
    np.testing.assert_array_equal(after["model.norm.weight"], before["model.norm.weight"])  # exact: untouched
    # zero gradients: only the decay, p * (1 - lr wd), moves the weight: two roundings
    assert_close(after["lm_head.weight"], before["lm_head.weight"] * (1 - 0.1 * 0.5), length=2, what="decayed")


def _norm_length(model):
    """The global norm is summed per tensor, then across tensors (torch's
    clip_grad_norm_ is the norm of the per-tensor norms, and so is ours);
    the order inside a tensor is free: the largest tensor, the number of
    tensors, and a square and a square root."""
    sizes = [model.param(n).size for n in model.trainable_names()]
    return max(sizes) + len(sizes) + 2


@pytest.mark.parametrize("max_norm,scale", [(1.0, 1.0), (1e3, 1.0), (0.5, 1e-3)])
def test_clip_grad_norm_equals_torch(max_norm, scale):
    ref, model = _twins("qwen2_bias")
    _set_same_grads(ref, model, np.random.default_rng(1), scale)
    expected = torch.nn.utils.clip_grad_norm_(ref.parameters(), max_norm).item()
    length = _norm_length(model)
    assert tinylm.clip_grad_norm(model, max_norm) == approx(expected, length=length, what="grad norm")
    grads = model.grads()  # scaled by max_norm / norm: the norm's error and two roundings more
    for pname, p in ref.named_parameters():
        assert_close(grads[pname], p.grad.numpy(), length=length + 2, what=pname)


def test_frozen_parameters_are_not_updated():
    _, model = _twins()
    model.freeze("model.layers.*")
    ids, mask, labels = batch(B=1, T=8)
    model.loss(ids, labels, mask)
    model.zero_grad()
    model.backward()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    tinylm.AdamW(model, lr=0.1).step()
    after = model.state_dict()
    for name in before:  # exact: a frozen parameter is never written
        changed = not np.array_equal(before[name], after[name])
        assert changed == (not name.startswith("model.layers.")), name


def test_state_dict_round_trip_continues_identically():
    ref, model = _twins()
    opt = tinylm.AdamW(model, lr=1e-2)
    rng = np.random.default_rng(3)
    for _ in range(2):
        _set_same_grads(ref, model, rng)
        opt.step()
    saved = opt.state_dict()
    assert saved["step"] == 2 and set(saved["exp_avg"]) == set(model.trainable_names())
    weights = {k: v.copy() for k, v in model.state_dict().items()}
    grads = {n: _grad_view(model, n).copy() for n in model.trainable_names()}
    opt.step()
    expected = {k: v.copy() for k, v in model.state_dict().items()}

    model.load_state_dict(weights)
    fresh = tinylm.AdamW(model, lr=1e-2)
    fresh.load_state_dict(saved)
    for n, g in grads.items():
        _grad_view(model, n)[...] = g
    fresh.step()
    for name, value in model.state_dict().items():  # exact: the same operations on the same bits
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
    with pytest.raises(ValueError, match="does not match the trainable parameters"):
        fresh.load_state_dict({**saved, "exp_avg": {}})


def test_clip_grad_norm_none_only_measures():
    ref, model = _twins("qwen2_bias")
    _set_same_grads(ref, model, np.random.default_rng(4))
    before = model.grads()
    norm = tinylm.clip_grad_norm(model, None)
    exact = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in before.values()))
    assert norm == approx(exact, length=_norm_length(model), what="grad norm")
    for name, g in model.grads().items():  # exact: measuring writes nothing
        np.testing.assert_array_equal(g, before[name])
