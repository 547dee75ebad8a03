/* kd.c: the KD kernels of objectives.h: rows shared out over threads, each
 * row's divergence from kd_full.c (whole vocabulary) or kd_buckets.c
 * (top-k), the loss summed in a fixed order.
 *
 * A thread's scratch, floats:
 *   [0, 2)            its partial loss, a double (memcpy: no alignment asked)
 *   [2, 2+k)          the teacher's top-k ids (int32), when taken from logits
 *   [2+k, 3+2k)       the teacher's bucket log-probs, the tail's last
 *   [3+2k, 3+3k)      the kept student logits (kd_bucket_row's keep)
 * Nothing here or below allocates. */
#include "objectives/kd_row.h"

#include <omp.h>
#include <string.h>

int64_t tlm_kd_scratch_floats(int64_t k) { return 3 + 3 * k; }

/* One call's arguments, for the row function (the teacher from logits t,
 * or stored as ids / logp / tail_logp). */
typedef struct {
    const tlm_kd_desc *kd;
    kd_div div;
    const float *s, *t;
    const int32_t *ids;
    const float *logp, *tail_logp;
    float logp_temperature;
    int64_t V, k;
    float *ds;
    float g;
} kd_job;

static double job_row(const kd_job *job, int64_t r, float *scratch) {
    const int64_t V = job->V, k = job->k;
    const float *s = job->s + r * V;
    float *ds = job->ds ? job->ds + r * V : NULL;
    if (job->t && k == 0) return kd_full_row(&job->div, job->kd->temperature, s, job->t + r * V, V, ds, job->g);
    float *lp = scratch + k, *keep = lp + k + 1;
    const int32_t *ids = job->ids ? job->ids + r * k : NULL;
    if (job->t) {
        int32_t *top = (int32_t *)scratch;
        kd_select(job->t + r * V, V, k, top, lp);
        kd_teacher_buckets(job->kd, job->t + r * V, V, top, k, lp);
        ids = top;
    } else {
        kd_stored_buckets(job->kd, job->logp + r * k, job->tail_logp ? job->tail_logp + r : NULL,
                          job->logp_temperature, k, lp);
    }
    return kd_bucket_row(&job->div, job->kd, s, V, ids, lp, k, ds, job->g, keep);
}

/* Sum over rows: static blocks of rows per thread, each thread's partial in
 * its scratch, added in thread order (the same for a given thread count;
 * across counts it differs by the rounding of the sum only). */
static double sum_rows(const kd_job *job, int64_t N, float *scratch) {
    const int64_t per_thread = tlm_kd_scratch_floats(job->k);
    const int nthreads = omp_get_max_threads();
    const double zero = 0.0;
    for (int i = 0; i < nthreads; i++) memcpy(scratch + i * per_thread, &zero, sizeof zero);
    #pragma omp parallel
    {
        float *mine = scratch + omp_get_thread_num() * per_thread;
        double part = 0.0;
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < N; r++) part += job_row(job, r, mine + 2);
        memcpy(mine, &part, sizeof part);
    }
    double total = 0.0;
    for (int i = 0; i < nthreads; i++) {
        double part;
        memcpy(&part, scratch + i * per_thread, sizeof part);
        total += part;
    }
    return total;
}

double tlm_kd_rows(const tlm_kd_desc *kd, const float *s, const float *t, int64_t N, int64_t V, float *ds,
                   float grad_scale, float *scratch) {
    kd_job job = {.kd = kd, .div = kd_div_of(kd), .s = s, .t = t, .V = V, .k = kd->top_k, .ds = ds,
                  .g = grad_scale / kd->temperature};
    return sum_rows(&job, N, scratch);
}

double tlm_kd_topk_rows(const tlm_kd_desc *kd, const float *s, const int32_t *ids, const float *logp,
                        const float *tail_logp, float logp_temperature, int64_t N, int64_t V, int64_t k, float *ds,
                        float grad_scale, float *scratch) {
    kd_job job = {.kd = kd, .div = kd_div_of(kd), .s = s, .ids = ids, .logp = logp, .tail_logp = tail_logp,
                  .logp_temperature = logp_temperature, .V = V, .k = k, .ds = ds,
                  .g = grad_scale / kd->temperature};
    return sum_rows(&job, N, scratch);
}
