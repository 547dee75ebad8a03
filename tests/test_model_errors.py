"""Bad input to Model.from_pretrained and the compute calls: each case is a
Python exception that names the culprit, never a crash."""
import json
import shutil
import struct

import numpy as np
import pytest

import tinylm
from hf_models import build, save


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("good")
    save(build("llama_gqa"), path)
    return path


@pytest.fixture
def model_dir(good, tmp_path):
    """A fresh copy of a valid model folder to damage."""
    dst = tmp_path / "model"
    shutil.copytree(good, dst)
    return dst


def _read(path):
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _write(path, header, data):
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def _entries(header):
    return sorted(((k, v) for k, v in header.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0])


def test_truncated_file(model_dir):
    st = model_dir / "model.safetensors"
    st.write_bytes(st.read_bytes()[:-100])
    with pytest.raises(tinylm.FormatError, match="model.safetensors"):
        tinylm.Model.from_pretrained(model_dir)


def test_header_length_past_the_end(model_dir):
    st = model_dir / "model.safetensors"
    raw = st.read_bytes()
    st.write_bytes(struct.pack("<Q", len(raw) + 10) + raw[8:])
    with pytest.raises(tinylm.FormatError, match="model.safetensors"):
        tinylm.Model.from_pretrained(model_dir)


def test_overlapping_data_offsets(model_dir):
    st = model_dir / "model.safetensors"
    header, data = _read(st)
    (n1, e1), (n2, e2) = _entries(header)[:2]
    e2["data_offsets"] = [e2["data_offsets"][0] - 4, e2["data_offsets"][1] - 4]
    _write(st, header, data)
    with pytest.raises(tinylm.FormatError, match="model.safetensors") as err:
        tinylm.Model.from_pretrained(model_dir)
    assert n1 in str(err.value) or n2 in str(err.value)


def test_out_of_range_data_offsets(model_dir):
    st = model_dir / "model.safetensors"
    header, data = _read(st)
    name, last = _entries(header)[-1]
    last["data_offsets"][1] += 64
    _write(st, header, data)
    with pytest.raises(tinylm.FormatError, match=f"model.safetensors.*{name}"):
        tinylm.Model.from_pretrained(model_dir)


def test_unknown_dtype(model_dir):
    st = model_dir / "model.safetensors"
    header, data = _read(st)
    name, entry = _entries(header)[0]
    entry["dtype"] = "F12"
    _write(st, header, data)
    with pytest.raises(tinylm.FormatError, match=f"model.safetensors.*{name}.*F12|F12.*{name}"):
        tinylm.Model.from_pretrained(model_dir)


def test_non_float_dtype_is_refused(model_dir):
    st = model_dir / "model.safetensors"
    header, data = _read(st)
    entry = header["model.norm.weight"]
    entry["dtype"] = "I32"  # same size as F32: the file itself stays valid
    _write(st, header, data)
    with pytest.raises(tinylm.FormatError, match="model.norm.weight.*I32"):
        tinylm.Model.from_pretrained(model_dir)


def test_shape_disagrees_with_config(model_dir):
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["intermediate_size"] += 8
    (model_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(tinylm.FormatError, match=r"model.safetensors.*mlp\.(gate|up|down)_proj\.weight.*shape"):
        tinylm.Model.from_pretrained(model_dir)


def test_missing_tensor(model_dir):
    st = model_dir / "model.safetensors"
    header, data = _read(st)
    name, entry = _entries(header)[-1]
    start, end = entry["data_offsets"]
    del header[name]
    _write(st, header, data[:start] + data[end:])
    with pytest.raises(tinylm.FormatError, match=f"{name}.*missing"):
        tinylm.Model.from_pretrained(model_dir)


def test_missing_shard(tmp_path):
    save(build("llama_gqa"), tmp_path, max_shard_size="60KB")
    shard = sorted(tmp_path.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=shard.name):
        tinylm.Model.from_pretrained(tmp_path)


def test_broken_config_json(model_dir):
    (model_dir / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "hidden_size": 64,')
    with pytest.raises(tinylm.FormatError, match="config.json.*JSON"):
        tinylm.Model.from_pretrained(model_dir)


def test_missing_config_field(model_dir):
    cfg = json.loads((model_dir / "config.json").read_text())
    del cfg["hidden_size"]
    (model_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(tinylm.FormatError, match="config.json.*hidden_size"):
        tinylm.Model.from_pretrained(model_dir)


@pytest.mark.parametrize("change,match", [
    ({"architectures": ["MistralForCausalLM"]}, "MistralForCausalLM"),
    ({"architectures": ["GPTNeoXForCausalLM"]}, "GPTNeoXForCausalLM"),
    ({"hidden_act": "relu"}, "hidden_act.*relu"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "yarn"),
    ({"attention_dropout": 0.1}, "attention_dropout"),
])
def test_unsupported_architecture_or_option(model_dir, change, match):
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg.update(change)
    cfg.pop("rope_parameters", None) if "rope_scaling" in change else None
    (model_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(tinylm.UnsupportedError, match=match):
        tinylm.Model.from_pretrained(model_dir)


def test_not_a_folder_and_no_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        tinylm.Model.from_pretrained(tmp_path / "nope")
    (tmp_path / "config.json").write_text(json.dumps(build("llama_gqa").config.to_dict()
                                                     | {"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        tinylm.Model.from_pretrained(tmp_path)


def test_bad_compute_inputs(good):
    model = tinylm.Model.from_pretrained(good)
    V = model.config["vocab_size"]
    with pytest.raises(ValueError, match=r"input_ids\[0, 2\] = %d.*vocabulary" % V):
        model.forward([[1, 2, V]])
    with pytest.raises(ValueError, match=r"input_ids\[0, 0\] = -1"):
        model.forward([[-1, 2]])
    with pytest.raises(ValueError, match="labels.*shape"):
        model.loss([[1, 2, 3]], [[1, 2]])
    with pytest.raises(ValueError, match="every label is -100"):
        model.loss([[1, 2, 3]], [[5, -100, -100]])  # the only label is labels[0], which the shift drops
    with pytest.raises(ValueError, match=r"labels\[0, 1\] = 9999"):
        model.loss([[1, 2, 3]], [[1, 9999, 3]])
    with pytest.raises(ValueError, match="backward.*loss"):
        tinylm.Model.from_pretrained(good).backward()
    with pytest.raises(ValueError, match=r"input_ids must be \[batch, seq_len\]"):
        model.forward(np.zeros((1, 2, 3), dtype=np.int32))


def test_nan_loss_is_refused_by_backward(good):
    model = tinylm.Model.from_pretrained(good)
    model.param("model.norm.weight")[0] = np.nan
    loss = model.loss([[1, 2, 3, 4]], [[1, 2, 3, 4]])
    assert np.isnan(loss)
    with pytest.raises(tinylm.NumericError, match="nan"):
        model.backward()


@pytest.mark.parametrize("name", ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight",
                                  "model.embed_tokens.weight"])
def test_a_nan_weight_reaches_the_loss(good, name):
    model = tinylm.Model.from_pretrained(good)
    model.param(name).ravel()[0] = np.nan
    ids = [[0, 1, 2, 3, 4, 5]]  # token 0 reads the poisoned embedding row
    assert np.isnan(model.loss(ids, ids))
    assert np.isnan(model.forward(ids)).any()
