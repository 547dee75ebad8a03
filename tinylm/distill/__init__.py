"""Knowledge-distillation losses on logits, numpy in and out, over the C
kernels of csrc/objectives (objectives.h): TRL's generalized JSD family
(forward KL, reverse KL, JSD(beta)) over the whole vocabulary or over the
teacher's top k, with or without a tail bucket. docs/distillation.md has the
formulas and conventions."""
from __future__ import annotations

import numpy as np

from tinylm import _core

__all__ = ["kd_loss", "topk_logprobs", "DistillConfig", "TeacherCache", "build_teacher_cache", "CacheMismatchError",
           "check_shared_tokenizer", "LOSSES", "IGNORE_INDEX"]

LOSSES = {"forward_kl": _core.KD_FORWARD_KL, "reverse_kl": _core.KD_REVERSE_KL, "jsd": _core.KD_JSD}
IGNORE_INDEX = -100  # a label that leaves its row out, as in transformers and TRL


def _lead_shape(name, a, lead, last=None):
    want = tuple(lead) + ((last,) if last is not None else ())
    if a.shape != want:
        raise ValueError(f"{name} has shape {list(a.shape)}, expected {list(want)} (from student_logits)")


def _teacher_topk(teacher_topk, lead, V):
    """(ids, logprobs) or (ids, logprobs, tail_logprobs) as [N, k] int32, [N, k] and [N] (or None) float32."""
    if not isinstance(teacher_topk, (tuple, list)) or len(teacher_topk) not in (2, 3):
        raise ValueError("teacher_topk must be (ids, logprobs) or (ids, logprobs, tail_logprobs)")
    ids, logp = np.asarray(teacher_topk[0]), np.asarray(teacher_topk[1])
    if ids.ndim != len(lead) + 1:
        raise ValueError(f"teacher_topk ids have shape {list(ids.shape)}, expected {list(lead)} + [k]")
    k = ids.shape[-1]
    _lead_shape("teacher_topk ids", ids, lead, k)
    _lead_shape("teacher_topk logprobs", logp, lead, k)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"teacher_topk ids must be integers, got {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= V):  # before the int32 cast, which would wrap
        raise ValueError(f"teacher_topk ids must be in [0, V) (V={V}), got {ids.min()}..{ids.max()}")
    tail = None
    if len(teacher_topk) == 3:
        tail = np.asarray(teacher_topk[2])
        _lead_shape("teacher_topk tail_logprobs", tail, lead)
        tail = np.ascontiguousarray(tail.reshape(-1), dtype=np.float32)
    return (np.ascontiguousarray(ids.reshape(-1, k), dtype=np.int32),
            np.ascontiguousarray(logp.reshape(-1, k), dtype=np.float32), tail, k)


def kd_loss(student_logits, teacher_logits=None, *, labels=None, loss="forward_kl", beta=0.5, temperature=1.0,
            top_k=None, tail=True, teacher_topk=None, teacher_temperature=1.0, scale_by_t2=False):
    """The distillation loss of student logits [..., V] against a teacher and
    its gradient w.r.t. the student logits: (loss: float, grad: float32
    array shaped like student_logits).

    The teacher is teacher_logits [..., V] (the same shape), or teacher_topk,
    its top k as an offline cache stores them: (ids [..., k], logprobs
    [..., k]) or (ids, logprobs, tail_logprobs [...]), log-softmax values at
    teacher_temperature (topk_logprobs() makes them). Rows are aligned as
    given (no shift); rows whose label is -100 are left out and the loss is
    the mean over the rows kept of each row's divergence summed over the
    vocabulary (TRL's "batchmean" with labels); with every row left out it is
    0 with a zero gradient, as TRL's clamped denominator gives.

    loss: "forward_kl" KL(teacher || student), "reverse_kl" KL(student ||
    teacher), or "jsd", TRL's generalized JSD with beta the teacher's weight
    in the mixture (beta 0 and 1 are the forward and reverse KL, as in TRL;
    beta is read by "jsd" only). temperature divides both sides' logits
    before the softmax; scale_by_t2 multiplies loss and gradient by T^2
    (Hinton's convention; TRL has none). top_k: the divergence over the
    teacher's top_k ids, with a tail bucket of the remaining mass on both
    sides (tail=True, TRL's loss_add_tail) or renormalised over them.
    teacher_topk is always over its k ids; a teacher_temperature other than
    temperature re-tempers it (docs/distillation.md)."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got {loss!r}")
    if (teacher_logits is None) == (teacher_topk is None):
        raise ValueError("give the teacher as exactly one of teacher_logits and teacher_topk")
    if top_k is not None and (teacher_topk is not None or top_k < 1):
        raise ValueError(f"top_k must be None or >= 1, and None with teacher_topk (its k is given), got {top_k}")
    s = np.asarray(student_logits)
    if s.ndim < 1 or s.shape[-1] == 0:
        raise ValueError(f"student_logits must be [..., V] with V > 0, got shape {list(s.shape)}")
    lead, V = s.shape[:-1], s.shape[-1]
    rows = slice(None)
    if labels is not None:
        labels = np.asarray(labels)
        _lead_shape("labels", labels, lead)
        if labels.dtype.kind not in "iu":
            raise TypeError(f"labels must be integers, got {labels.dtype}")
        rows = np.flatnonzero(labels.reshape(-1) != IGNORE_INDEX)
    # A copy of the kept rows: the kernels write the gradient over it in place.
    s_kept = np.array(s.reshape(-1, V)[rows], dtype=np.float32, order="C")
    n = s_kept.shape[0]
    factor = float(temperature) ** 2 if scale_by_t2 else 1.0
    grad_scale = factor / max(n, 1)
    desc = (LOSSES[loss], float(beta), float(temperature), top_k or 0, bool(tail))
    if teacher_logits is not None:
        t = np.asarray(teacher_logits)
        _lead_shape("teacher_logits", t, lead, V)
        t_kept = np.ascontiguousarray(t.reshape(-1, V)[rows], dtype=np.float32)
        total = _core.kd_rows(desc, s_kept, t_kept, n, V, s_kept, grad_scale)
    else:
        ids, logp, tail_logp, k = _teacher_topk(teacher_topk, lead, V)
        tail_kept = None if tail_logp is None else np.ascontiguousarray(tail_logp[rows])
        total = _core.kd_topk_rows(desc, s_kept, np.ascontiguousarray(ids[rows]), np.ascontiguousarray(logp[rows]),
                                   tail_kept, float(teacher_temperature), n, V, k, s_kept, grad_scale)
    grad = np.zeros(s.shape, np.float32)
    grad.reshape(-1, V)[rows] = s_kept
    return total * factor / max(n, 1), grad


def topk_logprobs(teacher_logits, k, temperature=1.0):
    """A teacher's top k per row, as an offline cache stores them:
    (ids int32 [..., k] most likely first (ties: the lower id), logprobs
    float32 [..., k] their log-softmax of logits / temperature over the
    whole vocabulary, tail_logprobs float32 [...] the log of the mass outside
    them, summed directly rather than as 1 - the kept mass)."""
    t = np.ascontiguousarray(teacher_logits, dtype=np.float32)
    if t.ndim < 1 or t.shape[-1] == 0:
        raise ValueError(f"teacher_logits must be [..., V] with V > 0, got shape {list(t.shape)}")
    lead, V = t.shape[:-1], t.shape[-1]
    N = int(np.prod(lead, dtype=np.int64))
    ids, logp, tail = (np.empty(lead + (k,), np.int32), np.empty(lead + (k,), np.float32),
                       np.empty(lead, np.float32))
    _core.kd_topk(t, N, V, int(k), float(temperature), ids, logp, tail)
    return ids, logp, tail


def check_shared_tokenizer(student_tok, teacher_tok) -> None:
    """Distillation compares next-token distributions id by id: the two
    tokenizers must map every id to the same token. A ValueError names both
    and the first id where they differ."""
    names = f"the student's tokenizer {student_tok!r} and the teacher's {teacher_tok!r}"
    if len(student_tok) != len(teacher_tok):
        raise ValueError(f"{names} differ: {len(student_tok)} ids against {len(teacher_tok)}")
    for i in range(len(student_tok)):
        if student_tok.id_to_token(i) != teacher_tok.id_to_token(i):
            raise ValueError(f"{names} differ at id {i}: {student_tok.id_to_token(i)!r} against "
                             f"{teacher_tok.id_to_token(i)!r}")


from tinylm.distill.config import DistillConfig  # noqa: E402 (it reads LOSSES above)
from tinylm.distill.cache import CacheMismatchError, TeacherCache, build_teacher_cache  # noqa: E402
