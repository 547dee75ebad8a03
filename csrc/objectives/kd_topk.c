/* kd_topk.c: the teacher's k most likely ids of a row of logits, and what
 * follows from them: its bucket log-probs for the top-k losses, and the
 * log-probs an offline cache stores (tlm_kd_topk).
 *
 * Selection keeps the best k seen so far in a min-heap whose root is the
 * worst of them, so most of a row costs one comparison per entry
 * (O(V log k) at worst), then sorts the heap in place. Ties go to the lower
 * id, so the support is a function of the row alone (torch.topk leaves
 * ties unspecified). The heap lives in the caller's ids / vals arrays. */
#include "objectives/kd_row.h"

/* Entry (va, ia) ranks below (vb, ib). */
static inline int worse(float va, int32_t ia, float vb, int32_t ib) {
    return (va < vb) | ((va == vb) & (ia > ib)); /* no short-circuit: rest_sum's loop vectorizes */
}

/* Restores the heap below slot i of n. */
static void sift_down(int32_t *ids, float *vals, int64_t i, int64_t n) {
    for (;;) {
        int64_t w = i, l = 2 * i + 1, r = l + 1;
        if (l < n && worse(vals[l], ids[l], vals[w], ids[w])) w = l;
        if (r < n && worse(vals[r], ids[r], vals[w], ids[w])) w = r;
        if (w == i) return;
        float v = vals[i];
        int32_t id = ids[i];
        vals[i] = vals[w], ids[i] = ids[w];
        vals[w] = v, ids[w] = id;
        i = w;
    }
}

void kd_select(const float *t, int64_t V, int64_t k, int32_t *ids, float *vals) {
    for (int64_t j = 0; j < k; j++) ids[j] = (int32_t)j, vals[j] = t[j];
    for (int64_t i = k / 2 - 1; i >= 0; i--) sift_down(ids, vals, i, k);
    for (int64_t j = k; j < V; j++)
        if (worse(vals[0], ids[0], t[j], (int32_t)j)) {
            vals[0] = t[j], ids[0] = (int32_t)j;
            sift_down(ids, vals, 0, k);
        }
    /* Heap sort: the root (the worst left) goes to the end, best first remains. */
    for (int64_t n = k - 1; n > 0; n--) {
        float v = vals[0];
        int32_t id = ids[0];
        vals[0] = vals[n], ids[0] = ids[n];
        vals[n] = v, ids[n] = id;
        sift_down(ids, vals, 0, n);
    }
}

/* The teacher's mass outside its top k, sum exp(x / T - max) over the
 * entries that rank below the k-th kept one (v_k, id_k): the complement
 * itself, not 1 - the kept sum, so a tail of 1e-12 keeps its digits. */
static double rest_sum(const float *t, int64_t V, float T, float max, float v_k, int32_t id_k) {
    double sum = 0.0;
    #pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < V; j++) sum += worse(t[j], (int32_t)j, v_k, id_k) ? tlm_expf(t[j] / T - max) : 0.0f;
    return sum;
}

void kd_teacher_buckets(const tlm_kd_desc *kd, const float *t, int64_t V, const int32_t *ids, int64_t k, float *lp) {
    const float T = kd->temperature;
    kd_norm n = kd_normaliser(t, V, T);
    const double lse = (double)n.max + log(n.sum);
    if (kd->tail) {
        double tail = rest_sum(t, V, T, n.max, lp[k - 1], ids[k - 1]) / n.sum;
        for (int64_t i = 0; i < k; i++) lp[i] = (float)((double)(lp[i] / T) - lse);
        lp[k] = (float)log(tail > TLM_KD_TAIL_MIN ? tail : TLM_KD_TAIL_MIN);
        return;
    }
    /* Renormalised over the kept ids, whose best is the row's max. As TRL
     * renormalises log-softmax over V, a NaN or +inf anywhere in the row
     * makes the row NaN: (lse - lse) carries it. */
    double kept = 0.0;
    for (int64_t i = 0; i < k; i++) kept += tlm_expf(lp[i] / T - n.max);
    const double lse_k = (double)n.max + log(kept) + (lse - lse);
    for (int64_t i = 0; i < k; i++) lp[i] = (float)((double)(lp[i] / T) - lse_k);
}

void tlm_kd_topk(const float *t, int64_t N, int64_t V, int64_t k, float temperature, int32_t *ids, float *logp,
                 float *tail_logp) {
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < N; r++) {
        const float *row = t + r * V;
        int32_t *ir = ids + r * k;
        float *lr = logp + r * k;
        kd_select(row, V, k, ir, lr);
        kd_norm n = kd_normaliser(row, V, temperature);
        if (tail_logp) tail_logp[r] = (float)(log(rest_sum(row, V, temperature, n.max, lr[k - 1], ir[k - 1])) -
                                              log(n.sum));
        const double lse = (double)n.max + log(n.sum);
        for (int64_t i = 0; i < k; i++) lr[i] = (float)((double)(lr[i] / temperature) - lse);
    }
}
