/* kd_buckets.c: the top-k divergences over buckets, TRL's server
 * distillation: the teacher's bucket log-probs from a stored top-k (the
 * teacher from logits is kd_topk.c's), and the student's side against them.
 *
 * The student's kept probabilities are its softmax over the whole
 * vocabulary at the kept ids. With the tail, its tail bucket is the rest of
 * that softmax, (sum - kept) / sum over the same exponentials (the kept
 * terms are the sum's own, bit for bit, so the difference is exact to
 * double rounding); every id outside the kept ones lies in the tail, so its
 * gradient is q_j (G_tail - C) (kd_row.h). Without the tail the kept ids
 * are renormalised and the others get no gradient. */
#include "objectives/kd_row.h"

/* lp [n] -= log sum exp(lp) over the present (not -inf) entries. */
static void log_normalise(float *lp, int64_t n) {
    float mx = -INFINITY;
    for (int64_t b = 0; b < n; b++) mx = lp[b] > mx ? lp[b] : mx;
    if (mx == -INFINITY) return; /* nothing present */
    double sum = 0.0;
    for (int64_t b = 0; b < n; b++) sum += exp((double)lp[b] - mx);
    const double lse = (double)mx + log(sum);
    for (int64_t b = 0; b < n; b++)
        if (lp[b] != -INFINITY) lp[b] = (float)((double)lp[b] - lse);
}

void kd_stored_buckets(const tlm_kd_desc *kd, const float *logp, const float *tail_logp, float logp_temperature,
                       int64_t k, float *lp) {
    for (int64_t i = 0; i < k; i++) lp[i] = logp[i];
    if (kd->tail) {
        double tail = 1.0;
        if (tail_logp)
            tail = exp((double)*tail_logp);
        else /* TRL's log(-expm1(logsumexp(logp))), in double */
            for (int64_t i = 0; i < k; i++) tail -= exp((double)logp[i]);
        lp[k] = (float)log(tail > TLM_KD_TAIL_MIN ? tail : TLM_KD_TAIL_MIN);
    } else {
        log_normalise(lp, k);
    }
    const float r = logp_temperature / kd->temperature;
    if (r == 1.0f) return; /* as stored: TRL's buckets, not renormalised */
    const int64_t n = k + (kd->tail ? 1 : 0);
    for (int64_t b = 0; b < n; b++) lp[b] *= r;
    log_normalise(lp, n);
}

double kd_bucket_row(const kd_div *d, const tlm_kd_desc *kd, const float *s, int64_t V, const int32_t *ids,
                     const float *lp, int64_t k, float *ds, float g, float *keep) {
    const float T = kd->temperature;
    const kd_norm n = kd_normaliser(s, V, T);
    const double lse = (double)n.max + log(n.sum);
    double kept = 0.0;
    float kmax = -INFINITY;
    for (int64_t i = 0; i < k; i++) {
        keep[i] = s[ids[i]] / T;
        if (lp[i] == -INFINITY) continue;
        kept += tlm_expf(keep[i] - n.max);
        kmax = keep[i] > kmax ? keep[i] : kmax;
    }
    /* lse_b: the log-normaliser of the kept buckets. */
    float lse_b, logq_tail = 0.0f;
    double tail = 0.0;
    int tail_grad = 0;
    if (kd->tail) {
        lse_b = (float)lse;
        tail = (n.sum - kept) / n.sum;
        tail_grad = !(tail < TLM_KD_TAIL_MIN); /* floored: TRL's clamp passes no gradient */
        logq_tail = (float)log(tail_grad ? tail : TLM_KD_TAIL_MIN);
    } else {
        /* Their own max: the kept may all lie 90 nats below the row's, where
         * tlm_expf's floor would swamp them. (lse - lse) carries a NaN or
         * +inf elsewhere in the row, as TRL's log-softmax over V does. */
        double sum = 0.0;
        for (int64_t i = 0; i < k; i++)
            if (lp[i] != -INFINITY) sum += tlm_expf(keep[i] - kmax);
        lse_b = (float)((double)kmax + log(sum) + (lse - lse));
    }
    double loss = 0.0, c = 0.0;
    float h;
    for (int64_t i = 0; i < k; i++) {
        if (lp[i] == -INFINITY) continue;
        loss += kd_term(d, d->loss, lp[i], keep[i] - lse_b, &h);
        c += h;
    }
    float g_tail = 0.0f; /* dL/dQ_tail */
    if (kd->tail) {
        loss += kd_term(d, d->loss, lp[k], logq_tail, &h);
        if (tail_grad) {
            c += h;
            g_tail = h / (float)tail;
        }
    }
    if (!ds) return loss;
    const float cf = (float)c, lse_f = (float)lse;
    /* Every id as if in the tail (0 without one), then the kept rewritten;
     * their logits are in keep, so ds may be s. */
    if (kd->tail) {
        #pragma omp simd
        for (int64_t j = 0; j < V; j++) ds[j] = g * (kd_prob(s[j] / T - lse_f) * (g_tail - cf));
    } else {
        for (int64_t j = 0; j < V; j++) ds[j] = 0.0f;
    }
    for (int64_t i = 0; i < k; i++) {
        if (lp[i] == -INFINITY) continue;
        float logq = keep[i] - lse_b;
        kd_term(d, d->loss, lp[i], logq, &h);
        ds[ids[i]] = g * (h - kd_prob(logq) * cf);
    }
    return loss;
}
