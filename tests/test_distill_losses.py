"""tinylm.distill.kd_loss and the KD kernels under it (csrc/objectives):
loss and gradient w.r.t. the student logits against the real implementations.

- Whole vocabulary: TRL's GKDTrainer.generalized_jsd_loss itself (forward KL
  at beta 0, reverse KL at beta 1, JSD(beta) between), autograd through it.
- Top-k: TRL's server distillation, ServerDistillationTrainer.
  _compute_server_forward_kl_loss itself for the forward KL with and without
  the tail bucket (loss_add_tail), and for the reverse KL and JSD over the same
  buckets a line-for-line transcription of that method with beta left free,
  calling TRL's own _add_tail_bucket and _jsd_divergence.
- The re-tempered stored top-k: an autograd reference built the same way
  (re_tempered_reference), since TRL never re-tempers.
- Forward KL as torchtune's ForwardKLLoss defines it (torchtune is not
  installed): torchtune_forward_kl, an autograd transcription of it.

TRL's functions are its own code, compiled from its installed source files
(trl_functions): importing trl.experimental's trainer modules pulls in
transformers' Trainer, peft and bitsandbytes, 5 s of this file's 10 s budget.
References run in float64, within rounding of the exact values, so the
two-sided bound of tests/tolerance.py holds with room.

Tolerances: tests/tolerance.py, with the chain lengths of lengths() (each
stage says why) and the magnitudes of magnitudes(): exp turns an absolute
error of its argument into a relative one of its result, so log-probabilities
of logits as large as M (over T) are exact to L U M, and so are the
probabilities relative to themselves; the tests with logits of magnitude 1000
(teacher probabilities underflowing to 0) rely on that scale."""
import ast
import importlib.util
import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinylm import _core
from tinylm.distill import kd_loss, topk_logprobs
from tolerance import EXP, SOFTMAX_OPS, approx, assert_close


def trl_functions(relpath, names):
    """The functions `names` (module level, or "Class.method") of trl/<relpath>, compiled from trl's installed
    source into one namespace (decorators dropped: a staticmethod is called as the plain function here)."""
    path = Path(importlib.util.find_spec("trl").origin).parent / relpath
    tree = ast.parse(path.read_text(), str(path))
    defs = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            defs[node.name] = node
        elif isinstance(node, ast.ClassDef):
            defs.update({f"{node.name}.{f.name}": f for f in node.body if isinstance(f, ast.FunctionDef)})
    picked = [defs[name] for name in names]
    for node in picked:
        node.decorator_list = []
    namespace = {"torch": torch, "F": F, "Any": Any}
    exec(compile(ast.Module(body=picked, type_ignores=[]), str(path), "exec"), namespace)
    return SimpleNamespace(**{name.rpartition(".")[2]: namespace[name.rpartition(".")[2]] for name in names})


GKD = trl_functions("experimental/gkd/gkd_trainer.py", ["GKDTrainer.generalized_jsd_loss"])
SERVER = trl_functions("experimental/server_distillation/server_distillation_trainer.py",
                       ["_jsd_divergence", "_add_tail_bucket", "ServerDistillationTrainer._reduce_divergence_loss",
                        "ServerDistillationTrainer._compute_server_forward_kl_loss"])
BETA = {"forward_kl": 0.0, "reverse_kl": 1.0}  # TRL's beta for each KL
LOSS_CASES = [("forward_kl", 0.0), ("reverse_kl", 1.0), ("jsd", 0.1), ("jsd", 0.5), ("jsd", 0.9)]


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def f64(a):
    return torch.tensor(np.asarray(a, np.float64))


def batch(seed, B=3, T=5, V=211, scale=2.0, masked=0.3):
    """Student and teacher logits [B, T, V] and labels [B, T] with a fraction `masked` of -100 (row 0 kept)."""
    rng = np.random.default_rng(seed)
    s, t = f32(rng.standard_normal((B, T, V)) * scale), f32(rng.standard_normal((B, T, V)) * scale)
    labels = np.where(rng.random((B, T)) < masked, -100, rng.integers(0, V, (B, T)))
    labels[0, 0] = 1
    return s, t, labels


# ------------------------------------------------------------ tolerances

def lengths(V, n, k=None, jsd=False, retempered=False):
    """(loss, grad) chain lengths for V vocab, n rows kept, k kept ids (None: the whole vocabulary).

    Log-softmax of each side (in parallel, counted once): the division by T, the max-shifted sum of exps
    over V, the subtraction: 1 + V + SOFTMAX_OPS. A term of the divergence: the log difference, the exp of a
    log-probability and the product (2 + EXP); JSD first forms the mixture's log (two sums, an exp and a
    log1p: 2 + 2 EXP), then two such terms and their weighted sum (+ 3). The loss sums the terms over the
    vocabulary (V; the buckets are fewer) and takes the mean over the n rows (n + 1). Top-k adds the kept
    sum and the tail's 1 - it, or the renormalisation over k (k + SOFTMAX_OPS + EXP + 1 covers either);
    re-tempering a stored top-k the product by T0 / T and a renormalisation over the k + 1 buckets. The
    gradient of a row: the log-softmax, the student's probability (EXP), the term's slope (as the term),
    C = its sum over V, then q C, the difference and the scale (3)."""
    softmax = 1 + V + SOFTMAX_OPS
    term = 2 + EXP + ((2 + 2 * EXP) + (2 + EXP) + 3 if jsd else 0)
    topk = 0 if k is None else k + SOFTMAX_OPS + EXP + 1
    if retempered:
        topk += 1 + (k + 1) + SOFTMAX_OPS
    loss = softmax + topk + term + V + n + 1
    grad = softmax + topk + EXP + term + V + 3
    return loss, grad


def magnitudes(s, t, labels, T, terms, grad_ref):
    """(loss scale, per-row gradient scale [..., 1]) from the logits and the reference's values.

    M_r = 1 + max|s_r| / T + max|t_r| / T bounds a log-probability of row r, so it is the factor exp puts
    on relative errors. A row's loss is exact to L U M_r (1 + sum_j |term_j|) (terms: the reference's
    elementwise divergence), the mean to the mean of those over the kept rows; a gradient entry is a
    probability times slopes, exact to L U M_r times the row's largest gradient, or its largest student
    probability (times the 1 / (n T) in front) where the gradient itself cancels to near zero."""
    keep = (labels != -100) if labels is not None else np.ones(s.shape[:-1], bool)
    n = max(int(keep.sum()), 1)
    M = 1 + np.abs(s).max(-1) / T + np.abs(t).max(-1) / T
    loss_scale = float((M * (1 + np.abs(terms).sum(-1)))[keep].sum() / n)
    q = torch.softmax(f64(s) / T, -1).numpy().max(-1)
    grad_scale = M * np.maximum(np.abs(grad_ref).max(-1), q / (n * T))
    return loss_scale, grad_scale[..., None]


def check(ours, ref_loss, ref_grad, s, t, labels, T, terms, loss_length, grad_length):
    loss, grad = ours
    loss_scale, grad_scale = magnitudes(s, t, labels, T, terms, ref_grad)
    assert loss == approx(ref_loss, length=loss_length, scale=loss_scale)
    assert_close(grad, ref_grad, length=grad_length, scale=grad_scale, what="grad")
    if labels is not None:
        assert not grad[labels == -100].any()  # rows left out get exactly 0


# ------------------------------------------------------------ references

def trl_whole_vocabulary(s, t, labels, beta, T):
    """generalized_jsd_loss's loss, its gradient w.r.t. s (autograd), and its elementwise terms."""
    s_t = f64(s).requires_grad_()
    loss = GKD.generalized_jsd_loss(s_t, f64(t), labels=None if labels is None else torch.tensor(labels),
                                    beta=beta, temperature=T)
    loss.backward()
    terms = GKD.generalized_jsd_loss(f64(s), f64(t), beta=beta, temperature=T, reduction="none")
    return loss.item(), s_t.grad.numpy(), terms.numpy()


def torch_topk(t, k, T):
    """The teacher's top k as TRL's server sends them: log-softmax of t / T, sorted, and their ids."""
    logp, ids = torch.log_softmax(f64(t) / T, -1).topk(k, dim=-1)
    return logp, ids


def server_buckets(student_log_probs, topk_logprobs, ids, beta, tail):
    """_compute_server_forward_kl_loss's body up to the divergence, beta left free: the elementwise divergence
    over the buckets (TRL's own _add_tail_bucket and _jsd_divergence)."""
    valid = topk_logprobs > float("-inf")
    neg_inf = torch.full((), float("-inf"), dtype=student_log_probs.dtype)
    student_topk = torch.where(valid, student_log_probs.gather(dim=-1, index=ids), neg_inf)
    teacher_topk = torch.where(valid, topk_logprobs, neg_inf)
    if tail:
        student_sparse, support = SERVER._add_tail_bucket(student_topk, valid)
        teacher_sparse, _ = SERVER._add_tail_bucket(teacher_topk, valid)
    else:
        support = valid
        student_sparse = student_topk - torch.logsumexp(student_topk, dim=-1, keepdim=True)
        teacher_sparse = teacher_topk - torch.logsumexp(teacher_topk, dim=-1, keepdim=True)
    return SERVER._jsd_divergence(student_sparse, teacher_sparse, beta=beta, support_mask=support)


def trl_server(s, topk_logprobs, ids, labels, beta, T, tail):
    """TRL's server top-k loss (the method itself for the forward KL), its gradient and elementwise terms."""
    s_t = f64(s).requires_grad_()
    student_log_probs = F.log_softmax(s_t / T, dim=-1)  # as ServerDistillationTrainer.compute_loss
    labels_t = torch.tensor(labels)
    if beta == 0.0:
        trainer = SimpleNamespace(loss_add_tail=tail, _reduce_divergence_loss=SERVER._reduce_divergence_loss)
        loss = SERVER._compute_server_forward_kl_loss(
            trainer, {"topk_logprobs": topk_logprobs, "topk_token_ids": ids}, student_log_probs, labels_t)
    else:
        jsd = server_buckets(student_log_probs, topk_logprobs, ids, beta, tail)
        loss = SERVER._reduce_divergence_loss(jsd, completion_mask=labels_t != -100)
    loss.backward()
    terms = server_buckets(F.log_softmax(f64(s) / T, -1), topk_logprobs, ids, beta, tail)
    return loss.item(), s_t.grad.numpy(), terms.detach().numpy()


def re_tempered_reference(s, ids, logp, T0, T, labels, beta, tail):
    """A stored top-k taken at T0 used at T: the teacher's buckets as TRL builds them from the stored
    log-probs (the tail by _add_tail_bucket), each raised to T0 / T and renormalised over the buckets; the
    student's as TRL's server path; TRL's _jsd_divergence between them. Loss, gradient, terms."""
    s_t = f64(s).requires_grad_()
    logp, ids = f64(logp), torch.tensor(ids, dtype=torch.long)
    valid = logp > float("-inf")

    def divergence(student_log_probs):
        student_topk = student_log_probs.gather(-1, ids)
        if tail:
            student_b, support = SERVER._add_tail_bucket(student_topk, valid)
            teacher_b, _ = SERVER._add_tail_bucket(logp, valid)
        else:
            support = valid
            student_b = student_topk - torch.logsumexp(student_topk, -1, keepdim=True)
            teacher_b = logp
        teacher_b = torch.log_softmax(teacher_b * (T0 / T), -1)
        return SERVER._jsd_divergence(student_b, teacher_b, beta=beta, support_mask=support)

    loss = SERVER._reduce_divergence_loss(divergence(F.log_softmax(s_t / T, -1)),
                                          completion_mask=torch.tensor(labels) != -100)
    loss.backward()
    return loss.item(), s_t.grad.numpy(), divergence(F.log_softmax(f64(s) / T, -1)).detach().numpy()


def torchtune_forward_kl(student_logits, teacher_logits, labels, ignore_index=-100):
    """torchtune.modules.loss.ForwardKLLoss.forward, transcribed (torchtune is not installed):
    -sum_v p_t log q_s per token (student logits that are +-inf contribute 0), averaged over the tokens whose
    label is not ignore_index; 0 when there are none."""
    teacher_prob = F.softmax(teacher_logits, dim=-1, dtype=torch.float64)
    inf_mask = torch.isinf(student_logits)
    student_logprob = F.log_softmax(student_logits, dim=-1, dtype=torch.float64)
    prod_probs = torch.masked_fill(teacher_prob * student_logprob, inf_mask, 0)
    x = torch.sum(prod_probs, dim=-1).view(-1)
    mask = (labels != ignore_index).int()
    if torch.sum(mask.view(-1), dim=0) == 0:
        return torch.tensor(0.0)
    return -torch.sum(x * mask.view(-1), dim=0) / torch.sum(mask.view(-1), dim=0)


# ------------------------------------------------------------ whole vocabulary

@pytest.mark.parametrize("scale", [2.0, 1000.0], ids=["normal", "extreme"])
@pytest.mark.parametrize("T", [1.0, 2.5])
@pytest.mark.parametrize("loss,beta", LOSS_CASES)
def test_whole_vocabulary_matches_trl(loss, beta, T, scale):
    """generalized_jsd_loss with labels (rows of -100 left out, batchmean over the rest), odd V; logits of
    magnitude 1000 put most teacher (and student) probabilities at 0, even in float64."""
    s, t, labels = batch(1, scale=scale)
    ref = trl_whole_vocabulary(s, t, labels, beta, T)
    ours = kd_loss(s, t, labels=labels, loss=loss, beta=beta, temperature=T)
    check(ours, *ref[:2], s, t, labels, T, ref[2], *lengths(211, int((labels != -100).sum()), jsd=loss == "jsd"))


def test_large_vocabulary_matches_trl():
    """A real vocabulary's width (32771, prime): the sums over V vectorised in many blocks."""
    s, t, labels = batch(2, B=2, T=3, V=32771)
    ref = trl_whole_vocabulary(s, t, labels, 0.5, 1.5)
    ours = kd_loss(s, t, labels=labels, loss="jsd", beta=0.5, temperature=1.5)
    check(ours, *ref[:2], s, t, labels, 1.5, ref[2], *lengths(32771, int((labels != -100).sum()), jsd=True))


def test_jsd_at_beta_0_and_1_is_trl_kl():
    """TRL special-cases beta 0 and 1 as the forward and reverse KL (its JSD formula would give 0 there)."""
    s, t, labels = batch(3)
    for name, beta in BETA.items():
        jsd = kd_loss(s, t, labels=labels, loss="jsd", beta=beta)
        kl = kd_loss(s, t, labels=labels, loss=name)
        assert jsd[0] == kl[0] and np.array_equal(jsd[1], kl[1])


def test_forward_kl_is_torchtune_up_to_the_teacher_entropy():
    """torchtune's ForwardKLLoss is the cross-entropy -sum p log q: the forward KL plus the teacher's entropy,
    which does not depend on the student. Same gradient; losses differ by the mean entropy over kept rows."""
    s, t, labels = batch(4)
    s_t = f64(s).requires_grad_()
    ref = torchtune_forward_kl(s_t, f64(t), torch.tensor(labels))
    ref.backward()
    logp = torch.log_softmax(f64(t), -1)
    entropy = -(logp.exp() * logp).sum(-1).numpy()[labels != -100].mean()
    loss, grad = kd_loss(s, t, labels=labels)
    _, _, terms = trl_whole_vocabulary(s, t, labels, 0.0, 1.0)
    check((loss + entropy, grad), ref.item(), s_t.grad.numpy(), s, t, labels, 1.0, terms,
          *lengths(211, int((labels != -100).sum())))


# ------------------------------------------------------------ top-k

@pytest.mark.parametrize("tail", [True, False], ids=["tail", "renormalised"])
@pytest.mark.parametrize("k", [1, 7, 210])
@pytest.mark.parametrize("loss,beta", [("forward_kl", 0.0), ("reverse_kl", 1.0), ("jsd", 0.5)])
def test_topk_matches_trl_server(loss, beta, k, tail):
    """TRL's server top-k buckets (k = 1, 7, V - 1), the teacher given as logits with top_k and as the stored
    top-k of topk_logprobs at the same temperature, with and without its tail_logprobs."""
    T = 1.5
    s, t, labels = batch(5)
    topk_lp, ids = torch_topk(t, k, T)
    ref = trl_server(s, topk_lp, ids, labels, beta, T, tail)
    n = int((labels != -100).sum())
    length = lengths(211, n, k=k, jsd=loss == "jsd")
    common = dict(labels=labels, loss=loss, beta=beta, temperature=T, tail=tail)
    check(kd_loss(s, t, top_k=k, **common), *ref[:2], s, t, labels, T, ref[2], *length)
    stored = topk_logprobs(t, k, T)
    for teacher in (stored, stored[:2]):
        check(kd_loss(s, teacher_topk=teacher, teacher_temperature=T, **common), *ref[:2], s, t, labels, T, ref[2],
              *length)


def test_topk_tail_floor():
    """k = V - 1 with the left-out id nearly impossible on both sides, and k = V: both tails fall below
    TRL's floor (its clamp at log sum = -1e-7), which then passes no gradient to the student."""
    s, t, labels = batch(6)
    s[..., 7], t[..., 7] = -60.0, -60.0
    for k in (210, 211):
        topk_lp, ids = torch_topk(t, k, 1.0)
        ref = trl_server(s, topk_lp, ids, labels, 0.0, 1.0, True)
        check(kd_loss(s, t, labels=labels, top_k=k), *ref[:2], s, t, labels, 1.0, ref[2], *lengths(211, 20, k=k))


@pytest.mark.parametrize("tail", [True, False], ids=["tail", "renormalised"])
@pytest.mark.parametrize("T", [0.5, 2.0])
def test_re_tempered_topk(T, tail):
    """A top-k stored at T0 = 1 used at T: the teacher's buckets raised to T0 / T and renormalised."""
    s, t, labels = batch(7)
    ids, logp, _ = topk_logprobs(t, 9, 1.0)
    ref = re_tempered_reference(s, ids, logp, 1.0, T, labels, 0.5, tail)
    ours = kd_loss(s, teacher_topk=(ids, logp), teacher_temperature=1.0, labels=labels, loss="jsd", temperature=T,
                   tail=tail)
    check(ours, *ref[:2], s, t, labels, T, ref[2],
          *lengths(211, int((labels != -100).sum()), k=9, jsd=True, retempered=True))


def test_topk_logprobs_match_torch():
    """ids as torch.topk's (no ties in these rows; ties go to the lower id), log-probs as log_softmax's, the
    tail as the log of the rest of the mass; -inf when nothing is left out."""
    _, t, _ = batch(8)
    ref_lp, ref_ids = torch_topk(t, 5, 0.7)
    ids, logp, tail = topk_logprobs(t, 5, 0.7)
    assert np.array_equal(ids, ref_ids.numpy())
    scale = 1 + np.abs(t).max() / 0.7
    assert_close(logp, ref_lp.numpy(), length=1 + 211 + SOFTMAX_OPS, scale=scale, what="logprobs")
    ref_tail = torch.log1p(-ref_lp.exp().sum(-1)).numpy()
    assert_close(tail, ref_tail, length=1 + 211 + SOFTMAX_OPS + EXP, scale=scale, what="tail_logprobs")
    assert np.all(topk_logprobs(t, 211)[2] == -np.inf)
    assert topk_logprobs(np.array([1, 3, 3, 0, 3], np.float32), 2)[0].tolist() == [1, 2]


# ------------------------------------------------------------ edge cases

def test_teacher_zero_probabilities():
    """Teacher logits of -inf: 0 log 0 = 0, as torch's kl_div on probabilities (forward KL) and TRL's
    support-masked _jsd_divergence (JSD) take it. (TRL's generalized_jsd_loss gives NaN there: kl_div with
    log_target computes exp(-inf) * (-inf - x).)"""
    s, t, labels = batch(9, masked=0.0)
    t[..., ::3] = -np.inf
    n = labels.size
    s_t = f64(s).requires_grad_()
    p = torch.softmax(f64(t), -1)
    ref = F.kl_div(torch.log_softmax(s_t, -1), p, reduction="sum") / n
    ref.backward()
    terms = F.kl_div(torch.log_softmax(f64(s), -1), p, reduction="none").numpy()
    check(kd_loss(s, t, labels=labels), ref.item(), s_t.grad.numpy(), s, np.where(np.isinf(t), 0, t), labels, 1.0,
          terms, *lengths(211, n))
    s_t = f64(s).requires_grad_()
    support = torch.ones(s.shape, dtype=torch.bool)
    jsd = SERVER._jsd_divergence(torch.log_softmax(s_t, -1), torch.log_softmax(f64(t), -1), 0.5, support)
    (jsd.sum() / n).backward()
    check(kd_loss(s, t, labels=labels, loss="jsd"), jsd.sum().item() / n, s_t.grad.numpy(), s,
          np.where(np.isinf(t), 0, t), labels, 1.0, jsd.detach().numpy(), *lengths(211, n, jsd=True))


@pytest.mark.parametrize("side", ["student", "teacher"])
def test_nan_propagates_from_kept_rows_only(side):
    """A NaN logit makes the loss NaN (TRL's top-k path would zero it with nan_to_num; we do not hide it),
    unless its row is left out: then nothing of it is read."""
    s, t, labels = batch(10)
    masked_row = tuple(np.argwhere(labels == -100)[0])
    variants = [dict(), dict(top_k=5), dict(top_k=5, tail=False)]
    clean = [kd_loss(s, t, labels=labels, loss="jsd", **kw)[0] for kw in variants]
    for row, expect_nan in ((masked_row, False), ((0, 0), True)):
        bad_s, bad_t = s.copy(), t.copy()
        (bad_s if side == "student" else bad_t)[row + (17,)] = np.nan
        for kw, loss in zip(variants, clean):
            got = kd_loss(bad_s, bad_t, labels=labels, loss="jsd", **kw)[0]
            assert math.isnan(got) if expect_nan else got == loss
        if side == "student":
            got = kd_loss(bad_s, teacher_topk=topk_logprobs(t, 5), labels=labels)[0]
            assert math.isnan(got) == expect_nan


def test_all_rows_masked_is_zero():
    """Every label -100: loss 0 and a zero gradient, as TRL's batchmean clamps its denominator to 1."""
    s, t, labels = batch(11)
    labels[:] = -100
    ref = GKD.generalized_jsd_loss(f64(s), f64(t), labels=torch.tensor(labels), beta=0.5)
    for kw in (dict(), dict(top_k=3), dict(teacher_topk=topk_logprobs(t, 3), teacher_logits=None)):
        loss, grad = kd_loss(s, kw.pop("teacher_logits", t), labels=labels, loss="jsd", **kw)
        assert loss == ref.item() == 0.0 and not grad.any()


def test_no_labels_averages_every_row():
    """Without labels every row counts: the mean over all B*T rows. (TRL's batchmean without labels divides by
    size(0), the batch B of [B, T, V] logits; over [N, V] rows the two agree.)"""
    s, t, _ = batch(12)
    loss, grad = kd_loss(s, t, loss="reverse_kl")
    rows = s.reshape(-1, 211), t.reshape(-1, 211)
    ref = trl_whole_vocabulary(*rows, None, 1.0, 1.0)
    check((loss, grad.reshape(-1, 211)), *ref[:2], *rows, None, 1.0, ref[2], *lengths(211, 15))
    assert kd_loss(s, t, labels=np.zeros((3, 5), np.int64), loss="reverse_kl")[0] == loss


def test_scale_by_t2():
    s, t, labels = batch(13)
    plain = kd_loss(s, t, labels=labels, temperature=2.0)
    scaled = kd_loss(s, t, labels=labels, temperature=2.0, scale_by_t2=True)
    assert scaled[0] == approx(4 * plain[0], length=1)
    assert_close(scaled[1], 4 * plain[1], length=1, what="grad")


# ------------------------------------------------------------ kernel properties

def test_thread_count_independence():
    """Each row is one thread's, so gradients are bitwise the same for 1 and 2 threads; the loss's sum over rows
    is split by thread and differs by its rounding only (length: the rows). Same thread count: same bits."""
    s, t, labels = batch(14, B=4, T=4, V=32771)
    cases = [dict(loss="jsd"), dict(top_k=50), dict(teacher_topk=topk_logprobs(t, 50, 1.0))]

    def run(threads):
        _core.set_num_threads(threads)
        return [kd_loss(s, None if "teacher_topk" in kw else t, labels=labels, **kw) for kw in cases]

    one, two, again = run(1), run(2), run(2)
    for (l1, g1), (l2, g2), (l3, g3) in zip(one, two, again):
        assert np.array_equal(g1, g2) and np.array_equal(g2, g3) and l2 == l3
        assert l2 == approx(l1, length=16)


def test_kernels_never_allocate():
    """A code-review property, kept by a scan: csrc/objectives takes scratch from its caller and calls no
    allocator (the training step loop allocates nothing)."""
    root = Path(__file__).resolve().parents[1] / "csrc" / "objectives"
    for path in sorted(root.glob("*.[ch]")):
        code = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)
        assert not re.search(r"\b(malloc|calloc|realloc|free|tlm_alloc|tlm_free|aligned_alloc)\s*\(", code), path


def test_argument_errors_name_the_argument():
    s, t, labels = batch(15)
    ids, logp, tail = topk_logprobs(t, 4)
    bad = [
        (dict(loss="kl"), ValueError, "loss must be one of"),
        (dict(beta=1.5, loss="jsd"), ValueError, r"beta must be in \[0, 1\]"),
        (dict(temperature=0.0), ValueError, "temperature must be"),
        (dict(temperature=-1.0), ValueError, "temperature must be"),
        (dict(top_k=212), ValueError, "top_k must be in"),
        (dict(top_k=0), ValueError, "top_k must be None or >= 1"),
        (dict(teacher_logits=t[:, :4]), ValueError, r"teacher_logits has shape \[3, 4, 211\]"),
        (dict(labels=labels[:, :4]), ValueError, "labels has shape"),
        (dict(labels=labels.astype(np.float32)), TypeError, "labels must be integers"),
        (dict(teacher_logits=None), ValueError, "exactly one of teacher_logits and teacher_topk"),
        (dict(teacher_logits=None, teacher_topk=(np.where(ids == ids[0, 0, 0], 211, ids), logp)), ValueError,
         r"teacher_topk ids must be in \[0, V\)"),
        (dict(teacher_logits=None, teacher_topk=(ids, logp[..., :3])), ValueError, "teacher_topk logprobs has shape"),
        (dict(teacher_logits=None, teacher_topk=(ids, logp, tail[:2])), ValueError,
         "teacher_topk tail_logprobs has shape"),
        (dict(teacher_logits=None, teacher_topk=(ids, logp), teacher_temperature=0.0), ValueError,
         "teacher_temperature must be"),
        (dict(teacher_logits=None, teacher_topk=(ids, logp), top_k=4), ValueError, "None with teacher_topk"),
    ]
    for kw, error, message in bad:
        teacher = kw.pop("teacher_logits", t)
        with pytest.raises(error, match=message):
            kd_loss(s, teacher, **{"labels": labels, **kw})
    wide = topk_logprobs(np.zeros((2, 300), np.float32), 212)
    with pytest.raises(ValueError, match="teacher_topk must hold 1 to V"):
        kd_loss(np.zeros((2, 211), np.float32), teacher_topk=(wide[0] % 211, wide[1]))
    with pytest.raises(ValueError, match=r"k must be in \[1, V\]"):
        topk_logprobs(t, 212)
