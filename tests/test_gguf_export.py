"""tinylm's GGUF writer (tinylm.gguf.export) against llama.cpp's converter and
quantizer: an F32 export holds exactly the converter's tensors; quantized
exports hold llama.cpp's reference quantization of them (the gguf package's
for the types it quantizes, llama-quantize's own output for the mixtures when
the llama.cpp build is there); GGUF -> tinylm -> GGUF keeps every block; a
LoRA adapter becomes llama.cpp's adapter tensors."""
import gguf
import numpy as np
import pytest

import llamacpp_ref
import tinylm
from gguf_fixtures import GGUF_CASES, UNWRITABLE
from tinylm.errors import UnsupportedError
from tinylm.gguf import export, ggml
from tinylm.gguf.file import GGUFFile

GGUF_PACKAGE_QUANTIZES = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"}


def _tensors(path) -> dict:
    with GGUFFile(path) as f:
        return {name: (info.ggml_type, info.ne, f.raw(name).copy()) for name, info in f.tensors.items()}


@pytest.mark.parametrize("case", [c for c in GGUF_CASES if c not in UNWRITABLE])
def test_f32_export_equals_the_converter(gguf_converted, tmp_path, case):
    _, folder, reference = gguf_converted[case]
    model = tinylm.Model.from_pretrained(folder)
    ours = str(tmp_path / "ours.gguf")
    export.save_model(model, ours, "F32", [])
    theirs, got = _tensors(reference), _tensors(ours)
    assert set(got) == set(theirs)
    for name, (t, ne, data) in theirs.items():
        assert got[name][:2] == (t, ne), name
        if name.endswith("norm.weight") and model.config.get("model_type", "").startswith("gemma"):
            continue  # 1 + w, rounded once by each writer from the same f32 w: checked below
        np.testing.assert_array_equal(got[name][2], data, err_msg=name)
    with GGUFFile(reference) as f, GGUFFile(ours) as g:
        for key, value in f.metadata.items():
            if key.startswith(f.metadata["general.architecture"] + "."):
                assert np.array_equal(g.metadata[key], value), key


@pytest.mark.parametrize("case", sorted(UNWRITABLE))
def test_what_llama_cpp_cannot_load_is_not_written(gguf_converted, tmp_path, case):
    """tinylm reads the converter's file and refuses to write it back, as a model or as an adapter."""
    model = tinylm.Model.from_pretrained(gguf_converted[case][2])
    with pytest.raises(UnsupportedError, match=UNWRITABLE[case]):
        model.save_gguf(tmp_path / "m.gguf", "F32")
    model.add_lora(r=2, alpha=4)
    with pytest.raises(UnsupportedError, match=UNWRITABLE[case]):
        model.save_adapter(tmp_path / "a.gguf", format="gguf")
    assert not list(tmp_path.iterdir())


def test_gemma_norms_are_one_plus_w(gguf_converted, tmp_path):
    _, folder, reference = gguf_converted["gemma_mqa"]
    model = tinylm.Model.from_pretrained(folder)
    ours = str(tmp_path / "g.gguf")
    export.save_model(model, ours, "F32", [])
    with GGUFFile(reference) as f, GGUFFile(ours) as g:
        w = model.weight("model.norm.weight")
        np.testing.assert_array_equal(np.frombuffer(g.raw("output_norm.weight"), np.float32), w + np.float32(1))
        np.testing.assert_array_equal(g.raw("output_norm.weight"), f.raw("output_norm.weight"))


@pytest.mark.parametrize("quant", ["F16", "BF16", "Q8_0", "Q4_0", "Q5_0", "Q4_1"])
def test_quantized_export_is_the_reference_quantization(gguf_converted, tmp_path, quant):
    """Each tensor: the gguf package's quantization of the converter's F32
    tensor, for the types it quantizes; the others (Q6_K heads) llama.cpp's
    own quantizer when built."""
    _, folder, reference = gguf_converted["llama_gqa"]
    model = tinylm.Model.from_pretrained(folder)
    ours = str(tmp_path / f"{quant}.gguf")
    export.save_model(model, ours, quant, [])
    got = _tensors(ours)
    with GGUFFile(reference) as f:
        for name, info in f.tensors.items():
            t = got[name][0]
            f32 = np.frombuffer(f.raw(name), np.float32).reshape(info.shape)
            name_t = ggml.by_id(t).name
            if name_t in GGUF_PACKAGE_QUANTIZES:
                want = gguf.quants.quantize(f32, gguf.GGMLQuantizationType(t))
                np.testing.assert_array_equal(got[name][2], np.asarray(want).view(np.uint8).reshape(-1), err_msg=name)
            elif not llamacpp_ref.skip_reason():
                want = llamacpp_ref.libggml().quantize(t, f32.reshape(-1, f32.shape[-1]))
                assert got[name][2].tobytes() == want, name
    with GGUFFile(ours) as g:
        assert g.metadata["general.file_type"] == {"F16": 1, "BF16": 32, "Q8_0": 7, "Q4_0": 2, "Q5_0": 8,
                                                  "Q4_1": 3}[quant]
        assert g.metadata["general.quantization_version"] == 2


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K_M"])
def test_gguf_round_trip_keeps_every_block(gguf_converted, tmp_path, quant):
    _, folder, reference = gguf_converted["llama_gqa"]
    first = str(tmp_path / "first.gguf")
    export.save_model(tinylm.Model.from_pretrained(folder), first, quant, [])
    model = tinylm.Model.from_pretrained(first)
    again = str(tmp_path / "again.gguf")
    export.save_model(model, again, None, [])
    a, b = _tensors(first), _tensors(again)
    assert set(a) == set(b)
    for name in a:
        assert a[name][:2] == b[name][:2] and np.array_equal(a[name][2], b[name][2]), name
    with GGUFFile(first) as f, GGUFFile(again) as g:
        assert list(f.tensors) == list(g.tensors) and list(f.metadata) == list(g.metadata)
        assert all(np.array_equal(f.metadata[k], g.metadata[k]) for k in f.metadata)


def test_mixture_equals_llama_quantize_bytes(gguf_converted, tmp_path):
    """Q4_K_M from tinylm and from llama-quantize, tensor for tensor."""
    if llamacpp_ref.skip_reason():
        pytest.skip(llamacpp_ref.skip_reason())
    _, folder, reference = gguf_converted["llama3_rope_bias"]
    theirs = str(tmp_path / "theirs.gguf")
    llamacpp_ref.quantize(reference, theirs, "Q4_K_M")
    ours = str(tmp_path / "ours.gguf")
    export.save_model(tinylm.Model.from_pretrained(folder), ours, "Q4_K_M", [])
    a, b = _tensors(theirs), _tensors(ours)
    assert list(a) == list(b)  # llama-quantize's order
    for name in a:
        assert a[name][:2] == b[name][:2] and np.array_equal(a[name][2], b[name][2]), name
