/* head.h: objectives computed from final hidden states through the LM head,
 * a chunk of rows at a time, so that neither the student's nor a teacher's
 * [rows, V] logits are held for more than a chunk. */
#ifndef TLM_HEAD_H
#define TLM_HEAD_H

#include <stdint.h>

#include "objectives/objectives.h"
#include "tlm.h"

/* An LM head: logits = h W^T + bias, soft-capped when softcap > 0. A
 * teacher's W may have more rows than the student's vocabulary (padded
 * embeddings): only the first V are read. */
typedef struct {
    const float *W;      /* [>= V, D] */
    const float *bias;   /* [>= V] or NULL */
    float softcap;
    int64_t D, V;
} tlm_head;

/* The logits of rows h [rows, D] into out [rows, V]. */
void tlm_head_logits(const tlm_head *hd, const float *h, int64_t rows, float *out);

/* Distillation from hidden states: student rows hv [Nv, D] with targets tv
 * [Nv]; the teacher as its own head and rows hv_t [Nv, Dt] (online), or as
 * its top-k per row: ids [Nv, k], log-probs [Nv, k] at topk_temperature
 * (offline). Adds ce_weight * (sum CE) + kd_weight * (sum KD) and returns it;
 * *ce_sum and *kd_sum get the two sums. With dhv: dhv = d(returned)/dhv, and
 * d/dW, d/dbias added to dW, db when not NULL. Scratch: chunk, tchunk
 * (online only) and dkd (with dhv) [tlm_lmhead_ce_rows(V), V] each;
 * kd_scratch nthreads * tlm_kd_scratch_floats(kd->top_k online, k offline). */
double tlm_head_distill(const tlm_kd_desc *kd, const tlm_head *student, const tlm_head *teacher, const float *hv,
                        const float *hv_t, const int32_t *topk_ids, const float *topk_logp, int64_t k,
                        float topk_temperature, const int32_t *tv, int64_t Nv, float ce_weight, float kd_weight,
                        float *chunk, float *tchunk, float *dkd, float *kd_scratch, float *dhv, float *dW, float *db,
                        double *ce_sum, double *kd_sum);

#endif
