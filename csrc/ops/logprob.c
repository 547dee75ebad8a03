/* logprob.c: log-probabilities of target tokens under full logits rows. */
#include "ops/fastexp.h"
#include "ops/ops.h"

#include <math.h>

void tlm_logprob_gather(float *out, const float *logits, const int32_t *targets, int64_t N, int64_t V) {
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        if (targets[n] < 0) { out[n] = 0.0f; continue; }
        const float *row = logits + n * V;
        float mx = row[0];
        for (int64_t v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        double sum = 0.0; /* a wide vocabulary's sum in f32 would lose digits */
        for (int64_t v = 0; v < V; v++) sum += (double)tlm_expf(row[v] - mx);
        out[n] = (float)((double)(row[targets[n]] - mx) - log(sum));
    }
}
