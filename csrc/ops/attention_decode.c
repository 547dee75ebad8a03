/* attention_decode.c: attention of new query positions against a KV cache.
 *
 * Generation feeds S new positions per row (the prompt once, then one token
 * per step) whose keys and values have just been written into the cache.
 * The cache is [B, K, Tc, E] so each kv head's keys are one contiguous
 * [t, E] matrix and a query block's scores are a single GEMM. Rows may be
 * left-padded: row b's real tokens start at cache position start[b], and
 * positions before it are never attended. Forward only: nothing is kept for
 * a backward pass. */
#include "ops/fastexp.h"
#include "ops/ops.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#define QB 64 /* query rows per block */

int64_t tlm_attention_decode_scratch_floats(int64_t Tc) { return QB * Tc; }

/* Softmax of each row of P [rows, ld] over columns [0, last_i], where
 * last_i = first_last + (row index) is the causal limit; columns after it are
 * zeroed. A row with no column (last_i < 0) becomes zeros. */
static void causal_softmax(float *P, int64_t rows, int64_t ld, int64_t first_last) {
    for (int64_t r = 0; r < rows; r++) {
        float *row = P + r * ld;
        int64_t n = first_last + r + 1; /* keys this query sees */
        if (n > ld) n = ld;
        if (n <= 0) { memset(row, 0, (size_t)ld * sizeof(float)); continue; }
        float mx = -INFINITY;
        for (int64_t j = 0; j < n; j++) mx = row[j] > mx ? row[j] : mx;
        float sum = 0.0f;
        for (int64_t j = 0; j < n; j++) sum += (row[j] = tlm_expf(row[j] - mx));
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < n; j++) row[j] *= inv;
        for (int64_t j = n; j < ld; j++) row[j] = 0.0f;
    }
}

void tlm_attention_decode(float *out, const float *q, const float *kc, const float *vc, const int32_t *start,
                          int64_t B, int64_t S, int64_t t0, int64_t Tc, int64_t H, int64_t K, int64_t E,
                          float *scratch) {
    const float scale = 1.0f / sqrtf((float)E);
    const int64_t group = H / K, ldq = H * E;
    /* A decoding step of a short sequence is too little work to share out:
     * a parallel region would cost more than it saves (and, on a busy
     * machine, wait for a descheduled thread). */
    #pragma omp parallel for schedule(dynamic, 1) if (B * H * S * (t0 + S) * E > 131072)
    for (int64_t bh = 0; bh < B * H; bh++) {
        int64_t b = bh / H, h = bh % H, kh = h / group;
        float *P = scratch + (int64_t)omp_get_thread_num() * tlm_attention_decode_scratch_floats(Tc);
        int64_t first = start[b]; /* first real key of this row */
        const float *kb = kc + ((b * K + kh) * Tc + first) * E;
        const float *vb = vc + ((b * K + kh) * Tc + first) * E;
        const float *qb = q + b * S * ldq + h * E;
        float *ob = out + b * S * ldq + h * E;
        for (int64_t i0 = 0; i0 < S; i0 += QB) {
            int64_t i1 = i0 + QB < S ? i0 + QB : S, rows = i1 - i0;
            /* Keys first .. t0+i1-1 cover the block's last query. */
            int64_t cols = t0 + i1 - first;
            if (cols <= 0) { /* every query of the block is left padding */
                for (int64_t i = i0; i < i1; i++) memset(ob + i * ldq, 0, (size_t)E * sizeof(float));
                continue;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)cols, (blasint)E, scale,
                        qb + i0 * ldq, (blasint)ldq, kb, (blasint)E, 0.0f, P, (blasint)cols);
            /* Query i (cache position t0+i) sees keys up to column t0+i-first. */
            causal_softmax(P, rows, cols, t0 + i0 - first);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)rows, (blasint)E, (blasint)cols, 1.0f, P,
                        (blasint)cols, vb, (blasint)E, 0.0f, ob + i0 * ldq, (blasint)ldq);
        }
    }
}
