"""The ggml type of each tensor of an exported file (tinylm.gguf.mixture)
against what llama-quantize itself chooses for the same file: every tensor
of tiny Llamas quantized by llama.cpp's tool to each file type tinylm
writes, row lengths that fit 256-blocks and ones that need the fallback,
tied and untied heads. Needs the llama.cpp build (make test-llamacpp)."""
import pytest
import torch
import transformers

import llamacpp_ref
from fixture_paths import tokenizer_fixture
from tinylm.gguf import mixture
from tinylm.gguf.file import GGUFFile

if llamacpp_ref.skip_reason():
    pytest.skip(llamacpp_ref.skip_reason(), allow_module_level=True)

LAYERS = 12  # the first/last eighth and every third layer differ; blk.10 sorts before blk.2 by name
FILE_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M",
              "Q5_K_S", "Q5_K_M", "Q6_K"]


@pytest.fixture(scope="module", params=[(256, 768, False), (256, 320, True)], ids=["fits-256", "fallback-tied"])
def f32_gguf(request, tmp_path_factory):
    hidden, ffn, tied = request.param
    tok = transformers.PreTrainedTokenizerFast.from_pretrained(tokenizer_fixture("mistral-7b"))
    root = tmp_path_factory.mktemp("mixture")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=LAYERS,
                                      num_attention_heads=8, num_key_value_heads=2, vocab_size=len(tok),
                                      tie_word_embeddings=tied, bos_token_id=tok.bos_token_id,
                                      eos_token_id=tok.eos_token_id)
    transformers.LlamaForCausalLM(config).save_pretrained(str(root / "hf"))
    tok.save_pretrained(str(root / "hf"))
    llamacpp_ref.convert(str(root / "hf"), str(root / "f32.gguf"), merge_scores=True)
    return root


@pytest.mark.parametrize("ftype", FILE_TYPES)
def test_types_equal_llama_quantize(f32_gguf, ftype):
    src, dst = str(f32_gguf / "f32.gguf"), str(f32_gguf / f"{ftype}.gguf")
    llamacpp_ref.quantize(src, dst, ftype)
    with GGUFFile(src) as f:
        tensors = [(name, info.shape) for name, info in f.tensors.items()]
    with GGUFFile(dst) as f:
        theirs = {name: info.ggml_type for name, info in f.tensors.items()}
        assert f.metadata["general.file_type"] == mixture.file_type(ftype).llama_ftype
    ours = mixture.tensor_types(ftype, tensors, LAYERS, n_gqa=4)
    assert ours == theirs


def test_overrides_equal_llama_quantize_flags(f32_gguf):
    """Q8_0 with a Q6_K head and a Q4_K embedding, as
    llama-quantize --output-tensor-type q6_K --token-embedding-type q4_K."""
    src, dst = str(f32_gguf / "f32.gguf"), str(f32_gguf / "q8_head.gguf")
    llamacpp_ref.quantize(src, dst, "Q8_0", output_type="q6_K", embedding_type="q4_K")
    with GGUFFile(src) as f:
        tensors = [(name, info.shape) for name, info in f.tensors.items()]
    with GGUFFile(dst) as f:
        theirs = {name: info.ggml_type for name, info in f.tensors.items()}
    assert mixture.tensor_types("Q8_0", tensors, LAYERS, output_type="q6_K", embedding_type="q4_K") == theirs
