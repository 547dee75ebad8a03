"""The kernel paths agree: the C core is built once per x86-64 level
(setup.py) and chosen at import from the CPU; TINYLM_ISA forces one. Each
variant this CPU runs computes every kernel reachable from Python in a
subprocess (tests/isa_worker.py), and the results must agree to rounding
across the variants and with transformers. Also: the selection errors, the
default choice, and that the baseline contains no AVX instruction."""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tinylm import _isa
from hf_models import batch, build, load_reference, reference_outputs, save
from tolerance import approx, assert_close, decoder

import tinylm

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(tinylm.__file__)))  # subprocesses import this tinylm
RUNNABLE = [isa for isa in _isa.built() if isa in _isa.supported()]
TEXT = "Turn on the kitchen lights at 7:30 — s'il vous plaît, Grüße 👋\n\tand the fan to 3."

# Integer outputs (codes, token ids) and element-wise kernels with no
# reduction behind them (AdamW from fixed gradients, dequantization) must be
# bit-identical: IEEE +, *, / and sqrt round the same in every lane width.
# So must ggml's block codecs, whose float sums run in ggml's order on every path.
EXACT = ("nf4_codes", "nf4_absmax", "nf4_dq_codes", "token_ids", "decoded", "nf4/dequantized", "int8/dequantized",
         "adamw/", "ggml/")
LORA_R = 4  # the rank isa_worker.py gives the quantized bases' adapters
MATRIX_SHAPE = (96, 200)  # the matrix isa_worker.py quantizes to NF4
NF4_BLOCKS = MATRIX_SHAPE[0] * MATRIX_SHAPE[1] // 64


def reduction_length(key, config, ids, grads):
    """The float32 chain length behind one output of isa_worker.py
    (tests/tolerance.py): the variants differ only in how each reduction is
    split across vector lanes (no FMA contraction anywhere: -std=c11), the
    same freedom a change of thread count has."""
    quant = key.startswith(("nf4/", "int8/"))
    chain = decoder(config, *ids.shape, lora_r=LORA_R if quant else 0)
    name = key.split("/", 1)[1] if quant else key
    if name == "logits":
        return chain.forward
    if name == "loss":
        return chain.loss
    if name.startswith("grad/"):
        return chain.backward
    if name == "grad_norm":  # each tensor's sum of squares, then their sum
        return chain.backward + max(g.size for g in grads.values()) + len(grads) + 2
    if name in ("nf4_absmax_offset", "nf4_dq_scales"):  # a mean over the blocks
        return NF4_BLOCKS + 2
    raise KeyError(f"no tolerance for {key}: add it here")


def assert_paths_agree(key, actual, expected, config, ids, grads, what):
    if key.startswith(EXACT):
        np.testing.assert_array_equal(actual, expected, err_msg=what)
    else:
        assert_close(actual, expected, length=reduction_length(key, config, ids, grads), what=what)


def run_python(code_or_args, isa=None, extra_env=None, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != _isa.ENV}
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_ROOT, HERE, env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    if isa is not None:
        env[_isa.ENV] = isa
    env.update(extra_env or {})
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("isa_model")
    save(build("llama_gqa"), path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    ids, mask, labels = batch()
    g = np.random.default_rng(7)
    matrix = (g.standard_normal(MATRIX_SHAPE) * 0.7).astype(np.float32)
    path = tmp_path_factory.mktemp("isa_inputs") / "inputs.npz"
    np.savez(path, ids=ids, mask=mask, labels=labels, matrix=matrix, text=np.array(TEXT))
    return path


@pytest.fixture(scope="module")
def results(model_dir, inputs, tmp_path_factory):
    """{isa: {key: array}} for every variant this CPU runs."""
    out = {}
    for isa in RUNNABLE:
        path = tmp_path_factory.mktemp("isa_out") / f"{isa}.npz"
        proc = run_python([os.path.join(HERE, "isa_worker.py"), str(model_dir), str(inputs), str(path)], isa=isa)
        assert proc.returncode == 0, f"{isa}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
        with np.load(path) as z:
            out[isa] = {k: z[k] for k in z.files}
        assert str(out[isa]["isa"]) == isa
    return out


def test_variants_agree_to_rounding(results, model_dir):
    if len(results) < 2:
        pytest.skip(f"only {list(results)} runs on this CPU (or is built); nothing to compare")
    base_isa = RUNNABLE[0]  # the lowest: the portable baseline where built
    base = results[base_isa]
    config = load_reference(model_dir).config
    ids, _, _ = batch()
    grads = {k: v for k, v in base.items() if k.startswith("grad/")}
    for isa, res in results.items():
        assert set(res) == set(base), f"{isa}: outputs {sorted(set(res) ^ set(base))} differ from {base_isa}'s"
        for key in base:
            if key != "isa":
                assert_paths_agree(key, res[key], base[key], config, ids, grads, what=f"{key}: {isa} vs {base_isa}")


def test_every_variant_matches_transformers(results, model_dir):
    ids, mask, labels = batch()
    ref = load_reference(model_dir)
    ref_logits, ref_loss, ref_grads = reference_outputs(ref, ids, mask, labels)
    chain = decoder(ref.config, *ids.shape)
    for isa, res in results.items():
        assert_close(res["logits"], ref_logits, length=chain.forward, what=f"{isa} logits")
        assert float(res["loss"]) == approx(ref_loss, length=chain.loss, what=f"{isa} loss")
        for name, expected in ref_grads.items():
            assert_close(res[f"grad/{name}"], expected, length=chain.backward, what=f"{isa} grad {name}")


def test_tokenizer_round_trips_on_every_variant(results):
    for isa, res in results.items():
        assert str(res["decoded"]) == TEXT, isa


def test_default_is_the_best_supported_variant():
    proc = run_python("import tinylm; print(tinylm.isa())")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == RUNNABLE[-1] == _isa.choose("")
    # "auto" is the same as unset
    assert run_python("import tinylm; print(tinylm.isa())", isa="auto").stdout.strip() == RUNNABLE[-1]


@pytest.mark.parametrize("isa", RUNNABLE)
def test_forcing_a_variant_loads_it(isa):
    proc = run_python("import tinylm; from tinylm import _core; print(tinylm.isa(), _core.__name__)", isa=isa)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [isa, _isa.module_name(isa)]


def test_forcing_an_unknown_isa_is_a_clear_import_error():
    proc = run_python("import tinylm", isa="avx9000")
    assert proc.returncode == 1, (proc.returncode, proc.stderr)  # an exception, not a signal
    assert "ImportError: TINYLM_ISA='avx9000' is not an instruction set tinylm knows" in proc.stderr


def test_forcing_an_unsupported_isa_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_isa, "supported", lambda: ["x86-64-v2"])
    monkeypatch.setattr(_isa, "built", lambda: list(_isa.LEVELS))
    with pytest.raises(ImportError, match=r"TINYLM_ISA=x86-64-v4: this CPU \(or OS\) does not support it; "
                                          r"it supports x86-64-v2"):
        _isa.choose("x86-64-v4")
    assert _isa.choose("") == "x86-64-v2"  # and unforced, the best it does support
    monkeypatch.setattr(_isa, "supported", lambda: [])
    with pytest.raises(ImportError, match="this CPU supports none of the instruction sets tinylm was built for"):
        _isa.choose("")


def test_forcing_a_variant_that_is_not_built_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_isa, "built", lambda: ["x86-64-v2"])
    monkeypatch.setattr(_isa, "supported", lambda: list(_isa.LEVELS))
    with pytest.raises(ImportError, match="this build of tinylm has no x86-64-v3 variant"):
        _isa.choose("x86-64-v3")


def test_a_variant_this_cpu_lacks_is_refused_without_sigill():
    lacking = [isa for isa in _isa.built() if isa not in _isa.supported()]
    if not lacking:
        pytest.skip("this CPU runs every built variant (the refusal is tested with a stubbed probe above)")
    for isa in lacking:
        proc = run_python("import tinylm", isa=isa)
        assert proc.returncode == 1 and "does not support it" in proc.stderr, (isa, proc.returncode, proc.stderr)


# Instructions the baseline must not contain: any VEX/EVEX-encoded (AVX,
# AVX2, FMA, AVX-512: mnemonics starting with v, or ymm/zmm/k registers) and
# the BMI/ABM/MOVBE integer extensions of x86-64-v3. (tzcnt is left out:
# GCC emits `rep bsf` for generic tuning, which older CPUs run as bsf.)
BEYOND_V2 = re.compile(r"\t(v[a-z0-9]+|andn|bextr|blsi|blsmsk|blsr|bzhi|mulx|pdep|pext|rorx|sarx|shlx|shrx|lzcnt|movbe)"
                       r"\b|%[yz]mm|%k[0-7]")


def _so_path(module):
    import importlib.util
    spec = importlib.util.find_spec(module)
    return spec.origin if spec else None


@pytest.mark.parametrize("module", [_isa.module_name("x86-64-v2"), "tinylm._cpu"])
def test_portable_modules_have_no_instruction_beyond_x86_64_v2(module):
    if shutil.which("objdump") is None:
        pytest.skip("objdump (binutils) is not installed")
    path = _so_path(module)
    if path is None:
        pytest.skip(f"{module} is not built here")
    asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", path], check=True, capture_output=True,
                         text=True).stdout
    bad = [line.strip() for line in asm.splitlines() if BEYOND_V2.search(line)]
    assert not bad, f"{path}: {len(bad)} instructions beyond x86-64-v2, e.g. {bad[:5]}"
    # and the wider variants really are wider (the flags reached the compiler)
    for isa, reg in (("x86-64-v3", "%ymm"), ("x86-64-v4", "%zmm")):
        wide = _so_path(_isa.module_name(isa))
        if wide and module != "tinylm._cpu":
            text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", wide], check=True, capture_output=True,
                                  text=True).stdout
            assert reg in text, f"{wide} has no {reg} instruction: was it built with -march={isa}?"


@pytest.mark.parametrize("cpu, expected", [("Nehalem", "x86-64-v2"), ("Haswell", "x86-64-v3")])
def test_the_import_picks_the_emulated_cpus_variant(cpu, expected):
    """qemu-user emulating an older CPU (Nehalem: SSE4.2, no AVX; Haswell:
    AVX2+FMA, no AVX-512): the import picks that CPU's variant by itself and
    a forward+backward runs (about 10 s each). qemu raises SIGILL on any
    instruction the emulated CPU lacks, so this is the SIGILL test a newer
    build machine cannot run natively."""
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        pytest.skip("qemu-x86_64 is not installed (Debian: apt-get install qemu-user)")
    if expected not in _isa.built():
        pytest.skip(f"the {expected} variant is not built")
    code = ("import numpy as np, tinylm\n"
            "cfg = dict(architectures=['LlamaForCausalLM'], model_type='llama', hidden_size=64,\n"
            "           intermediate_size=112, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,\n"
            "           vocab_size=211, max_position_embeddings=64, tie_word_embeddings=False)\n"
            "m = tinylm.Model.from_config(cfg)\n"
            "ids = np.arange(32, dtype=np.int64).reshape(2, 16) % 211\n"
            "loss = m.loss(ids, ids); m.backward()\n"
            "print(tinylm.isa(), np.isfinite(loss))\n")
    env = {k: v for k, v in os.environ.items() if k not in (_isa.ENV, "OPENBLAS_CORETYPE")}
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_ROOT, env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([qemu, "-cpu", cpu, sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert proc.stdout.split() == [expected, "True"]
