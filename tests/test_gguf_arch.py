"""tinylm.gguf.arch against llama.cpp's own converter.

Each case is a tiny random transformers model (tests/hf_models.py), saved
and converted by the real convert_hf_to_gguf.py (outtype f32; only its
vocabulary step is replaced, tests/gguf_convert.py). Then:
  - gguf_metadata(config) gives the converter's keys, key by key with their
    GGUF types, except the deliberate differences listed in DELIBERATE;
  - tensor_plan + to_gguf + extra_tensors give the converter's tensors, name
    by name and byte for byte (rope_freqs to float32 rounding: torch's and
    numpy's float32 pow differ by an ulp);
  - hf_config of those keys and tensors, with the weights mapped back by the
    plan, makes a tinylm model whose logits are transformers' on the
    original model, and transformers itself reads that config.json to the
    same logits; for the configs a GGUF cannot carry in full, gguf_losses
    names the fields and the logits are compared with transformers on the
    config as read back (llama.cpp's meaning of the file);
  - hf_config of the converter's own file reads the same, and writing the
    read-back config gives the same keys again.
Cases the converter cannot convert are asserted to fail as it does today;
those it converts to a file llama.cpp cannot load, tinylm refuses to write."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import gguf
import numpy as np
import pytest
import safetensors.numpy
import torch
from tokenizers import Tokenizer, models

import tinylm
from hf_models import VOCAB, batch, build, defined_rows, load_reference, save
import llamacpp_ref
from tinylm import families
from tinylm.errors import FormatError, UnsupportedError
from tinylm.gguf import arch, llama3_rope
from tolerance import assert_close, decoder

LLAMA_CPP = llamacpp_ref.converter_dir()
CONVERTER = os.path.join(os.path.dirname(__file__), "gguf_convert.py")

# case -> (hf_models config, overrides)
CASES = {
    "llama_gqa": ("llama_gqa", {}),
    "llama_mqa_tied": ("llama_mqa_tied", {}),
    "llama_head_dim": ("llama_head_dim", {}),
    "llama3_rope_bias": ("llama3_rope_bias", {}),  # one frequency between the llama3 bounds
    # two frequencies between the bounds, low_freq_factor 2: read back as an equal rope with low_freq_factor 1
    "llama3_rope_two_smooth": ("llama_gqa", {"rope_theta": 500000.0, "rope_scaling": {
        "rope_type": "llama3", "factor": 16.0, "low_freq_factor": 2.0, "high_freq_factor": 32.0,
        "original_max_position_embeddings": 4096}}),
    "qwen2_bias": ("qwen2_bias", {}),
    "qwen3_qk_norm": ("qwen3_qk_norm", {"attention_bias": False}),
    "qwen3_bias": ("qwen3_qk_norm", {}),  # biases on q, k, v and o
    "qwen3_sliding_tied": ("qwen3_sliding_tied", {}),
    "gemma_mqa": ("gemma_mqa", {}),
    "gemma_bias_untied": ("gemma_bias_untied", {}),
    "gemma2_softcap": ("gemma2_softcap", {}),
    "gemma2_scaled": ("gemma2_softcap", {"query_pre_attn_scalar": 24}),
    "gemma2_nocap_untied": ("gemma2_nocap_untied", {}),
    "gemma3_layer_rope_capped": ("gemma3_layer_rope", {}),
    "gemma3_layer_rope": ("gemma3_layer_rope", {"attn_logit_softcapping": None, "query_pre_attn_scalar": 20}),
    "gemma3_untied_gqa": ("gemma3_untied_gqa", {}),
    "phi2_parallel": ("phi2_parallel", {}),
    "phi2_qk_ln_tied": ("phi2_qk_ln_tied", {}),
    "phi2_gqa_tied": ("phi2_qk_ln_tied", {"qk_layernorm": False}),
    "phi3_fused": ("phi3_fused", {}),
    "phi3_longrope_long": ("phi3_longrope_long", {}),
    "phi3_longrope_short_sliding": ("phi3_longrope_short_sliding", {}),
    "stablelm_parallel_qk": ("stablelm_parallel_qk", {}),
    "stablelm_parallel": ("stablelm_parallel_qk", {"qk_layernorm": False}),
    "stablelm_sequential_tied": ("stablelm_sequential_tied", {}),
    "smollm3_nope_sliding": ("smollm3_nope_sliding", {}),
    "smollm3_untied": ("smollm3_untied", {}),
    "smollm3_step4": ("smollm3_untied", {"num_hidden_layers": 4, "no_rope_layers": None,
                                         "no_rope_layer_interval": 4}),
}

# The converter cannot convert these (case -> what it fails with).
CONVERTER_FAILS = {
    "gemma2_nocap_untied": "struct.error",  # add_float32(None) for the missing soft-caps
    "gemma3_layer_rope_capped": "AssertionError",  # it asserts attn_logit_softcapping is None
    "phi2_qk_ln_tied": "Can not map tensor",  # no q/k LayerNorm tensors in its phi2
    "stablelm_parallel_qk": "Unprocessed norms",  # its per-head norm stacking yields nothing
}

# The converter converts these but llama.cpp cannot load what it writes, and tinylm
# refuses to write them (case -> the refusal); their files read back all the same.
REFUSED = {"qwen3_bias": "attention_bias=True cannot be written to a GGUF qwen3 model"}

# Converted once more with --fuse-qkv: q, k, v in one attn_qkv tensor (older Phi-2 files have that too).
FUSED = ("llama3_rope_bias", "qwen2_bias", "phi2_parallel")

# Keys where gguf_metadata deliberately differs from the converter (case -> keys).
DELIBERATE = {
    "gemma3_layer_rope": {"gemma3.attention.sliding_window_pattern"},  # llama.cpp's 5-in-6 default is wrong here
    "gemma3_untied_gqa": {"gemma3.attention.sliding_window_pattern"},
    "phi2_parallel": {"phi2.feed_forward_length"},  # the converter writes 4 * hidden
    "phi2_gqa_tied": {"phi2.feed_forward_length", "phi2.attention.head_count_kv"},  # and heads as KV heads
    "phi3_longrope_short_sliding": {"phi3.rope.scaling.attn_factor"},  # the converter ignores the given one
}
# ...of which these read back alike (the reader takes the true values from the tensor shapes)
READ_ALIKE = {"phi2_parallel", "phi2_gqa_tied"}

# The fields gguf_losses names (case -> fields); every other case loses none.
LOSSY = {
    "qwen3_sliding_tied": ["use_sliding_window"],
    "gemma_bias_untied": ["tie_word_embeddings"],
    "gemma2_softcap": ["query_pre_attn_scalar"],  # 20, where llama.cpp scales by head_dim 24
    "gemma2_nocap_untied": ["tie_word_embeddings", "attn_logit_softcapping", "final_logit_softcapping"],
    "gemma3_layer_rope_capped": ["query_pre_attn_scalar"],
    "smollm3_nope_sliding": ["no_rope_layers", "sliding_window"],
    "smollm3_untied": ["no_rope_layers"],
}

_TYPES = {np.uint32: "UINT32", np.float32: "FLOAT32", bool: "BOOL", str: "STRING", list: "ARRAY"}


def _tokenizer(path, vocab: int) -> None:
    """A real tokenizer.json of the model's size: Gemma 3's converter cuts
    token_embd to the tokenizer's vocabulary."""
    Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0")).save(str(path / "tokenizer.json"))


def _read_gguf(path):
    """(metadata without tokenizer and general.* keys but the architecture,
    {key: GGUF type name}, {tensor: GGUF shape}, {tensor: float32 array})."""
    reader = gguf.GGUFReader(path)
    meta, types = {}, {}
    for key, field in reader.fields.items():
        if key.startswith(("GGUF.", "tokenizer.")) or key.startswith("general.") and key != "general.architecture":
            continue
        meta[key], types[key] = field.contents(), field.types[0].name
    shapes = {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}
    data = {t.name: np.array(t.data, dtype=np.float32) for t in reader.tensors}
    return meta, types, shapes, data


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """case -> dict(model, dir, config, state, gguf=(meta, types, shapes, data) or None, failure,
    fused=the --fuse-qkv file's (meta, types, shapes, data) for the FUSED cases)."""
    if LLAMA_CPP is None:
        pytest.skip(f"llama.cpp's converter is not in {llamacpp_ref.CACHE} (run {llamacpp_ref.BUILD_COMMAND} "
                    "--source; TINYLM_LLAMA_CPP overrides)")
    root = tmp_path_factory.mktemp("gguf_arch")
    cases, jobs = {}, []
    for case, (name, overrides) in CASES.items():
        folder = root / case
        model = build(name, **overrides)
        save(model, folder)
        _tokenizer(folder, VOCAB)
        config = json.loads((folder / "config.json").read_text())
        state = safetensors.numpy.load_file(str(folder / "model.safetensors"))
        cases[case] = dict(model=model.eval(), dir=folder, config=config, state=state)
        jobs.append([str(folder), str(root / f"{case}.gguf"), []])
        if case in FUSED:
            jobs.append([str(folder), str(root / f"{case}-fused.gguf"), ["--fuse-qkv"]])
    (root / "jobs.json").write_text(json.dumps(jobs))
    run = subprocess.run([sys.executable, CONVERTER, LLAMA_CPP, str(root / "jobs.json")], capture_output=True,
                         text=True, timeout=300)
    failures = dict(line[len("CONVERT-FAILED "):].split(": ", 1) for line in run.stdout.splitlines()
                    if line.startswith("CONVERT-FAILED "))
    for case, c in cases.items():
        out = str(root / f"{case}.gguf")
        c["failure"] = failures.get(out)
        c["gguf"] = None if c["failure"] else _read_gguf(out)
        if case in FUSED:
            c["fused"] = _read_gguf(str(root / f"{case}-fused.gguf"))
    return cases


def _table(config):
    """tinylm's parameter table (name, shape) for a config."""
    return [(name, shape) for name, shape, *_ in tinylm.Model(config)._core.params()]


def _ours(config, state):
    """The file gguf_metadata and the plan write: (keys, {tensor: float32 array})."""
    entries = arch.tensor_plan(config, _table(config))
    return arch.gguf_metadata(config), {**arch.to_gguf(entries, state), **arch.extra_tensors(config)}


def _inventory(tensors):
    return {name: tuple(reversed(a.shape)) for name, a in tensors.items()}


def _config_values(tensors):
    return {name: tensors[name] for name in arch.CONFIG_TENSORS if name in tensors}


def _read_back(keys, tensors, source):
    """hf_config of a file, and the HF weights the plan maps out of it."""
    config = arch.hf_config(keys, _inventory(tensors), source, _config_values(tensors))
    entries = arch.tensor_plan(config, _table(config), source, _inventory(tensors))
    arch.check_tensors(config, entries, _inventory(tensors), source)
    return config, arch.to_hf(entries, tensors.__getitem__)


@pytest.mark.parametrize("case", sorted(set(CASES) - set(CONVERTER_FAILS) - set(REFUSED)))
def test_metadata_is_the_converters(converted, case):
    c = converted[case]
    assert c["failure"] is None, c["failure"]
    meta, types, _, _ = c["gguf"]
    ours = arch.gguf_metadata(c["config"])
    differ = {k for k in set(ours) | set(meta) if k not in ours or k not in meta or ours[k] != meta[k]}
    assert differ == DELIBERATE.get(case, set()), {k: (ours.get(k), meta.get(k)) for k in differ}
    for key in set(ours) & set(meta):
        assert _TYPES[type(ours[key])] == types[key], key


@pytest.mark.parametrize("case", sorted(set(CASES) - set(CONVERTER_FAILS) - set(REFUSED)))
def test_tensors_are_the_converters(converted, case):
    c = converted[case]
    _, _, shapes, data = c["gguf"]
    _, ours = _ours(c["config"], c["state"])
    assert _inventory(ours) == shapes
    for name, value in data.items():
        if name == llama3_rope.NAME:  # computed: torch's float32 pow is not numpy's to the last ulp
            np.testing.assert_allclose(ours[name], value, rtol=2e-6, atol=0)
        else:
            assert np.array_equal(ours[name], value), name


@pytest.mark.parametrize("case", sorted(set(CASES) - {"phi2_qk_ln_tied"} - set(REFUSED)))
def test_read_back_computes_the_model(converted, case, tmp_path):
    c = converted[case]
    keys, tensors = _ours(c["config"], c["state"])
    config, weights = _read_back(keys, tensors, f"{case}.gguf")
    losses = [loss.split(":")[0] for loss in arch.gguf_losses(c["config"])]
    assert losses == LOSSY.get(case, [])

    # transformers reads the config.json and the weights hf_config and the plan give
    (tmp_path / "config.json").write_text(json.dumps(config))
    safetensors.numpy.save_file(weights, str(tmp_path / "model.safetensors"))
    theirs = load_reference(tmp_path)
    ours = tinylm.Model(config)
    ours.load_state_dict(weights)

    reference = theirs if case in LOSSY else c["model"]  # lossy: the file's meaning, as llama.cpp reads it
    ids, mask, _ = batch()
    ref_logits = reference(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.detach().numpy()
    rows = defined_rows(reference.config, mask)
    chain = decoder(reference.config, *ids.shape)
    assert_close(ours.forward(ids, attention_mask=mask)[rows], ref_logits[rows], length=chain.forward,
                 what=f"{case}: tinylm on the read-back config")
    if case not in LOSSY:
        their_logits = theirs(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.detach().numpy()
        assert_close(their_logits[rows], ref_logits[rows], length=chain.forward,
                     what=f"{case}: transformers on the read-back config")
    else:
        assert _math(config) != _math(c["config"]), "a lossy case reads back as the same model"

    # writing the read-back config gives the same file again (a lossy one may spell out llama.cpp's defaults)
    rewritten = arch.gguf_metadata(config)
    assert {k: rewritten.get(k) for k in keys} == keys
    assert case in LOSSY or set(rewritten) == set(keys)
    again = arch.extra_tensors(config)
    for name, value in again.items():
        np.testing.assert_allclose(value, tensors[name], rtol=1e-5)
    assert set(again) == set(_config_values(tensors))


def _math(config):
    """What tinylm computes from a config (its descriptor), without the pad
    row (the tokenizer's, not the architecture's)."""
    d = families.descriptor(config)
    d.pop("padding_idx")
    return json.dumps(d, sort_keys=True, default=str)


@pytest.mark.parametrize("case", sorted(set(CASES) - set(CONVERTER_FAILS)))
def test_the_converters_file_reads_back(converted, case):
    c = converted[case]
    meta, _, shapes, data = c["gguf"]
    config, _ = _read_back(meta, data, f"{case}.gguf")
    if case in REFUSED:  # nothing of ours to compare with: the model tinylm computes from it is the original
        assert _math(config) == _math(c["config"])
    elif case not in DELIBERATE or case in READ_ALIKE:
        keys, tensors = _ours(c["config"], c["state"])
        assert config == _read_back(keys, tensors, f"{case}.gguf")[0]


@pytest.mark.parametrize("case", FUSED)
def test_fused_qkv_reads_as_the_separate_tensors(converted, case):
    c = converted[case]
    meta, _, _, data = c["fused"]
    assert "blk.0.attn_qkv.weight" in data and "blk.0.attn_q.weight" not in data
    config, weights = _read_back(meta, data, f"{case}-fused.gguf")
    separate_config, separate = _read_back(*c["gguf"][::3], f"{case}.gguf")
    assert config == separate_config and weights.keys() == separate.keys()
    for name, value in separate.items():
        assert np.array_equal(weights[name], value), name


def test_inverse_rows_permute_hf_rows_into_the_file(converted):
    c = converted["llama_gqa"]
    entries = arch.tensor_plan(c["config"], _table(c["config"]))
    written = arch.to_gguf(entries, c["state"])
    permuted = [e for e in entries if e.rows is not None]
    assert {e.hf.split(".")[-2] for e in permuted} == {"q_proj", "k_proj"}
    for e in permuted:
        assert np.array_equal(written[e.gguf], c["state"][e.hf][e.inverse_rows()])


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_llama_cpp_cannot_load_is_not_written(converted, case):
    config = converted[case]["config"]
    for write in (arch.gguf_metadata, arch.gguf_losses, arch.extra_tensors):
        with pytest.raises(UnsupportedError, match=REFUSED[case]):
            write(config)


@pytest.mark.parametrize("case", sorted(CONVERTER_FAILS))
def test_what_the_converter_cannot_convert(converted, case):
    assert CONVERTER_FAILS[case] in (converted[case]["failure"] or ""), converted[case]["failure"]


def test_phi_qk_layernorm_has_no_gguf_tensor(converted):
    config = converted["phi2_qk_ln_tied"]["config"]
    with pytest.raises(UnsupportedError, match=r"q_layernorm\.weight has no tensor in a GGUF phi2 model"):
        arch.tensor_plan(config, _table(config))


# ------------------------------------------------------------------ no converter needed
LLAMA32_1B = dict(head_dim=64, theta=500000.0, factor=32.0, low=1.0, high=4.0, original=8192)


def test_llama3_rope_of_llama32_is_recovered_exactly():
    p = LLAMA32_1B
    values = llama3_rope.divisors(p["theta"], p["head_dim"], p["factor"], p["low"], p["high"], p["original"])
    assert llama3_rope.recover(values, p["theta"], p["head_dim"], "x") == {
        "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}


def test_llama3_rope_that_is_not_llama3_is_refused():
    p = LLAMA32_1B
    values = llama3_rope.divisors(p["theta"], p["head_dim"], p["factor"], p["low"], p["high"], p["original"])
    values[-1] = 3.0  # a low frequency not divided by the factor
    with pytest.raises(UnsupportedError, match="does not follow Llama 3"):
        llama3_rope.recover(values, p["theta"], p["head_dim"], "x")


def _llama_meta(**changes):
    meta = {"general.architecture": "llama", "llama.context_length": 2048, "llama.embedding_length": 64,
            "llama.block_count": 2, "llama.feed_forward_length": 96, "llama.attention.head_count": 4,
            "llama.attention.layer_norm_rms_epsilon": 1e-5}
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not None}


_LLAMA_TENSORS = {"token_embd.weight": (64, 211)}


def test_unknown_architecture_is_named_with_the_supported_ones():
    with pytest.raises(UnsupportedError, match=r"'mamba' is not supported; tinylm supports gemma, gemma2, .*smollm3"):
        arch.hf_config(_llama_meta(**{"general.architecture": "mamba"}), _LLAMA_TENSORS, "m.gguf")


@pytest.mark.parametrize("key", ["general.architecture", "llama.embedding_length", "llama.block_count",
                                 "llama.context_length", "llama.attention.head_count",
                                 "llama.attention.layer_norm_rms_epsilon"])
def test_missing_required_key_is_named(key):
    with pytest.raises(FormatError, match=f"m.gguf: missing required metadata key '{key}'"):
        arch.hf_config(_llama_meta(**{key: None}), _LLAMA_TENSORS, "m.gguf")


def test_defaults_are_llama_cpps():
    config = arch.hf_config(_llama_meta(), _LLAMA_TENSORS, "m.gguf")
    assert config["num_key_value_heads"] == 4 and config["head_dim"] == 16 and config["vocab_size"] == 211
    assert config["rope_parameters"] == {"rope_type": "default", "rope_theta": 10000.0}
    assert config["rms_norm_eps"] == 1e-5 and config["tie_word_embeddings"] is True


def test_per_layer_head_counts_must_agree():
    with pytest.raises(UnsupportedError, match="llama.attention.head_count_kv differs between layers"):
        arch.hf_config(_llama_meta(**{"llama.attention.head_count_kv": [2, 4]}), _LLAMA_TENSORS, "m.gguf")


def test_extra_tensor_is_unsupported(converted):
    c = converted["llama_gqa"]
    keys, tensors = _ours(c["config"], c["state"])
    config = arch.hf_config(keys, _inventory(tensors), "m.gguf")
    entries = arch.tensor_plan(config, _table(config))
    with pytest.raises(UnsupportedError, match="tensor 'blk.0.attn_q_norm.weight' is not part of a llama model"):
        arch.check_tensors(config, entries, {**_inventory(tensors), "blk.0.attn_q_norm.weight": (16,)}, "m.gguf")
    with pytest.raises(FormatError, match=r"tensor 'blk.1.ffn_up.weight' has shape \[64, 95\], expected \[64, 112\]"):
        arch.check_tensors(config, entries, {**_inventory(tensors), "blk.1.ffn_up.weight": (64, 95)}, "m.gguf")
