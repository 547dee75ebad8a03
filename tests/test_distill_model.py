"""Model.loss with a teacher (distillation) against PyTorch: transformers'
student and teacher, cross-entropy from transformers, the divergence from
trl's generalized_jsd_loss (GKD), loss and every student gradient by
autograd. The teacher is another family on the same vocabulary, run forward
only."""
import numpy as np
import pytest
import torch
from trl.experimental.gkd.gkd_trainer import GKDTrainer

import tinylm
from hf_models import batch, build, load_reference, save
from tinylm.distill.config import DistillConfig
from tolerance import approx, assert_close, decoder

STUDENT, TEACHER = "llama_gqa", "qwen3_qk_norm"
# TRL's beta for each loss: generalized_jsd_loss special-cases 0 (forward KL) and 1 (reverse KL)
BETA = {"forward_kl": 0.0, "reverse_kl": 1.0}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    student, teacher = tmp_path_factory.mktemp("student"), tmp_path_factory.mktemp("teacher")
    save(build(STUDENT, seed=1), student)
    save(build(TEACHER, seed=2), teacher)
    return student, teacher


def reference(student_dir, teacher_dir, ids, mask, labels, cfg):
    """(loss, {name: grad}) of (1 - kd_ratio) CE + kd_ratio [T^2] JSD_beta in PyTorch."""
    student, teacher = load_reference(student_dir), load_reference(teacher_dir)
    ids_t, mask_t, labels_t = (torch.from_numpy(a) for a in (ids, mask, labels))
    with torch.no_grad():
        t_logits = teacher(input_ids=ids_t, attention_mask=mask_t).logits
    out = student(input_ids=ids_t, attention_mask=mask_t, labels=labels_t)
    beta = BETA.get(cfg.loss, cfg.beta)
    kd = GKDTrainer.generalized_jsd_loss(out.logits[:, :-1], t_logits[:, :-1], labels=labels_t[:, 1:], beta=beta,
                                         temperature=cfg.temperature)
    if cfg.scale_by_t2:
        kd = kd * cfg.temperature ** 2
    loss = (1 - cfg.kd_ratio) * out.loss + cfg.kd_ratio * kd
    loss.backward()
    return loss.item(), out.loss.item(), kd.item(), {n: p.grad.numpy() for n, p in student.named_parameters()}


@pytest.mark.parametrize("cfg", [
    DistillConfig(loss="forward_kl", kd_ratio=0.5),
    DistillConfig(loss="reverse_kl", kd_ratio=0.7, temperature=2.0),
    DistillConfig(loss="jsd", beta=0.3, kd_ratio=1.0, temperature=1.5, scale_by_t2=True),
], ids=["forward_kl", "reverse_kl_T2", "jsd_t2"])
def test_online_teacher_loss_and_grads_equal_pytorch(pair, cfg):
    student_dir, teacher_dir = pair
    ids, mask, labels = batch(B=3, T=29)
    ref_loss, ref_ce, ref_kd, ref_grads = reference(student_dir, teacher_dir, ids, mask, labels, cfg)
    student = tinylm.Model.from_pretrained(student_dir)
    teacher = tinylm.Model.from_pretrained(teacher_dir)
    teacher.freeze()
    # both models' chains and the divergence's softmaxes over V
    chain = decoder(student.config, *ids.shape)
    t_chain = decoder(teacher.config, *ids.shape)
    length = chain.loss + t_chain.forward
    loss = student.loss(ids, labels, attention_mask=mask, teacher=teacher, distill=cfg)
    assert loss == approx(ref_loss, length=length)
    assert student.last_loss_terms["ce"] == approx(ref_ce, length=length)
    assert student.last_loss_terms["kd"] == approx(ref_kd, length=length)
    student.zero_grad()
    student.backward()
    grads = student.grads()
    assert set(grads) == set(ref_grads)
    for name, expected in ref_grads.items():
        assert_close(grads[name], expected, length=chain.backward + t_chain.forward, what=name)


def test_kd_ratio_zero_is_cross_entropy(pair):
    student_dir, teacher_dir = pair
    ids, mask, labels = batch(B=2, T=17)
    student = tinylm.Model.from_pretrained(student_dir)
    teacher = tinylm.Model.from_pretrained(teacher_dir)
    ce = student.loss(ids, labels, attention_mask=mask)
    student.zero_grad()
    student.backward()
    expected = student.grads()
    distilled = student.loss(ids, labels, attention_mask=mask, teacher=teacher, distill=DistillConfig(kd_ratio=0.0))
    assert distilled == approx(ce, length=decoder(student.config, 2, 17).loss)
    student.zero_grad()
    student.backward()
    for name, g in student.grads().items():
        assert_close(g, expected[name], length=decoder(student.config, 2, 17).backward, what=name)


def test_bad_teachers_are_refused(pair, tmp_path):
    student_dir, teacher_dir = pair
    ids, mask, labels = batch(B=1, T=9)
    student = tinylm.Model.from_pretrained(student_dir)
    with pytest.raises(ValueError, match="teacher is the student"):
        student.loss(ids, labels, teacher=student)
    small = tinylm.Model.from_config({**load_reference(teacher_dir).config.to_dict(), "vocab_size": 100})
    with pytest.raises(ValueError, match="teacher's vocabulary .100. is smaller than the student's .211."):
        student.loss(ids, labels, teacher=small)
    with pytest.raises(ValueError, match="kd_ratio"):
        DistillConfig(kd_ratio=1.5)


@pytest.mark.parametrize("tail", [True, False])
def test_top_k_online_offline_and_the_numpy_entry_point_agree(pair, tail):
    """The KD term over the teacher's top k: from the teacher model (the
    kernel picks the ids), from its stored top k (an offline cache's ids and
    log-probs, teacher_topk), and from tinylm.distill.kd_loss on the two
    models' logits, which tests/test_distill_losses.py checks against trl."""
    student_dir, teacher_dir = pair
    ids, mask, labels = batch(B=2, T=21)
    student = tinylm.Model.from_pretrained(student_dir)
    teacher = tinylm.Model.from_pretrained(teacher_dir)
    k, T = 8, 1.5
    cfg = DistillConfig(loss="forward_kl", kd_ratio=1.0, temperature=T, top_k=k, tail=tail)
    online = student.loss(ids, labels, attention_mask=mask, teacher=teacher, distill=cfg)
    t_logits = teacher.forward(ids, attention_mask=mask)
    top_ids, top_logp, _ = tinylm.distill.topk_logprobs(t_logits, k, temperature=T)
    offline = student.loss(ids, labels, attention_mask=mask, teacher_topk=(top_ids, top_logp, T), distill=cfg)
    s_logits = student.forward(ids, attention_mask=mask)
    expected, _ = tinylm.distill.kd_loss(s_logits[:, :-1], t_logits[:, :-1], labels=labels[:, 1:], top_k=k,
                                         tail=tail, temperature=T)
    length = decoder(student.config, *ids.shape).loss + decoder(teacher.config, *ids.shape).forward
    assert online == approx(expected, length=length)
    assert offline == approx(expected, length=length)
