"""tinylm's forward, loss and every gradient against transformers itself."""
import numpy as np
import pytest
import torch

import tinylm
from hf_models import CONFIGS, batch, build, load_reference, reference_outputs, save
from tolerance import approx, assert_close, decoder

# (config, dtype saved, max_shard_size): every config in f32 in one file, and
# the half-precision and sharded layouts on configs with different features.
CASES = [(name, torch.float32, None) for name in CONFIGS] + [
    ("llama_gqa", torch.bfloat16, None),
    ("qwen2_bias", torch.float16, None),
    ("llama_head_dim", torch.float32, "60KB"),
    ("llama_mqa_tied", torch.bfloat16, "40KB"),
]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{str(c[1])[6:]}-{'sharded' if c[2] else 'single'}")
def saved(request, tmp_path_factory):
    name, dtype, shard = request.param
    path = tmp_path_factory.mktemp(name)
    save(build(name), path, dtype=dtype, max_shard_size=shard)
    if shard:
        assert (path / "model.safetensors.index.json").exists(), "the case must really be sharded"
    return path


def test_logits_loss_and_grads_match_transformers(saved):
    ids, mask, labels = batch(B=3, T=37)
    ref = load_reference(saved)
    ref_logits, ref_loss, ref_grads = reference_outputs(ref, ids, mask, labels)

    chain = decoder(ref.config, *ids.shape)
    model = tinylm.Model.from_pretrained(saved)
    assert_close(model.forward(ids, attention_mask=mask), ref_logits, length=chain.forward, what="logits")
    loss = model.loss(ids, labels, attention_mask=mask)
    assert loss == approx(ref_loss, length=chain.loss)
    assert model.last_num_tokens == int((labels[:, 1:] != -100).sum())
    model.zero_grad()
    model.backward()
    grads = model.grads()
    assert set(grads) == set(ref_grads)
    for name, expected in ref_grads.items():
        assert_close(grads[name], expected, length=chain.backward, what=name)


def test_long_sequences_cross_attention_blocks(tmp_path):
    """Attention works in blocks of query rows (128): rows past the first
    blocks, a partial last block and padding that starts inside a block must
    all match transformers, forward and backward."""
    save(build("llama_gqa"), tmp_path)
    ids, mask, labels = batch(B=2, T=300)
    mask[1, 250:] = 0
    labels = np.where(mask == 1, ids, -100)
    ref = load_reference(tmp_path)
    ref_logits, ref_loss, ref_grads = reference_outputs(ref, ids, mask, labels)
    chain = decoder(ref.config, *ids.shape)
    model = tinylm.Model.from_pretrained(tmp_path)
    assert_close(model.forward(ids, attention_mask=mask), ref_logits, length=chain.forward, what="logits")
    assert model.loss(ids, labels, attention_mask=mask) == approx(ref_loss, length=chain.loss)
    model.zero_grad()
    model.backward()
    for name, grad in model.grads().items():
        assert_close(grad, ref_grads[name], length=chain.backward, what=name)


def test_loaded_weights_equal_saved_ones(saved):
    ref = load_reference(saved)
    model = tinylm.Model.from_pretrained(saved)
    state = model.state_dict()
    for name, tensor in ref.state_dict().items():
        if name in state:  # exact: both widen the same stored bits to f32
            np.testing.assert_array_equal(state[name], tensor.numpy(), err_msg=name)


def test_position_ids_and_no_mask():
    model_hf = build("llama_gqa")
    ids = np.random.default_rng(3).integers(0, 200, size=(2, 19))
    pos = np.stack([np.arange(19) + 5, np.arange(19)])
    with torch.no_grad():
        ref = model_hf(input_ids=torch.from_numpy(ids), position_ids=torch.from_numpy(pos)).logits.numpy()
    model = tinylm.Model(model_hf.config.to_dict() | {"architectures": ["LlamaForCausalLM"]})
    model.load_state_dict({k: v.numpy() for k, v in model_hf.state_dict().items()})
    assert_close(model.forward(ids, position_ids=pos), ref, length=decoder(model_hf.config, *ids.shape).forward,
                 what="logits with position_ids")


def test_backward_accumulates_until_zero_grad():
    model_hf = build("qwen2_bias")
    model = tinylm.Model(model_hf.config.to_dict() | {"architectures": ["Qwen2ForCausalLM"]})
    model.load_state_dict({k: v.numpy() for k, v in model_hf.state_dict().items()}, strict=False)
    ids, mask, labels = batch(B=2, T=11)
    model.loss(ids, labels, mask)
    model.zero_grad()
    model.backward()
    once = {k: v.copy() for k, v in model.grads().items()}
    model.backward(scale=0.5)
    # The second backward is the first scaled by an exact power of two; only
    # adding it into the held gradients rounds anew: the sums over the B*T
    # tokens (where a GEMM accumulates) and the addition itself.
    B, T = ids.shape
    for name, g in model.grads().items():
        assert_close(g, 1.5 * once[name], length=B * T + 2, what=name)


def test_frozen_parameters_get_no_gradient_and_the_rest_still_match(tmp_path):
    save(build("llama_gqa"), tmp_path)
    ref = load_reference(tmp_path)
    ids, mask, labels = batch(B=2, T=23)
    _, _, ref_grads = reference_outputs(ref, ids, mask, labels)
    chain = decoder(ref.config, *ids.shape)
    model = tinylm.Model.from_pretrained(tmp_path)
    model.freeze(["model.embed_tokens.*", "model.layers.0.*", "*.mlp.*"])
    model.loss(ids, labels, mask)
    model.backward()
    grads = model.grads()
    assert set(grads) == set(model.trainable_names())
    assert not any(n.startswith("model.layers.0.") or ".mlp." in n or "embed" in n for n in grads)
    assert "model.layers.1.self_attn.q_proj.weight" in grads
    for name, g in grads.items():
        assert_close(g, ref_grads[name], length=chain.backward, what=name)
    with pytest.raises(KeyError, match="matches no parameter"):
        model.freeze("model.nothing.*")


def test_one_and_two_threads_agree(saved):
    """Threads split reductions differently: the same computation in another
    order, so the same bound as against transformers (and no other)."""
    ids, mask, labels = batch(B=3, T=37)
    model = tinylm.Model.from_pretrained(saved)
    chain = decoder(model.config, *ids.shape)
    results = []
    before = tinylm.get_num_threads()
    try:
        for threads in (1, 2):
            tinylm.set_num_threads(threads)
            logits = model.forward(ids, mask)
            loss = model.loss(ids, labels, mask)
            model.zero_grad()
            model.backward()
            results.append((logits, loss, {k: v.copy() for k, v in model.grads().items()}))
    finally:
        tinylm.set_num_threads(before)
    (l1, s1, g1), (l2, s2, g2) = results
    assert_close(l2, l1, length=chain.forward, what="logits")
    assert s2 == approx(s1, length=chain.loss)
    for name in g1:
        assert_close(g2[name], g1[name], length=chain.backward, what=name)


def test_finite_differences_agree_with_backward():
    """The C backward against the C forward alone: central differences on the
    entries with the largest gradients of a few parameters."""
    model_hf = build("llama_head_dim")
    model = tinylm.Model(model_hf.config.to_dict() | {"architectures": ["LlamaForCausalLM"]})
    model.load_state_dict({k: v.numpy() for k, v in model_hf.state_dict().items()})
    ids, mask, labels = batch(B=2, T=13)
    model.loss(ids, labels, mask)
    model.zero_grad()
    model.backward()
    grads = {k: v.copy() for k, v in model.grads().items()}
    eps = 1e-2
    for name in ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
                 "model.layers.0.mlp.up_proj.weight", "model.layers.1.input_layernorm.weight",
                 "model.embed_tokens.weight", "lm_head.weight"]:
        param = model.param(name)
        flat = np.argsort(-np.abs(grads[name]).ravel())[:3]
        for k in flat:
            idx = np.unravel_index(k, param.shape)
            original = param[idx]
            param[idx] = original + eps
            up = model.loss(ids, labels, mask)
            param[idx] = original - eps
            down = model.loss(ids, labels, mask)
            param[idx] = original
            numeric = (up - down) / (2 * eps)
            # Not a reordering tolerance: central differences are off by
            # their truncation error, O(eps^2) relative, and both losses
            # come from one order of one computation.
            assert numeric == pytest.approx(grads[name][idx], rel=2e-2, abs=1e-4), (name, idx)
