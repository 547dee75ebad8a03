/* attention_decode.c: attention of new query positions against a KV cache.
 *
 * Generation feeds S new positions per row (the prompt once, then one token
 * per step) whose keys and values have just been written into the cache.
 * The cache is [B, K, Tc, E] so each kv head's keys are one contiguous
 * [t, E] matrix and a query block's scores are a single GEMM. Rows may be
 * left-padded: row b's real tokens start at cache position start[b], and
 * positions before it are never attended. With a window W, the query at
 * cache position i sees keys i - W < j <= i only (as tlm_attention_forward),
 * and a block's GEMM starts at its first query's window. Forward only:
 * nothing is kept for a backward pass. */
#include "ops/fastexp.h"
#include "ops/ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#define QB 64 /* query rows per block */

int64_t tlm_attention_decode_scratch_floats(int64_t Tc) { return QB * Tc; }

/* First cache position the query at position i may see. */
static inline int64_t first_key(const tlm_attn_desc *ad, int64_t start, int64_t i) {
    return ad->window > 0 && i - ad->window + 1 > start ? i - ad->window + 1 : start;
}

/* Row r of P [rows, ld] holds the scores of the query at cache position
 * p0 + r against keys first..first+ld-1; it sees keys first_key .. p0 + r.
 * Each row is soft-capped there and turned into probabilities, the rest of
 * it zeroed; a row with no key (left padding) becomes zeros. */
static void window_softmax(const tlm_attn_desc *ad, float *P, int64_t rows, int64_t ld, int64_t p0, int64_t first,
                           int64_t start) {
    for (int64_t r = 0; r < rows; r++) {
        float *row = P + r * ld;
        int64_t lo = first_key(ad, start, p0 + r) - first, hi = p0 + r - first; /* columns lo..hi */
        if (hi < lo) { memset(row, 0, (size_t)ld * sizeof(float)); continue; }
        if (ad->softcap > 0.0f)
            for (int64_t j = lo; j <= hi; j++) row[j] = ad->softcap * tanhf(row[j] / ad->softcap);
        float mx = -INFINITY;
        for (int64_t j = lo; j <= hi; j++) mx = row[j] > mx ? row[j] : mx;
        float sum = 0.0f;
        for (int64_t j = lo; j <= hi; j++) sum += (row[j] = tlm_expf(row[j] - mx));
        float inv = 1.0f / sum;
        for (int64_t j = lo; j <= hi; j++) row[j] *= inv;
        for (int64_t j = 0; j < lo; j++) row[j] = 0.0f;
        for (int64_t j = hi + 1; j < ld; j++) row[j] = 0.0f;
    }
}

void tlm_attention_decode(const tlm_attn_desc *ad, float *out, const float *q, const float *kc, const float *vc,
                          const int32_t *start, int64_t B, int64_t S, int64_t t0, int64_t Tc, int64_t H, int64_t K,
                          int64_t E, float *scratch) {
    const int64_t group = H / K, ldq = H * E;
    /* A decoding step of a short sequence is too little work to share out:
     * a parallel region would cost more than it saves (and, on a busy
     * machine, wait for a descheduled thread). */
    #pragma omp parallel for schedule(dynamic, 1) if (B * H * S * (t0 + S) * E > 131072)
    for (int64_t bh = 0; bh < B * H; bh++) {
        int64_t b = bh / H, h = bh % H, kh = h / group;
        float *P = scratch + (int64_t)omp_get_thread_num() * tlm_attention_decode_scratch_floats(Tc);
        const float *kb = kc + (b * K + kh) * Tc * E, *vb = vc + (b * K + kh) * Tc * E;
        const float *qb = q + b * S * ldq + h * E;
        float *ob = out + b * S * ldq + h * E;
        for (int64_t i0 = 0; i0 < S; i0 += QB) {
            int64_t i1 = i0 + QB < S ? i0 + QB : S, rows = i1 - i0;
            /* Keys first .. t0+i1-1 cover every query of the block. */
            int64_t first = first_key(ad, start[b], t0 + i0), cols = t0 + i1 - first;
            if (cols <= 0) { /* every query of the block is left padding */
                for (int64_t i = i0; i < i1; i++) memset(ob + i * ldq, 0, (size_t)E * sizeof(float));
                continue;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)cols, (blasint)E, ad->scale,
                        qb + i0 * ldq, (blasint)ldq, kb + first * E, (blasint)E, 0.0f, P, (blasint)cols);
            window_softmax(ad, P, rows, cols, t0 + i0, first, start[b]);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, (blasint)E, (blasint)cols, 1.0f, P,
                        (blasint)cols, vb + first * E, (blasint)E, 0.0f, ob + i0 * ldq, (blasint)ldq);
        }
    }
}
