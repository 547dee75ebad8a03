"""Fake quantization inside a model: logits, loss and every gradient of a
model whose projections train through a fake quantizer equal transformers'
(eager) with the same quantizer on its linears: torchao's own QATConfig for
its schemes, the straight-through reference (tinylm.quant's values, checked
on their own in test_fake_quant.py) for GGUF types, PEFT's LoRA with the
merged weight W + s B A fake-quantized. And the model trained is the model
shipped: a QAT model's logits equal those of its save_gguf export, loaded
back, bit for bit."""
import types
import warnings

import numpy as np
import peft
import pytest
import torch
import torch.nn.functional as F

import tinylm
import tinylm.quant as tq
from hf_models import batch, build, load_reference, save
from tolerance import approx, assert_close, decoder

warnings.filterwarnings("ignore", module="torchao")

# Row lengths 256 and 512: whole super-blocks for the K types, whole groups for every torchao group size.
QAT_LLAMA = dict(hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("qat_base")
    save(build("llama_gqa", **QAT_LLAMA), path)
    return path


def _projections(hf_model):
    return {name: m for name, m in hf_model.named_modules()
            if isinstance(m, torch.nn.Linear) and ".layers." in name and "lora_" not in name}


class _StraightThrough(torch.autograd.Function):
    """The fake-quantized value forward, the gradient where no code was cut."""

    @staticmethod
    def forward(ctx, w, scheme):
        value, clip = tq.fake_quantize(w.detach().numpy(), scheme, return_clip=True)
        ctx.save_for_backward(torch.from_numpy(~clip))
        return torch.from_numpy(value)

    @staticmethod
    def backward(ctx, g):
        (keep,) = ctx.saved_tensors
        return g * keep, None


def _fake_quantize_linears(hf_model, scheme):
    for module in _projections(hf_model).values():
        module.forward = types.MethodType(
            lambda self, x: F.linear(x, _StraightThrough.apply(self.weight, scheme), self.bias), module)


def _compare(hf_model, model, *, lora_r=0, trainable=None):
    ids, mask, labels = batch(B=2, T=23)
    chain = decoder(model.config, *ids.shape, lora_r=lora_r)
    out = hf_model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                   labels=torch.from_numpy(labels))
    out.loss.backward()
    assert_close(model.forward(ids, mask), out.logits.detach().numpy(), length=chain.forward, what="logits")
    assert model.loss(ids, labels, mask) == approx(out.loss.item(), length=chain.loss)
    model.zero_grad()
    model.backward()
    grads = model.grads()
    expected = {n.removeprefix("base_model.model."): p.grad.numpy() for n, p in hf_model.named_parameters()
                if p.requires_grad and p.grad is not None}
    assert set(grads) == set(expected)
    for name, g in expected.items():
        assert_close(grads[name], g, length=chain.backward, what=name)
    return grads


@pytest.mark.parametrize("scheme", ["q4_0", "q5_0", "q8_0", "q4_k", "q6_k"])
def test_full_finetune_through_a_gguf_type_equals_the_straight_through_reference(base_dir, scheme):
    ref = load_reference(base_dir)
    _fake_quantize_linears(ref, scheme)
    model = tinylm.Model.from_pretrained(base_dir)
    model.set_fake_quant(scheme)
    assert len(model.fake_quant) == 2 * 7  # a tensor scheme: the projections only
    grads = _compare(ref, model)
    # the float model's gradient differs: fake quantization is really in the chain
    plain = tinylm.Model.from_pretrained(base_dir)
    ids, mask, labels = batch(B=2, T=23)
    plain.loss(ids, labels, mask)
    plain.backward()
    name = "model.layers.0.mlp.down_proj.weight"
    assert np.abs(plain.grads()[name] - grads[name]).max() > 1e-3 * np.abs(grads[name]).max()


@pytest.mark.parametrize("base_config", ["int4_weight_only", "8da4w"])
def test_full_finetune_equals_torchao_qat(base_dir, base_config):
    """torchao's QATConfig(..., step="prepare") on the decoder's linears: its
    FakeQuantizedLinear modules are the reference, gradients through each
    group's min and max (int4) and the int8 per-token activations (8da4w)
    included."""
    from torchao.quantization import Int4WeightOnlyConfig, Int8DynamicActivationIntxWeightConfig, quantize_
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.qat import QATConfig
    if base_config == "int4_weight_only":
        config, scheme = Int4WeightOnlyConfig(group_size=32), "int4_g32"
    else:
        config = Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(64))
        scheme = "8da4w_g64"
    ref = load_reference(base_dir)
    quantize_(ref, QATConfig(config, step="prepare"),
              filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and ".layers." in fqn)
    assert sum("FakeQuantized" in type(m).__name__ for m in ref.modules()) == 2 * 7
    model = tinylm.Model.from_pretrained(base_dir)
    model.set_fake_quant(scheme)
    if scheme.startswith("8da4w"):
        # torchao rounds activations to int8 codes: a float-rounding difference in a projection's input that
        # lands on a code boundary moves that value by a whole step (1/255 of its row's range), which no
        # float tolerance covers. Measure how often and how far instead.
        ids, mask, labels = batch(B=2, T=23)
        out = ref(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        ours, theirs = model.forward(ids, mask), out.logits.detach().numpy()
        assert np.abs(ours - theirs).max() < 2e-3 * np.abs(theirs).max()
        float_model = tinylm.Model.from_pretrained(base_dir)
        assert np.abs(float_model.forward(ids, mask) - theirs).max() > 2e-2 * np.abs(theirs).max()
    else:
        _compare(ref, model)


def test_lora_trains_the_merged_weight_through_the_quantizer(base_dir):
    """PEFT's LoRA on the reference, each adapted layer computing
    F.linear(x, FQ(W + s B A)); its merged weight is tinylm's to the bit (the
    same rounding of W + s B A, so no code flips between the two), and
    gradients reach A and B through the quantizer's straight-through pass."""
    scheme = "q4_k"
    ref = load_reference(base_dir)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear")
    torch.manual_seed(6)
    pm = peft.get_peft_model(ref, cfg)
    torch.manual_seed(7)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.05)
    model = tinylm.Model.from_pretrained(base_dir)
    model.add_lora(r=4, alpha=8, target_modules="all-linear")
    for n, p in pm.named_parameters():
        if "lora_" in n:
            model.param(n.removeprefix("base_model.model."))[...] = p.detach().numpy()
    model.set_fake_quant(scheme)

    def merged_forward(self, x, *args, **kwargs):
        a, b = self.lora_A["default"].weight, self.lora_B["default"].weight
        merged = self.base_layer.weight + self.scaling["default"] * (b @ a)
        exact = torch.from_numpy(model._merged_param(self._tinylm_name))  # the same value, tinylm's rounding
        merged = merged + (exact - merged).detach()
        return F.linear(x, _StraightThrough.apply(merged, scheme), self.base_layer.bias)

    for name, module in pm.named_modules():
        if isinstance(module, peft.tuners.lora.Linear):
            module._tinylm_name = name.removeprefix("base_model.model.") + ".weight"
            module.forward = types.MethodType(merged_forward, module)
    _compare(pm, model, lora_r=4)


def test_warm_up_switches_the_quantizers_off(base_dir):
    model = tinylm.Model.from_pretrained(base_dir)
    ids, mask, _ = batch(B=2, T=11)
    before = model.forward(ids, mask)
    model.set_fake_quant("q4_0")
    quantized = model.forward(ids, mask)
    assert np.abs(quantized - before).max() > 1e-3
    model.enable_fake_quant(False)
    np.testing.assert_array_equal(model.forward(ids, mask), before)
    model.enable_fake_quant(True)
    np.testing.assert_array_equal(model.forward(ids, mask), quantized)
    model.set_fake_quant(None)
    assert model.fake_quant == {}
    np.testing.assert_array_equal(model.forward(ids, mask), before)


@pytest.mark.parametrize("lora", [False, True])
def test_the_model_trained_is_the_model_shipped(tmp_path, lora):
    """set_fake_quant("Q4_K_M") gives each projection the type save_gguf
    (quant="Q4_K_M") writes it as (ffn_down and attn_v get Q6_K in some
    layers), and the tied embedding / head its Q6_K; the QAT model's logits
    equal the exported file's, loaded back by tinylm, to the bit. (The
    embedded demo model: its tokenizer exports, and its rows are whole K
    super-blocks.)"""
    model = tinylm.Model.from_pretrained(tinylm.DEMO_MODEL)
    if lora:
        model.add_lora(r=4, alpha=8, target_modules="all-linear", seed=1)
        rng = np.random.default_rng(2)
        for n in model.parameter_names():
            if ".lora_B." in n:
                model.param(n)[...] = rng.normal(0, 0.05, model.param(n).shape)
    model.set_fake_quant("Q4_K_M")
    assert set(model.fake_quant.values()) == {"q4_k", "q6_k"}
    assert model.fake_quant["model.embed_tokens.weight"] == "q6_k"
    path = tmp_path / "shipped.gguf"
    model.save_gguf(path, "Q4_K_M", merged=lora)
    shipped = tinylm.Model.from_pretrained(path)
    ids, mask, _ = batch(B=2, T=13)
    np.testing.assert_array_equal(model.forward(ids, mask), shipped.forward(ids, mask))


def test_refusals_name_the_cause(base_dir):
    model = tinylm.Model.from_pretrained(base_dir)
    with pytest.raises(tinylm.UnsupportedError, match="k_norm|not projections"):
        model.set_fake_quant("q4_0", target_modules=["k_norm"])
    model.add_lora(r=4, alpha=8, dropout=0.1, target_modules=["q_proj"])
    model.set_fake_quant("q8_0")
    ids, mask, labels = batch(B=1, T=5)
    with pytest.raises(tinylm.UnsupportedError, match="LoRA dropout"):
        model.loss(ids, labels, mask)
    nf4 = tinylm.Model.from_pretrained(base_dir, quant="nf4")
    with pytest.raises(tinylm.UnsupportedError, match="stored quantized"):
        nf4.set_fake_quant("q4_0")


def test_trainer_warm_up_and_self_distillation(tmp_path):
    """TrainConfig.qat: the first fake_quant_after_n_steps steps train the
    float model (the loss of step 1 is the float model's), the quantizers
    are on afterwards; self_distill distills from a frozen float copy (the
    KD term is logged and is 0 at step 1, where student and teacher are the
    same float model)."""
    from tinylm.data import load_dataset
    tok = tinylm.Tokenizer.from_pretrained(tinylm.DEMO_MODEL)
    rows = tmp_path / "train.jsonl"
    with open("datasets/smart_home/train.jsonl") as f:
        rows.write_text("".join(f.readlines()[:16]))
    train, _ = load_dataset(str(rows), tok, seq_len=48)
    model = tinylm.Model.from_pretrained(tinylm.DEMO_MODEL)
    model.add_lora(r=4, alpha=8, target_modules="all-linear")
    config = tinylm.TrainConfig(output_dir=str(tmp_path / "run"), max_steps=3, batch_size=4, learning_rate=1e-3,
                                save_steps=None, disable_tqdm=True, lr_scheduler_type="constant",
                                qat={"scheme": "Q4_0", "fake_quant_after_n_steps": 1, "self_distill": True},
                                distill={"kd_ratio": 1.0})
    trainer = tinylm.Trainer(model, tok, train, config)
    assert trainer.teacher is not None and trainer.teacher.trainable_names() == []
    trainer.fit()
    steps = [r for r in trainer.metrics.read() if "loss" in r]
    assert steps[0]["kd"] == pytest.approx(0.0, abs=1e-6)  # float student == float teacher
    assert steps[1]["kd"] > 1e-4                            # quantized student vs float teacher
    assert set(model.fake_quant.values()) == {"q4_0", "q6_k"}  # the tied embedding / head: Q6_K
    ids = [[1, 20, 30, 40]]
    on = model.forward(ids)
    model.enable_fake_quant(False)
    assert np.abs(model.forward(ids) - on).max() > 1e-4


def test_embedding_and_head_through_their_file_types(base_dir):
    """A file type fake-quantizes the token embedding and the head as the
    file stores them (Q4_0: the embedding Q4_0, the head Q6_K): logits and
    every gradient, theirs included, equal the straight-through reference."""
    model = tinylm.Model.from_pretrained(base_dir)
    model.set_fake_quant("Q4_0")
    schemes = model.fake_quant
    assert schemes["model.embed_tokens.weight"] == "q4_0" and schemes["lm_head.weight"] == "q6_k"
    ref = load_reference(base_dir)
    _fake_quantize_linears(ref, "q4_0")
    embed, head = ref.model.embed_tokens, ref.lm_head
    embed.forward = types.MethodType(
        lambda self, ids: F.embedding(ids, _StraightThrough.apply(self.weight, schemes["model.embed_tokens.weight"])),
        embed)
    head.forward = types.MethodType(
        lambda self, x: F.linear(x, _StraightThrough.apply(self.weight, schemes["lm_head.weight"])), head)
    grads = _compare(ref, model)
    clipped = tq.fake_quantize(model.weight("lm_head.weight"), "q6_k", return_clip=True)[1]
    assert (grads["lm_head.weight"][clipped] == 0).all()
