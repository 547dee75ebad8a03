/* objectives.h: head objectives over rows of logits. This part: knowledge
 * distillation (KD), the divergence of a student's next-token distribution
 * from a teacher's, row by row, on a chunk of logit rows the caller already
 * holds in a buffer (as tlm_lmhead_ce's inner loop holds its chunk): the
 * [N, V] logits of a whole batch are never needed at once.
 *
 * Letters: N rows (the caller's chunk), V vocab, k ids kept per row.
 * Conventions (TRL's generalized_jsd_loss): both sides' logits are divided
 * by the temperature T before the softmax; q = softmax(s / T) is the
 * student's distribution, p = softmax(t / T) the teacher's, and
 *   TLM_KD_FORWARD_KL  KL(p || q) = sum p (log p - log q)
 *   TLM_KD_REVERSE_KL  KL(q || p)
 *   TLM_KD_JSD         beta KL(p || m) + (1 - beta) KL(q || m),  m = beta p + (1 - beta) q;
 *                      beta 0 is the forward KL and beta 1 the reverse KL, as TRL
 *                      special-cases them (the formula itself would give 0 there)
 * with 0 log 0 = 0 (a teacher probability of 0 adds nothing, as torch's
 * kl_div on probabilities). No T^2 factor: the caller scales if it wants one.
 *
 * Top-k (TRL's server distillation): the divergence is taken over buckets,
 * the teacher's k most likely ids and, with `tail`, a (k+1)-th bucket holding
 * each side's remaining mass, 1 - sum of its kept probabilities, floored at
 * TLM_KD_TAIL_MIN as TRL clamps it (a floored student tail passes no
 * gradient); without `tail` both sides are renormalised over the kept ids.
 * The student's probabilities are its softmax over the whole vocabulary.
 *
 * Every kernel returns the SUM over rows of each row's divergence (the
 * caller divides by its token count) and, when ds is not NULL, writes
 * ds[r] = grad_scale * d(row r's divergence) / ds[r] for every row, zeros
 * included; ds may be s itself (the gradient overwrites the logits, as
 * tlm_lmhead_ce turns its chunk into dlogits). A NaN in a row's logits makes
 * the loss NaN. OpenMP over rows; each row is one thread's, so gradients do
 * not depend on the thread count at all and the loss only by the rounding of
 * its sum over rows (per-thread partials added in thread order).
 *
 * No kernel allocates: scratch is the caller's, nthreads *
 * tlm_kd_scratch_floats(k) floats, nthreads = tlm_get_num_threads(). Arguments
 * are not checked here (the caller validates once): T > 0, beta in [0, 1],
 * 0 <= top_k <= V, stored ids in [0, V) and distinct within a row.
 */
#ifndef TLM_OBJECTIVES_H
#define TLM_OBJECTIVES_H

#include <stdint.h>

#include "tlm.h" /* tlm_kd_loss, public with tlm_distill_config */

typedef struct {
    tlm_kd_loss loss;
    float beta;          /* TLM_KD_JSD: the teacher's weight in the mixture (TRL's beta) */
    float temperature;   /* T: both sides' logits divided by it before the softmax */
    int64_t top_k;       /* tlm_kd_rows: 0 the whole vocabulary; k the teacher's k most likely ids */
    int tail;            /* top-k: add the tail bucket (1) or renormalise over the kept ids (0) */
} tlm_kd_desc;

/* TRL's floor on a tail bucket: it clamps log(sum of the kept probabilities)
 * at -1e-7, so a tail is at least 1 - exp(-1e-7) = -expm1(-1e-7). */
#define TLM_KD_TAIL_MIN 9.9999995e-8

/* Scratch floats per thread for a support of k ids (0: the whole vocabulary). */
int64_t tlm_kd_scratch_floats(int64_t k);

/* Student logits s [N,V] against teacher logits t [N,V], over the whole
 * vocabulary (kd->top_k 0) or the teacher's top kd->top_k ids of each row
 * (ties: the lower id first). ds [N,V] or NULL.
 * scratch: nthreads * tlm_kd_scratch_floats(kd->top_k). */
double tlm_kd_rows(const tlm_kd_desc *kd, const float *s, const float *t, int64_t N, int64_t V, float *ds,
                   float grad_scale, float *scratch);

/* The teacher as an offline cache stores it: ids [N,k] and logp [N,k], the
 * log-softmax at temperature T0 = logp_temperature over the whole vocabulary
 * at those ids (tlm_kd_topk), and optionally tail_logp [N] (NULL: the tail is
 * 1 - sum exp(logp), as TRL computes it; a stored one keeps the digits that
 * difference cancels when the kept mass is near 1). A slot whose logp is -inf
 * is absent (TRL's padding of short rows): on the student's side its id joins
 * the tail. kd->top_k is not read (k is the support). At kd->temperature
 * T != T0 the teacher's buckets are re-tempered: each bucket's probability
 * raised to T0 / T and renormalised over the buckets (the kept ids, and the
 * tail with kd->tail); at T == T0 they are taken as stored, as TRL does.
 * ds [N,V] or NULL. scratch: nthreads * tlm_kd_scratch_floats(k). */
double tlm_kd_topk_rows(const tlm_kd_desc *kd, const float *s, const int32_t *ids, const float *logp,
                        const float *tail_logp, float logp_temperature, int64_t N, int64_t V, int64_t k, float *ds,
                        float grad_scale, float *scratch);

/* A teacher row's top k for the offline cache: ids [N,k] sorted by
 * probability (ties: the lower id first), logp [N,k] their log-softmax of
 * t / temperature over the whole vocabulary, tail_logp [N] (or NULL) the log
 * of the mass outside them, summed over those ids (not 1 - the kept sum;
 * -inf when k = V). Needs no scratch: the outputs hold the selection. */
void tlm_kd_topk(const float *t, int64_t N, int64_t V, int64_t k, float temperature, int32_t *ids, float *logp,
                 float *tail_logp);

#endif
