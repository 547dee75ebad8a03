"""The families besides Llama and Qwen2 (Qwen3, Gemma 1/2/3, Phi-2, Phi-3,
StableLM, SmolLM3, a MobileLLM-style Llama) against transformers and PEFT:
forward, loss and every gradient from F32 and BF16 checkpoints, padding and
position ids, LongRoPE's long/short switch, LoRA on each family's module
names (Phi-3's fused qkv_proj and gate_up_proj), greedy generation with the
KV cache (prompts longer than the sliding window), adapter files both ways,
merged saves, QLoRA, older config spellings and the fields tinylm refuses.

The configs are tests/hf_models.py:FAMILY_CONFIGS, the semantics they pin
down /work/notes/families.md. Tolerances are tests/tolerance.py's only
(decoder() counts the stages these families add).

Where a sliding window leaves a padded query with no real key, transformers'
logits there are an artefact (hf_models.defined_rows): those positions are
not compared; losses and gradients never depend on them.
"""
import json
import os
import shutil

import numpy as np
import peft
import pytest
import torch
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULT_TARGETS

import tinylm
from eval_fixtures import model_folder, step_logits
from hf_models import (FAMILY_CONFIGS, WINDOW, batch, bias_grad_scales, build, defined_rows, load_reference,
                       reference_outputs, save)
from test_generate import PROMPTS, generation_length, hf_generate
from test_lora import _copy_lora, _lora_chain, _peft_model
from tolerance import approx, assert_argmax_agree, assert_close, assert_greedy_agree, bound, decoder

NAMES = list(FAMILY_CONFIGS)

# Every projection of a layer under the family's own module names (what
# PEFT's "all-linear" picks there, checked below).
ALL_TARGETS = {
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
}
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# A few of them, for the adapter files.
SOME_TARGETS = {"phi": ["q_proj", "dense", "fc2"], "phi3": ["qkv_proj", "gate_up_proj"]}
LLAMA_SOME = ["q_proj", "k_proj", "o_proj", "up_proj"]


def model_type(name):
    return FAMILY_CONFIGS[name][0].model_type


def all_targets(name):
    return ALL_TARGETS.get(model_type(name), LLAMA_TARGETS)


def some_targets(name):
    return SOME_TARGETS.get(model_type(name), LLAMA_SOME)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """saved(name, dtype) -> a folder with build(name) saved in dtype, made once per module."""
    cache = {}

    def get(name, dtype=torch.float32):
        if (name, dtype) not in cache:
            path = tmp_path_factory.mktemp(f"{name}-{str(dtype)[6:]}")
            save(build(name), path, dtype=dtype)
            cache[name, dtype] = path
        return cache[name, dtype]
    return get


def family_batch(config, B=3, T=37):
    """batch() with the config's pad id (if inside the vocabulary) among the
    real tokens, as input and as label: nn.Embedding(padding_idx=pad) gives
    its row no gradient through the lookup, which must be matched."""
    ids, mask, labels = batch(B=B, T=T)
    pad = config.pad_token_id
    if pad is not None and 0 <= pad < config.vocab_size:
        ids[0, [6, 11]] = pad
        ids[B - 1, 3] = pad
        labels = np.where(mask == 1, ids, -100)
        labels[0, :5] = -100
    return ids, mask, labels


# ------------------------------------------------------------- forward and gradients
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", NAMES)
def test_logits_loss_and_grads_match_transformers(saved, name, dtype):
    path = saved(name, dtype)
    ref = load_reference(path)
    ids, mask, labels = family_batch(ref.config)
    scales = bias_grad_scales(ref, ids, mask, labels)
    ref_logits, ref_loss, ref_grads = reference_outputs(ref, ids, mask, labels)
    rows = defined_rows(ref.config, mask)
    chain = decoder(ref.config, *ids.shape)

    model = tinylm.Model.from_pretrained(path)
    assert_close(model.forward(ids, attention_mask=mask)[rows], ref_logits[rows], length=chain.forward,
                 what="logits")
    assert model.loss(ids, labels, attention_mask=mask) == approx(ref_loss, length=chain.loss)
    assert model.last_num_tokens == int((labels[:, 1:] != -100).sum())
    model.zero_grad()
    model.backward()
    grads = model.grads()
    assert set(grads) == set(ref_grads)
    for pname, expected in ref_grads.items():
        assert_close(grads[pname], expected, length=chain.backward, scale=scales.get(pname), what=pname)


# Residual dropout (Phi's and Phi-3's resid_pdrop) in a training step.
# tinylm draws its masks from (seed, key) hashes, not torch's generator, so
# the reference applies tinylm's own masks through forward hooks on
# transformers' dropout modules; loss and every gradient must then agree.
RESID_SEED = 0x7265736964706472  # csrc/model/decoder.c


def _resid_masks(model, rng_counter, layers, shape, p):
    """{(layer, sublayer): tinylm's kept-and-rescaled mask}, sublayer 0 attention, 1 MLP."""
    n = int(np.prod(shape))
    masks = {}
    for l in range(layers):
        for branch in (0, 1):
            out = np.empty(n, dtype=np.float32)
            tinylm._core.ops.dropout_forward(out, np.ones(n, dtype=np.float32), n, p, RESID_SEED,
                                             (rng_counter * layers + l) * 2 + branch)
            masks[l, branch] = torch.from_numpy(out.reshape(shape))
    return masks


@pytest.mark.parametrize("name", ["phi2_parallel", "phi3_fused"])
def test_residual_dropout_equals_transformers_with_the_same_masks(tmp_path, name):
    p, counter = 0.25, 3
    save(build(name, resid_pdrop=p), tmp_path)
    ref = load_reference(tmp_path)
    ref.train()
    ids, mask, labels = batch(B=2, T=23)
    D, L = ref.config.hidden_size, ref.config.num_hidden_layers
    masks = _resid_masks(ref, counter, L, (*ids.shape, D), p)
    for l, layer in enumerate(ref.model.layers):
        if hasattr(layer, "resid_dropout"):  # Phi: one module, called for attention then the MLP
            calls = []

            def hook(module, args, output, l=l, calls=calls):
                branch = len(calls) % 2
                calls.append(branch)
                return args[0] * masks[l, branch]
            layer.resid_dropout.register_forward_hook(hook)
        else:  # Phi-3: one module per sublayer
            layer.resid_attn_dropout.register_forward_hook(lambda m, a, o, l=l: a[0] * masks[l, 0])
            layer.resid_mlp_dropout.register_forward_hook(lambda m, a, o, l=l: a[0] * masks[l, 1])
    ref_logits, ref_loss, ref_grads = reference_outputs(ref, ids, mask, labels)

    model = tinylm.Model.from_pretrained(tmp_path)
    chain = decoder(ref.config, *ids.shape)
    model.rng_counter = counter
    loss = model.loss(ids, labels, attention_mask=mask)
    assert loss == approx(ref_loss, length=chain.loss)
    model.zero_grad()
    model.backward()
    grads = model.grads()
    scales = bias_grad_scales(ref, ids, mask, labels)
    for pname, expected in ref_grads.items():
        assert_close(grads[pname], expected, length=chain.backward, scale=scales.get(pname), what=pname)
    # the masks mattered: the same weights without residual dropout give gradients far from these
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "resid_pdrop": 0.0}))
    plain = tinylm.Model.from_pretrained(tmp_path)
    plain.loss(ids, labels, attention_mask=mask)
    plain.backward()
    moved = [n for n, g in plain.grads().items()
             if np.abs(g - grads[n]).max() > 100 * bound(chain.backward, np.abs(grads[n]).max())]
    assert len(moved) > len(grads) // 2, moved


def test_loaded_weights_equal_saved_ones(saved):
    """Every family's parameter names and values as transformers reads them
    (exact: both widen the same stored bits to f32); tied heads are not
    separate parameters."""
    for name in NAMES:
        path = saved(name, torch.bfloat16)
        ref = load_reference(path)
        expected = {n: p.detach().numpy() for n, p in ref.named_parameters()}
        state = tinylm.Model.from_pretrained(path).state_dict()
        assert set(state) == set(expected), name
        for pname, value in expected.items():
            np.testing.assert_array_equal(state[pname], value, err_msg=f"{name}: {pname}")


# Position ids without a mask (consecutive per row, so transformers does not
# read them as packed sequences). LongRoPE picks its factors from the largest
# position of the whole batch: the short config's second row is computed
# with the long factors because the first row's positions pass 48.
POSITION_CASES = [(name, 5) for name in NAMES] + [("phi3_longrope_short_sliding", 40)]


@pytest.mark.parametrize("name,offset", POSITION_CASES, ids=[f"{n}-{o}" for n, o in POSITION_CASES])
def test_position_ids_and_no_mask(saved, name, offset):
    path = saved(name)
    ref = load_reference(path)
    ids = np.random.default_rng(3).integers(0, ref.config.vocab_size, size=(2, 19))
    pos = np.stack([np.arange(19) + offset, np.arange(19)])
    with torch.no_grad():
        expected = ref(input_ids=torch.from_numpy(ids), position_ids=torch.from_numpy(pos)).logits.numpy()
    model = tinylm.Model.from_pretrained(path)
    assert_close(model.forward(ids, position_ids=pos), expected, length=decoder(ref.config, *ids.shape).forward,
                 what="logits with position_ids")


@pytest.mark.parametrize("T", [16, 17], ids=["T=omax-short", "T=omax+1-long"])
def test_longrope_switches_to_the_long_factors_past_original_max(saved, T):
    """phi3_longrope_long has original_max_position_embeddings 16: a batch of
    16 positions uses the short factors, 17 the long ones for every position
    (transformers compares max(position_ids) + 1 > 16)."""
    path = saved("phi3_longrope_long")
    ref = load_reference(path)
    ids, mask, labels = batch(B=2, T=T)
    mask[:] = 1
    labels = ids.copy()
    scales = bias_grad_scales(ref, ids, mask, labels)
    ref_logits, ref_loss, ref_grads = reference_outputs(ref, ids, mask, labels)
    with torch.no_grad():  # the switch is real: the first 16 positions change when a 17th comes
        prefix = ref(input_ids=torch.from_numpy(ids[:, :16])).logits.numpy()
    chain = decoder(ref.config, *ids.shape)
    moved = np.abs(ref_logits[:, :16] - prefix).max()
    assert (moved == 0) if T == 16 else (moved > 100 * bound(chain.forward, np.abs(prefix).max()))
    model = tinylm.Model.from_pretrained(path)
    assert_close(model.forward(ids, mask), ref_logits, length=chain.forward, what=f"logits, T={T}")
    assert model.loss(ids, labels, mask) == approx(ref_loss, length=chain.loss)
    model.zero_grad()
    model.backward()
    for pname, expected in ref_grads.items():
        assert_close(model.grads()[pname], expected, length=chain.backward, scale=scales.get(pname), what=pname)


# Each switch of the configs changes transformers' logits far beyond
# rounding (so the tests above would see it ignored), and the one switch
# transformers ignores (Gemma3's attn_logit_softcapping) changes nothing.
SWITCHES = [
    ("qwen3_sliding_tied", dict(use_sliding_window=False, layer_types=["full_attention"] * 3)),
    ("gemma2_softcap", dict(attn_logit_softcapping=None)),
    ("gemma2_softcap", dict(final_logit_softcapping=None)),
    ("gemma2_softcap", dict(query_pre_attn_scalar=24)),
    ("gemma2_softcap", dict(sliding_window=64)),
    ("gemma3_layer_rope", dict(rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
                                                "full_attention": {"rope_type": "default", "rope_theta": 1e4}})),
    ("gemma3_layer_rope", dict(final_logit_softcapping=None)),
    ("phi2_parallel", dict(partial_rotary_factor=1.0)),
    ("phi3_longrope_long", dict(original_max_position_embeddings=48)),
    ("phi3_longrope_short_sliding", dict(sliding_window=None)),
    ("stablelm_parallel_qk", dict(partial_rotary_factor=1.0)),
    ("smollm3_nope_sliding", dict(no_rope_layers=[1, 1, 1, 1],
                                  layer_types=["full_attention", "sliding_attention"] * 2)),
    ("smollm3_nope_sliding", dict(sliding_window=64)),
]
IGNORED = [("gemma3_layer_rope", dict(attn_logit_softcapping=None))]


@pytest.mark.parametrize("name,override", SWITCHES + IGNORED,
                         ids=[f"{n}-{'-'.join(o)}" for n, o in SWITCHES + IGNORED])
def test_each_switch_matters_in_transformers(name, override):
    """Transformers only: the configs really exercise what they claim (the
    same weights, drawn from the same seed, with and without the switch)."""
    ids, mask, _ = batch(B=3, T=37)
    out, rows = [], np.ones(ids.shape, dtype=bool)
    for kw in ({}, override):
        ref = build(name, **kw).eval()
        ref.set_attn_implementation("eager")
        with torch.no_grad():
            out.append(ref(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy())
        rows &= defined_rows(ref.config, mask)
    moved = np.abs(out[0][rows] - out[1][rows]).max()
    if (name, override) in IGNORED:
        assert moved == 0
    else:
        chain = decoder(ref.config, *ids.shape)
        assert moved > 100 * bound(chain.forward, np.abs(out[0][rows]).max()), moved


# ------------------------------------------------------------------------ LoRA
@pytest.mark.parametrize("name", NAMES)
def test_lora_on_every_projection_equals_peft(saved, name):
    """r=4 on every projection under the family's names (the set PEFT's
    all-linear picks), B random, the embedding trainable too (the input
    gradient through every LoRA path): logits, loss, LoRA and embedding
    gradients equal PEFT's on transformers."""
    path = saved(name)
    targets = all_targets(name)
    picked = peft.get_peft_model(load_reference(path), peft.LoraConfig(r=2, target_modules="all-linear"))
    assert {n.rsplit(".", 1)[-1] for n, m in picked.named_modules() if isinstance(m, peft.tuners.lora.LoraLayer)} \
        == set(targets)

    pm = _peft_model(path, [("default", peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets))])
    pm.base_model.model.model.embed_tokens.weight.requires_grad_(True)
    config = pm.base_model.model.config
    ids, mask, labels = family_batch(config, B=3, T=29)
    pm.zero_grad()
    out = pm(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), labels=torch.from_numpy(labels))
    out.loss.backward()
    expected = {n.removeprefix("base_model.model."): p.grad.numpy() for n, p in pm.named_parameters()
                if p.requires_grad and p.grad is not None}
    rows = defined_rows(config, mask)

    model = tinylm.Model.from_pretrained(path)
    model.add_lora(r=4, alpha=8, target_modules=targets)
    assert sorted(n for n in model.parameter_names() if "lora_" in n) == \
        sorted(n.removeprefix("base_model.model.") for n, _ in pm.named_parameters() if "lora_" in n)
    _copy_lora(pm, model)
    model.unfreeze("model.embed_tokens.weight")
    chain = _lora_chain(model, ids)
    assert_close(model.forward(ids, mask)[rows], out.logits.detach().numpy()[rows], length=chain.forward,
                 what="logits")
    assert model.loss(ids, labels, mask) == approx(out.loss.item(), length=chain.loss)
    model.zero_grad()
    model.backward()
    grads = model.grads()
    assert set(grads) == set(expected)
    for pname, g in expected.items():
        assert_close(grads[pname], g, length=chain.backward, what=pname)


@pytest.mark.parametrize("name", NAMES)
def test_peft_default_targets(saved, name):
    """LoraConfig() without target_modules: PEFT's default for the family
    (peft.utils.constants); Phi-3 and SmolLM3 have none and PEFT refuses."""
    path = saved(name)
    default = PEFT_DEFAULT_TARGETS.get(model_type(name))
    if default is None:
        with pytest.raises(ValueError, match="target_modules"):
            peft.get_peft_model(load_reference(path), peft.LoraConfig(r=2))
        pytest.skip(f"PEFT has no default target modules for {model_type(name)}")
    pm = peft.get_peft_model(load_reference(path), peft.LoraConfig(r=2))
    expected = sorted(n.removeprefix("base_model.model.") for n, _ in pm.named_parameters() if "lora_" in n)
    model = tinylm.Model.from_pretrained(path)
    model.add_lora(r=2, alpha=8, target_modules=default)
    assert sorted(n for n in model.parameter_names() if "lora_" in n) == expected


@pytest.mark.parametrize("name", NAMES)
def test_adapter_files_cross_both_ways(saved, tmp_path, name):
    path = saved(name)
    targets = some_targets(name)
    ids, mask, _ = batch(B=2, T=13)
    # PEFT -> tinylm
    cfg = peft.LoraConfig(r=4, lora_alpha=12, target_modules=targets, use_rslora=True)
    pm = _peft_model(path, [("default", cfg)])
    pm.save_pretrained(tmp_path / "peft")
    with torch.no_grad():
        expected = pm(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    rows = defined_rows(pm.base_model.model.config, mask)

    model = tinylm.Model.from_pretrained(path)
    assert model.load_adapter(tmp_path / "peft") == "default"
    assert_close(model.forward(ids, mask)[rows], expected[rows], length=_lora_chain(model, ids).forward,
                 what="logits with PEFT's adapter")

    # tinylm -> PEFT
    ours = tinylm.Model.from_pretrained(path)
    ours.add_lora(r=4, alpha=8, target_modules=targets)
    rng = np.random.default_rng(1)
    for n in ours.parameter_names():
        if "lora_B" in n:
            ours.param(n)[...] = rng.normal(0, 0.2, ours.param(n).shape)
    ours.save_adapter(tmp_path / "ours")
    saved_cfg = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    assert sorted(saved_cfg["target_modules"]) == sorted(targets)
    pm = peft.PeftModel.from_pretrained(load_reference(path), tmp_path / "ours")
    with torch.no_grad():
        expected = pm(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    assert_close(ours.forward(ids, mask)[rows], expected[rows], length=_lora_chain(ours, ids).forward,
                 what="PEFT logits with tinylm's adapter")


@pytest.mark.parametrize("name", NAMES)
def test_merged_save_loads_in_transformers(saved, tmp_path, name):
    model = tinylm.Model.from_pretrained(saved(name))
    model.add_lora(r=4, alpha=8, target_modules="all-linear")
    rng = np.random.default_rng(2)
    for n in model.parameter_names():
        if "lora_B" in n:
            model.param(n)[...] = rng.normal(0, 0.2, model.param(n).shape)
    model.save_pretrained(tmp_path / "merged", merged=True)
    ids, mask, _ = batch(B=2, T=13)
    ref = load_reference(tmp_path / "merged")
    assert type(ref).__name__ == FAMILY_CONFIGS[name][1].__name__
    with torch.no_grad():
        expected = ref(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    rows = defined_rows(ref.config, mask)
    r, merge = 4, 4 + 2  # the merge rounds W + s B A: a sum over r, a product and a sum
    assert_close(model.forward(ids, mask)[rows], expected[rows],
                 length=decoder(model.config, *ids.shape, lora_r=r).forward + merge, what="merged model")


@pytest.mark.parametrize("name", NAMES)
def test_qlora_nf4_loads_and_trains_a_step(saved, name):
    model = tinylm.Model.from_pretrained(saved(name), quant="nf4")
    model.add_lora(r=4, alpha=8, target_modules=all_targets(name), seed=1)
    assert all("lora_" in n for n in model.trainable_names())
    ids, mask, labels = batch(B=2, T=19)
    opt = tinylm.AdamW(model, lr=1e-2)
    losses = []
    for _ in range(2):
        model.zero_grad()
        losses.append(model.loss(ids, labels, mask))
        model.backward()
        assert all(np.isfinite(g).all() for g in model.grads().values())
        opt.step()
    assert np.isfinite(losses).all() and losses[1] != losses[0]


# ------------------------------------------------------------------ generation
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """folder(name) -> (path, transformers tokenizer): a model folder with the test tokenizer."""
    cache = {}

    def get(name):
        if name not in cache:
            path = tmp_path_factory.mktemp(f"gen-{name}")
            _, tok = model_folder(path, name)
            cache[name] = path, tok
        return cache[name]
    return get


def prefix_logits(model, prompt_ids, new_ids):
    """Like eval_fixtures.step_logits, but a forward over each step's own
    context: with LongRoPE one forward over the final sequence would use the
    long factors for steps whose context was still short."""
    ids = list(prompt_ids) + list(new_ids)
    return np.stack([model.forward([ids[:n]])[0, -1] for n in range(len(prompt_ids), len(ids))])


@pytest.mark.parametrize("name", NAMES)
def test_greedy_generation_equals_transformers(folder, name):
    """Greedy decoding with the KV cache against transformers' generate and
    the argmax of a full forward at every step. Two prompts are longer than
    the window (5). LongRoPE configs decode one prompt at a time (transformers
    picks the factors for the whole batch from its longest row) and run past
    original_max_position_embeddings (16), where transformers re-encodes the
    sequence with the long factors (Phi3ForCausalLM.prepare_inputs_for_generation):
    every step then equals a forward over its own context (prefix_logits)."""
    path, tok = folder(name)
    ref = load_reference(path)
    lengths = [len(tok.encode(p)) for p in PROMPTS]
    assert max(lengths) > WINDOW
    longrope = (ref.config.rope_parameters or {}).get("rope_type") == "longrope"
    new = 16 if longrope else 12
    if longrope:
        omax = ref.config.original_max_position_embeddings
        if omax < max(lengths) + new:  # then some prompt starts short and decodes past omax
            assert any(n <= omax < n + new for n in lengths)
        groups = [[p] for p in PROMPTS]
    else:
        groups = [PROMPTS]
    expected = [e for g in groups for e in hf_generate(ref, tok, g, max_new_tokens=new)]

    ours = tinylm.Tokenizer.from_pretrained(path)
    model = tinylm.Model.from_pretrained(path)
    got = [x for g in groups for x in model.generate(ours, g, max_new_tokens=new, return_details=True)]
    for prompt, g, e in zip(PROMPTS, got, expected):
        length = generation_length(model, len(groups[0]), max(lengths) + new)
        logits = (prefix_logits if longrope else step_logits)(model, tok.encode(prompt), g.token_ids)
        agreed = assert_greedy_agree(g.token_ids, e, logits, length=length, what=prompt)
        assert agreed < len(g.token_ids) or g.finish_reason == "eos" or g.token_ids == e
        assert_argmax_agree(g.token_ids, logits, length=length, what=prompt)


# ------------------------------------------------------------ config reading
def _rewrite(src, dst, edit):
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    edit(cfg)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def _gemma3_old(c):  # rope_theta / rope_local_base_freq / rope_scaling and sliding_window_pattern
    del c["rope_parameters"], c["layer_types"]
    c.update(rope_theta=1e6, rope_local_base_freq=1e4, rope_scaling={"rope_type": "linear", "factor": 4.0},
             sliding_window_pattern=3)


def _top_level_rope(c):  # rope_theta and partial_rotary_factor beside the other fields
    rope = c.pop("rope_parameters")
    c["rope_theta"] = rope["rope_theta"]
    if "partial_rotary_factor" in rope:
        c["partial_rotary_factor"] = rope["partial_rotary_factor"]


def _phi3_rope_scaling(c):  # Phi-3.5's spelling: rope_scaling with "type", omax only at the top level
    # (transformers 5.24 cannot read the older "type": "su" without an
    # original_max_position_embeddings inside rope_scaling: a KeyError in
    # validate_rope, since standardize_rope_params only copies it for "longrope")
    rope = c.pop("rope_parameters")
    c.update(rope_theta=rope["rope_theta"], partial_rotary_factor=rope["partial_rotary_factor"],
             rope_scaling={"type": "longrope", "short_factor": rope["short_factor"],
                           "long_factor": rope["long_factor"]})


LEGACY = [("gemma3_layer_rope", _gemma3_old), ("phi2_parallel", _top_level_rope),
          ("stablelm_parallel_qk", _top_level_rope), ("qwen3_qk_norm", _top_level_rope),
          ("smollm3_untied", _top_level_rope), ("phi3_longrope_long", _phi3_rope_scaling)]


@pytest.mark.parametrize("name,edit", LEGACY, ids=[f"{n}-{e.__name__.strip('_')}" for n, e in LEGACY])
def test_older_config_spellings(saved, tmp_path, name, edit):
    """config.json as older transformers wrote it: transformers reads the same
    model (checked exactly), and so must tinylm."""
    path = _rewrite(saved(name), tmp_path / "old", edit)
    ids, mask, _ = batch(B=2, T=23)
    with torch.no_grad():
        outs = [load_reference(p)(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
                for p in (saved(name), path)]
    np.testing.assert_array_equal(outs[0].numpy(), outs[1].numpy())  # the same model, respelled
    ref = load_reference(path)
    rows = defined_rows(ref.config, mask)
    model = tinylm.Model.from_pretrained(path)
    assert_close(model.forward(ids, mask)[rows], outs[1].numpy()[rows], length=decoder(ref.config, *ids.shape).forward,
                 what="logits")


def _set(**fields):
    def edit(c):
        c.update(fields)
    edit.__name__ = "-".join(fields)
    return edit


def _rope_type(rope_type, where=None):
    def edit(c):
        rope = c["rope_parameters"][where] if where else c["rope_parameters"]
        rope.update(rope_type=rope_type, factor=2.0)
    edit.__name__ = f"rope-{rope_type}"
    return edit


# (config, edit of config.json, what the error must name)
UNSUPPORTED = [
    ("qwen3_qk_norm", _rope_type("dynamic"), r"dynamic"),
    ("gemma3_layer_rope", _rope_type("yarn", "full_attention"), r"yarn"),
    ("phi2_parallel", _set(hidden_act="relu"), r"hidden_act"),
    ("gemma2_softcap", _set(hidden_activation="relu"), r"hidden_activation"),
    ("gemma3_untied_gqa", _set(use_bidirectional_attention=True), r"use_bidirectional_attention"),
]


@pytest.mark.parametrize("name,edit,field", UNSUPPORTED, ids=[f"{n}-{e.__name__}" for n, e, _ in UNSUPPORTED])
def test_unsupported_settings_are_refused_by_name(saved, tmp_path, name, edit, field):
    path = _rewrite(saved(name), tmp_path / "edited", edit)
    with pytest.raises(tinylm.UnsupportedError, match=field):
        tinylm.Model.from_pretrained(path)


# ----------------------------------------------------------------- evaluation
GOLDEN = os.path.join(os.path.dirname(__file__), "..", "datasets", "support_triage", "golden.jsonl")
CORPUS = "The quick brown fox jumps over the lazy dog. Hello world! How are you today?"


@pytest.mark.parametrize("name", NAMES)
def test_golden_eval_and_corpus_perplexity(folder, tmp_path, name):
    """tinylm.evaluate on every family: each golden case's output is the
    model's greedy generation (compared with transformers' above), and the
    corpus log-likelihood equals transformers' loss over the same tokens."""
    path, tok = folder(name)
    golden = tmp_path / "golden.jsonl"
    with open(GOLDEN, encoding="utf-8") as f:
        golden.write_text("".join(f.readline() for _ in range(3)))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    ours = tinylm.Tokenizer.from_pretrained(path)
    model = tinylm.Model.from_pretrained(path)
    report = tinylm.evaluate(model, ours, golden=golden, corpus=corpus, max_new_tokens=6, batch_size=2,
                             progress=False)
    cases = report.data["cases"]
    assert len(cases) == 3
    for case in cases:
        assert case["output"] == model.generate(ours, case["prompt"], max_new_tokens=6), case["id"]

    ref = load_reference(path)
    seq = [ref.config.bos_token_id] + tok.encode(CORPUS, add_special_tokens=False)
    ids = torch.tensor([seq])
    with torch.no_grad():
        loss = ref(input_ids=ids, labels=ids).loss.item()
    (metric,) = report.data["metrics"].values()  # {corpus name: metrics}
    length = decoder(ref.config, 1, len(seq)).loss + len(seq)
    assert metric["loglikelihood"] == approx(-loss * (len(seq) - 1), length=length,
                                              scale=abs(loss) * (len(seq) - 1))
