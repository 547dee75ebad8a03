"""LoRA against PEFT: forward, gradients of A and B (and of the input, through
a trainable embedding), rsLoRA, two adapters switched, merge, and adapter
files crossing both ways."""
import json

import numpy as np
import peft
import pytest
import torch

import tinylm
from hf_models import batch, build, load_reference, save
from tolerance import SOFTMAX_OPS, approx, assert_close, decoder

TARGETS = ["q_proj", "v_proj", "o_proj", "down_proj"]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("base")
    save(build("llama_gqa"), path)
    return path


def _peft_model(base_dir, adapters):
    """get_peft_model with each (name, LoraConfig) and random B so gradients of
    A are not zero (PEFT initialises B to zero)."""
    ref = load_reference(base_dir)
    (first, cfg), *rest = adapters
    torch.manual_seed(6)  # PEFT draws lora_A from torch's global generator: the same A whatever ran before
    pm = peft.get_peft_model(ref, cfg, adapter_name=first)
    for name, cfg in rest:
        pm.add_adapter(name, cfg)
    torch.manual_seed(7)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.2)
    return pm


def _copy_lora(pm, model):
    """PEFT's in-memory names are ours with 'base_model.model.' in front."""
    for n, p in pm.named_parameters():
        if "lora_" in n:
            model.param(n.removeprefix("base_model.model."))[...] = p.detach().numpy()


def _lora_chain(model, ids):
    """The decoder's chain with the largest adapter rank on its projections."""
    ranks = [model.param(n).shape[0] for n in model.parameter_names() if ".lora_A." in n]
    return decoder(model.config, *ids.shape, lora_r=max(ranks, default=0))


def _compare(pm, model, trainable_embedding=False):
    ids, mask, labels = batch(B=3, T=29)
    chain = _lora_chain(model, ids)
    if trainable_embedding:  # so the input gradient through every LoRA path is checked too
        pm.base_model.model.model.embed_tokens.weight.requires_grad_(True)
        model.unfreeze("model.embed_tokens.weight")
    pm.zero_grad()
    out = pm(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), labels=torch.from_numpy(labels))
    out.loss.backward()
    assert_close(model.forward(ids, mask), out.logits.detach().numpy(), length=chain.forward, what="logits")
    assert model.loss(ids, labels, mask) == approx(out.loss.item(), length=chain.loss)
    model.zero_grad()
    model.backward()
    grads = model.grads()
    expected = {n.removeprefix("base_model.model."): p.grad.numpy() for n, p in pm.named_parameters()
                if p.requires_grad and p.grad is not None}
    assert set(grads) == set(expected)
    for name, g in expected.items():
        assert_close(grads[name], g, length=chain.backward, what=name)


@pytest.mark.parametrize("use_rslora", [False, True])
def test_forward_and_gradients_equal_peft(base_dir, use_rslora):
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, use_rslora=use_rslora)
    pm = _peft_model(base_dir, [("default", cfg)])
    model = tinylm.Model.from_pretrained(base_dir)
    model.add_lora(r=4, alpha=8, target_modules=TARGETS, use_rslora=use_rslora)
    _copy_lora(pm, model)
    _compare(pm, model, trainable_embedding=True)


@pytest.mark.parametrize("options", [
    dict(target_modules="all-linear", rank_pattern={"mlp.up_proj": 2}, alpha_pattern={"layers.1.self_attn.k_proj": 3.0}),
    dict(target_modules=["k_proj", "up_proj", "o_proj"], layers_to_transform=[1], rank_pattern={"up_proj": 2}),
    dict(target_modules=r".*\.layers\.0\.(self_attn\.q|mlp\.gate)_proj", exclude_modules=["gate_proj"]),
])
def test_target_rules_rank_and_alpha_patterns_equal_peft(base_dir, options):
    pm = _peft_model(base_dir, [("default", peft.LoraConfig(r=4, lora_alpha=16, **options))])
    model = tinylm.Model.from_pretrained(base_dir)
    model.add_lora(r=4, alpha=16, **options)
    ours = sorted(n for n in model.parameter_names() if "lora_" in n)
    assert ours == sorted(n.removeprefix("base_model.model.") for n, _ in pm.named_parameters() if "lora_" in n)
    _copy_lora(pm, model)
    _compare(pm, model)


def test_two_adapters_switched_equal_peft(base_dir):
    a = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    b = peft.LoraConfig(r=2, lora_alpha=6, target_modules=["gate_proj", "up_proj", "k_proj"], use_rslora=True)
    pm = _peft_model(base_dir, [("a", a), ("b", b)])
    model = tinylm.Model.from_pretrained(base_dir)
    model.add_lora(r=4, alpha=8, target_modules=["q_proj", "v_proj"], name="a")
    model.add_lora(r=2, alpha=6, target_modules=["gate_proj", "up_proj", "k_proj"], name="b", use_rslora=True)
    _copy_lora(pm, model)
    assert model.active_adapter == "a" and pm.active_adapter == "a"
    _compare(pm, model)
    pm.set_adapter("b")
    model.set_adapter("b")
    assert model.trainable_names() == [n for n in model.parameter_names() if ".b.weight" in n]
    _compare(pm, model)
    pm.set_adapter("a")
    model.set_adapter("a")
    _compare(pm, model)


def test_fresh_adapter_changes_nothing_and_disable_gives_the_base(base_dir):
    model = tinylm.Model.from_pretrained(base_dir)
    ids, mask, _ = batch(B=2, T=9)
    before = model.forward(ids, mask)
    model.add_lora(r=8, alpha=16, target_modules="all-linear", seed=3)
    # Exact: B = 0 adds exact zeros, and disabling runs the base's own computation.
    np.testing.assert_array_equal(model.param("model.layers.0.self_attn.q_proj.lora_B.default.weight"), 0)
    a = model.param("model.layers.0.self_attn.q_proj.lora_A.default.weight")
    assert 0 < np.abs(a).max() <= 1 / np.sqrt(64)  # kaiming-uniform(a=sqrt(5)) bound
    np.testing.assert_array_equal(model.forward(ids, mask), before)
    model.param("model.layers.0.self_attn.q_proj.lora_B.default.weight")[...] = 0.3
    assert not np.allclose(model.forward(ids, mask), before)
    with model.disable_adapter():
        np.testing.assert_array_equal(model.forward(ids, mask), before)
    assert model.trainable_names() == [n for n in model.parameter_names() if "lora_" in n]


def test_merge_equals_unmerged_and_unmerge_restores(base_dir):
    model = tinylm.Model.from_pretrained(base_dir)
    model.add_lora(r=4, alpha=8, target_modules="all-linear")
    rng = np.random.default_rng(0)
    for n in model.parameter_names():
        if "lora_B" in n:
            model.param(n)[...] = rng.normal(0, 0.2, model.param(n).shape)
    ids, mask, _ = batch(B=2, T=15)
    unmerged = model.forward(ids, mask)
    w = model.param("model.layers.1.mlp.down_proj.weight").copy()
    model.merge_adapter()
    # Merging rounds W + s B A (a sum over r, a product and a sum), then the
    # forward runs in another order (one GEMM instead of two paths).
    r, merge = 4, 4 + 2
    chain = decoder(model.config, *ids.shape, lora_r=r)
    assert_close(model.forward(ids, mask), unmerged, length=chain.forward + merge, what="merged logits")
    merged = model.param("model.layers.1.mlp.down_proj.weight").copy()
    assert not np.array_equal(merged, w)
    model.add_lora(r=2, alpha=2, target_modules=["q_proj"], name="other")
    with pytest.raises(ValueError, match="unmerge"):
        model.set_adapter("other")
    model.unmerge_adapter()
    # Merged and unmerged again: two roundings of a sum of terms of size |W| and |s B A|.
    assert_close(model.param("model.layers.1.mlp.down_proj.weight"), w, length=2 * merge,
                 scale=np.abs(w) + np.abs(merged - w), what="unmerged weight")
    assert_close(model.forward(ids, mask), unmerged, length=chain.forward + 2 * merge, what="unmerged logits")


def test_peft_saved_adapter_loads_and_gives_peft_logits(base_dir, tmp_path):
    cfg = peft.LoraConfig(r=4, lora_alpha=12, target_modules=["q_proj", "k_proj", "up_proj"], use_rslora=True)
    pm = _peft_model(base_dir, [("default", cfg)])
    pm.save_pretrained(tmp_path / "adapter")
    ids, mask, _ = batch(B=2, T=13)
    with torch.no_grad():
        expected = pm(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    model = tinylm.Model.from_pretrained(base_dir)
    assert model.load_adapter(tmp_path / "adapter") == "default"
    assert_close(model.forward(ids, mask), expected, length=_lora_chain(model, ids).forward,
                 what="logits with PEFT's adapter")


def test_tinylm_saved_adapter_loads_in_peft_and_round_trips(base_dir, tmp_path):
    model = tinylm.Model.from_pretrained(base_dir)
    model.add_lora(r=4, alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], dropout=0.05)
    rng = np.random.default_rng(1)
    for n in model.parameter_names():
        if "lora_B" in n:
            model.param(n)[...] = rng.normal(0, 0.2, model.param(n).shape)
    model.save_adapter(tmp_path / "adapter")
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["task_type"] == "CAUSAL_LM" and cfg["bias"] == "none"
    assert sorted(cfg["target_modules"]) == ["down_proj", "q_proj", "v_proj"]

    pm = peft.PeftModel.from_pretrained(load_reference(base_dir), tmp_path / "adapter")
    ids, mask, _ = batch(B=2, T=13)
    with torch.no_grad():
        expected = pm(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    assert_close(model.forward(ids, mask), expected, length=_lora_chain(model, ids).forward,
                 what="PEFT logits with tinylm's adapter")

    again = tinylm.Model.from_pretrained(base_dir)
    again.load_adapter(tmp_path / "adapter")
    for n in model.parameter_names():
        if "lora_" in n:  # exact: the f32 bits written and read back
            np.testing.assert_array_equal(again.param(n), model.param(n), err_msg=n)


def test_mismatched_or_unsupported_adapters_are_refused(base_dir, tmp_path):
    other = tmp_path / "other_base"
    save(build("llama_head_dim"), other)  # q_proj is [96, 64] there, [64, 64] here
    donor = tinylm.Model.from_pretrained(other)
    donor.add_lora(r=4, alpha=8, target_modules=["q_proj"])
    donor.save_adapter(tmp_path / "adapter")
    model = tinylm.Model.from_pretrained(base_dir)
    with pytest.raises(tinylm.FormatError, match=r"q_proj\.lora_B\.weight.*shape \[96, 4\].*\[64, 4\]"):
        model.load_adapter(tmp_path / "adapter")
    assert model.adapters == []

    cfg_path = tmp_path / "adapter" / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["target_modules"] = ["q_proj", "k_proj"]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(tinylm.FormatError, match=r"k_proj\.lora_A\.weight.*missing"):
        tinylm.Model.from_pretrained(other).load_adapter(tmp_path / "adapter")
    cfg["use_dora"] = True
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(tinylm.UnsupportedError, match="use_dora"):
        model.load_adapter(tmp_path / "adapter")
    with pytest.raises(ValueError, match="c_attn"):
        model.add_lora(r=4, alpha=8, target_modules=["q_proj", "c_attn"])


def test_dropout_masks_are_seeded_and_gradients_match_the_loss(base_dir):
    model = tinylm.Model.from_pretrained(base_dir)
    model.add_lora(r=4, alpha=8, target_modules=["q_proj", "up_proj"], dropout=0.3, seed=11)
    for n in model.parameter_names():
        if "lora_B" in n:
            model.param(n)[...] = 0.2
    ids, mask, labels = batch(B=2, T=11)
    counter = model._core.rng_counter()
    first = model.loss(ids, labels, mask)
    assert model.loss(ids, labels, mask) != first  # a new mask each step
    model._core.rng_counter(counter)
    assert model.loss(ids, labels, mask) == first  # the counter alone fixes the mask
    with model.disable_adapter():
        pass
    np.testing.assert_array_equal(model.forward(ids, mask), model.forward(ids, mask))  # no dropout in forward()
    model._core.rng_counter(counter)
    model.loss(ids, labels, mask)
    model.zero_grad()
    model.backward()
    name = "model.layers.1.mlp.up_proj.lora_A.default.weight"
    grad = model.grads()[name]
    param, eps = model.param(name), 1e-2
    for k in np.argsort(-np.abs(grad).ravel())[:3]:
        idx = np.unravel_index(k, param.shape)
        original = param[idx]
        values = []
        for delta in (eps, -eps):
            param[idx] = original + delta
            model._core.rng_counter(counter)
            values.append(model.loss(ids, labels, mask))
        param[idx] = original
        # Not a reordering tolerance: central differences' truncation error, O(eps^2).
        assert (values[0] - values[1]) / (2 * eps) == pytest.approx(grad[idx], rel=2e-2, abs=1e-4)


def test_merged_save_loads_in_transformers_and_leaves_the_model_alone(base_dir, tmp_path):
    model = tinylm.Model.from_pretrained(base_dir)
    model.add_lora(r=4, alpha=8, target_modules="all-linear")
    rng = np.random.default_rng(2)
    for n in model.parameter_names():
        if "lora_B" in n:
            model.param(n)[...] = rng.normal(0, 0.2, model.param(n).shape)
    before = {n: v.copy() for n, v in model.state_dict().items()}
    model.save_pretrained(tmp_path / "plain")
    model.save_pretrained(tmp_path / "merged", merged=True)
    for n, v in model.state_dict().items():  # exact: saving merged must not touch the weights
        np.testing.assert_array_equal(v, before[n], err_msg=n)
    ids, mask, _ = batch(B=2, T=13)
    ref = load_reference(tmp_path / "merged")
    with torch.no_grad():
        expected = ref(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    r, merge = 4, 4 + 2  # the merge rounds W + s B A: a sum over r, a product and a sum
    assert_close(model.forward(ids, mask), expected, length=decoder(model.config, *ids.shape, lora_r=r).forward + merge,
                 what="merged model in transformers")
    plain = tinylm.Model.from_pretrained(tmp_path / "plain")
    assert plain.parameter_names() == model.base_names()
    with model.disable_adapter():  # exact: the same weights through the same computation
        np.testing.assert_array_equal(plain.forward(ids, mask), model.forward(ids, mask))


@pytest.mark.parametrize("with_lora", [True, False])
def test_gradient_checkpointing_gives_the_same_gradients(base_dir, with_lora):
    model = tinylm.Model.from_pretrained(base_dir)
    if with_lora:
        model.add_lora(r=4, alpha=8, target_modules="all-linear", dropout=0.1)
        for n in model.parameter_names():
            if "lora_B" in n:
                model.param(n)[...] = 0.1
    ids, mask, labels = batch(B=2, T=21)
    results = []
    for on in (False, True):
        model.gradient_checkpointing_enable() if on else model.gradient_checkpointing_disable()
        model._core.rng_counter(5)  # the same dropout masks both times
        loss = model.loss(ids, labels, mask)
        model.zero_grad()
        model.backward()
        results.append((loss, model.grads()))
    assert model.is_gradient_checkpointing
    # Exact: recomputing a layer's forward repeats the same operations in the
    # same order (one process, one thread count), so every bit is the same.
    (l1, g1), (l2, g2) = results
    assert l1 == l2 and set(g1) == set(g2)
    for name in g1:
        np.testing.assert_array_equal(g1[name], g2[name], err_msg=name)


def test_eval_mode_turns_dropout_off_and_draws_no_masks(base_dir):
    model = tinylm.Model.from_pretrained(base_dir)
    model.add_lora(r=4, alpha=8, target_modules="all-linear", dropout=0.5, seed=2)
    for n in model.parameter_names():
        if "lora_B" in n:
            model.param(n)[...] = 0.2
    ids, mask, labels = batch(B=2, T=11)
    logits = model.forward(ids, mask).astype(np.float64)  # forward() never drops out
    shifted, targets = logits[:, :-1], labels[:, 1:]
    keep = targets != -100
    picked = shifted[keep]
    lse = np.log(np.exp(picked - picked.max(1, keepdims=True)).sum(1)) + picked.max(1)
    expected = float((lse - picked[np.arange(len(picked)), targets[keep]]).mean())
    counter = model.rng_counter
    # loss() recomputes the LM head in vocabulary chunks (a sum over D), then
    # the log-softmax over V and the mean over the tokens; its terms are
    # log-sum-exp minus a logit.
    length = model.config["hidden_size"] + model.config["vocab_size"] + SOFTMAX_OPS + int(keep.sum())
    scale = 2 * np.abs(logits).max() + expected
    assert model.eval() is model and not model.training
    assert model.loss(ids, labels, mask) == approx(expected, length=length, scale=scale)
    assert model.rng_counter == counter
    model.train()
    assert model.loss(ids, labels, mask) != approx(expected, length=length, scale=scale)
    assert model.rng_counter == counter + 1
    assert model.adapter_config().lora_dropout == 0.5 and model.adapter_config().seed == 2
