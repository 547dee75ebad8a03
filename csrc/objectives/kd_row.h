/* kd_row.h: what the KD kernels share inside objectives/: the divergence of
 * one bucket (a vocabulary entry, a kept id or the tail) and the row
 * functions kd.c runs over rows. Not part of the contract (objectives.h).
 *
 * Gradients: with a = s / T and Q the student's bucket probabilities, each
 * divergence has dL/dQ_b = G_b, and through the softmax
 *   dL/da_j = q_j (G_b(j) - C),  C = sum_b Q_b G_b,
 * b(j) the bucket of id j. The terms below return h_b = Q_b G_b, which stays
 * finite where Q_b is 0: forward KL G = -P / Q (h = -P); reverse KL
 * G = log Q - log P + 1; JSD G = (1 - beta)(log Q - log M) (the mixture's
 * own terms cancel). */
#ifndef TLM_KD_ROW_H
#define TLM_KD_ROW_H

#include "objectives/objectives.h"
#include "ops/fastexp.h"

#include <math.h>

/* The divergence of a desc, JSD at beta 0 or 1 resolved to its KL. */
typedef struct {
    tlm_kd_loss loss;
    float beta, log_beta, log_1m_beta; /* JSD */
} kd_div;

static inline kd_div kd_div_of(const tlm_kd_desc *kd) {
    kd_div d = {kd->loss, kd->beta, logf(kd->beta), log1pf(-kd->beta)};
    if (d.loss == TLM_KD_JSD && kd->beta == 0.0f) d.loss = TLM_KD_FORWARD_KL;
    if (d.loss == TLM_KD_JSD && kd->beta == 1.0f) d.loss = TLM_KD_REVERSE_KL;
    return d;
}

/* exp(logp), exactly 0 at -inf (tlm_expf floors at the smallest normal). */
static inline float kd_prob(float logp) { return logp == -INFINITY ? 0.0f : tlm_expf(logp); }

/* p (log p - log r) with 0 log 0 = 0; NaN stays NaN. */
static inline float kd_xlogratio(float logp, float logr) {
    return logp == -INFINITY ? 0.0f : tlm_expf(logp) * (logp - logr);
}

/* log(1 + u) for u in [0, 1], without calls or branches so the loops over
 * a vocabulary vectorize (glibc's log1pf runs one value at a time): Cephes'
 * logf polynomial on x = u, or on x = (1 + u) / 2 - 1 plus ln 2 above
 * sqrt(2); about 1 ulp, and x = u keeps a tiny u's digits. NaN stays NaN. */
static inline float kd_log1p(float u) {
    int big = u > 0.41421356f;
    float x = big ? 0.5f * (u - 1.0f) : u, e = big ? 1.0f : 0.0f;
    float z = x * x;
    float p = 7.0376836292e-2f;
    p = p * x - 1.1514610310e-1f;
    p = p * x + 1.1676998740e-1f;
    p = p * x - 1.2420140846e-1f;
    p = p * x + 1.4249322787e-1f;
    p = p * x - 1.6668057665e-1f;
    p = p * x + 2.0000714765e-1f;
    p = p * x - 2.4999993993e-1f;
    p = p * x + 3.3333331174e-1f;
    float y = x * z * p + e * -2.12194440e-4f - 0.5f * z;
    return x + y + e * 0.693359375f;
}

/* log(beta p + (1 - beta) q) from the logs, as TRL's logsumexp of the two. */
static inline float kd_logmix(const kd_div *d, float logp, float logq) {
    float x = logp + d->log_beta, y = logq + d->log_1m_beta;
    float hi = x > y ? x : y, lo = x > y ? y : x;
    return hi == -INFINITY ? -INFINITY : hi + kd_log1p(tlm_expf(lo - hi));
}

/* One bucket: its share of the divergence, and *h = Q dL/dQ. kind is
 * d->loss, passed apart so that a loop over a vocabulary is compiled once
 * per kind with it a constant (a switch in the loop would not vectorize). */
static inline float kd_term(const kd_div *d, tlm_kd_loss kind, float logp, float logq, float *h) {
    switch (kind) {
    case TLM_KD_FORWARD_KL:
        *h = -kd_prob(logp);
        return kd_xlogratio(logp, logq);
    case TLM_KD_REVERSE_KL:
        *h = logq == -INFINITY ? 0.0f : tlm_expf(logq) * (logq - logp + 1.0f);
        return kd_xlogratio(logq, logp);
    default: {
        float logm = kd_logmix(d, logp, logq);
        *h = logq == -INFINITY ? 0.0f : (1.0f - d->beta) * tlm_expf(logq) * (logq - logm);
        return d->beta * kd_xlogratio(logp, logm) + (1.0f - d->beta) * kd_xlogratio(logq, logm);
    }
    }
}

/* max of x / T over V and sum exp(x / T - max): log-softmax's normaliser
 * lse = max + log(sum); a NaN or +inf anywhere makes the sum NaN. */
typedef struct {
    float max;
    double sum;
} kd_norm;

kd_norm kd_normaliser(const float *x, int64_t V, float T);

/* Row functions: the row's divergence; with ds, its gradient times g. */
double kd_full_row(const kd_div *d, float T, const float *s, const float *t, int64_t V, float *ds, float g);

/* The student's side of a top-k row against the teacher's bucket log-probs
 * lp [k] (lp[k]: the tail's, when kd->tail) at ids [k]; slots with lp -inf
 * are absent. keep: k floats of scratch (the kept logits, read after an in
 * place gradient has overwritten them). */
double kd_bucket_row(const kd_div *d, const tlm_kd_desc *kd, const float *s, int64_t V, const int32_t *ids,
                     const float *lp, int64_t k, float *ds, float g, float *keep);

/* The teacher's k best ids of a row of logits, sorted (ties: the lower id
 * first): ids [k] and their logits vals [k]. */
void kd_select(const float *t, int64_t V, int64_t k, int32_t *ids, float *vals);

/* The teacher's bucket log-probs lp [k(+1)] at kd->temperature: from a row
 * of logits t [V] whose top k are ids (lp holding their logits on entry, as
 * kd_select leaves them), and from a stored top-k (objectives.h). */
void kd_teacher_buckets(const tlm_kd_desc *kd, const float *t, int64_t V, const int32_t *ids, int64_t k, float *lp);
void kd_stored_buckets(const tlm_kd_desc *kd, const float *logp, const float *tail_logp, float logp_temperature,
                       int64_t k, float *lp);

#endif
