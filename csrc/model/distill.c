/* distill.c: loss() against a teacher (tlm_model_loss_distill).
 *
 * The student runs as in loss() to its final hidden states; an online
 * teacher runs forward only (its own arena, inference mode, its own
 * storage and active adapter) on the same inputs, and the hidden states of
 * the rows with a target are gathered from both; an offline teacher's
 * top-k are gathered for the same rows. objectives/head_distill.c then
 * computes CE and KD chunk by chunk and seeds backward at the hidden
 * states, as the CE-only loss does. The buffers live in one block owned by
 * the student, planned for the largest step seen and reused. */
#include "core/internal.h"
#include "model/decoder.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define REQUIRE(cond, ...) do { if (!(cond)) return tlm_fail(TLM_EINVAL, __VA_ARGS__); } while (0)

static tlm_status check(const tlm_model *m, const tlm_distill_config *dc, const tlm_model *teacher,
                        const int32_t *topk_ids, const float *topk_logp, int64_t k, float topk_temperature) {
    REQUIRE(!teacher != !topk_ids, "distillation needs exactly one teacher: a model or its top-k");
    REQUIRE(dc->loss >= TLM_KD_FORWARD_KL && dc->loss <= TLM_KD_JSD, "unknown distillation loss id %d",
            (int)dc->loss);
    REQUIRE(dc->beta >= 0.0f && dc->beta <= 1.0f, "distill beta must be in [0, 1], got %g", (double)dc->beta);
    REQUIRE(dc->temperature > 0.0f && isfinite(dc->temperature), "distill temperature must be finite and > 0, got %g",
            (double)dc->temperature);
    REQUIRE(dc->kd_ratio >= 0.0f && dc->kd_ratio <= 1.0f, "kd_ratio must be in [0, 1], got %g", (double)dc->kd_ratio);
    int64_t V = m->cfg.vocab_size;
    REQUIRE(dc->top_k >= 0 && dc->top_k <= V, "distill top_k must be in [0, %lld], got %lld", (long long)V,
            (long long)dc->top_k);
    if (teacher) {
        REQUIRE(teacher != m, "the teacher must be another model than the student");
        REQUIRE(teacher->cfg.vocab_size >= V,
                "the teacher's vocabulary (%lld) is smaller than the student's (%lld): they must share the tokenizer",
                (long long)teacher->cfg.vocab_size, (long long)V);
    } else {
        REQUIRE(topk_logp && k >= 1 && k <= V, "the teacher's top-k needs log-probs and k in [1, %lld], got %lld",
                (long long)V, (long long)k);
        REQUIRE(topk_temperature > 0.0f && isfinite(topk_temperature),
                "the teacher's top-k temperature must be finite and > 0, got %g", (double)topk_temperature);
    }
    return TLM_OK;
}

/* One block for the teacher's rows (hidden states or top-k) and the
 * objective's chunks; grows, never shrinks. */
static tlm_status plan_block(tlm_model *m, int64_t nv, int64_t Dt, int64_t k, int64_t support, float **hv_t,
                             int32_t **ids, float **logp, float **tchunk, float **dkd, float **kd_scratch) {
    int64_t V = m->cfg.vocab_size, chunk = tlm_lmhead_ce_rows(V) * V;
    int64_t threads = omp_get_max_threads();
    size_t sizes[] = {(size_t)(nv * Dt), (size_t)(nv * k), (size_t)(nv * k), (size_t)(Dt ? chunk : 0), (size_t)chunk,
                      (size_t)(threads * tlm_kd_scratch_floats(support))};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) total += (sizes[i] * 4 + 63) & ~(size_t)63;
    if (total > m->distill_capacity) {
        tlm_free(m->distill_block);
        m->distill_block = tlm_alloc(total);
        m->distill_capacity = m->distill_block ? total : 0;
        if (!m->distill_block)
            return tlm_fail(TLM_ENOMEM, "out of memory for distillation buffers (%.1f MB)", (double)total / 1e6);
    }
    void **out[] = {(void **)hv_t, (void **)ids, (void **)logp, (void **)tchunk, (void **)dkd, (void **)kd_scratch};
    char *at = m->distill_block;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        *out[i] = sizes[i] ? at : NULL;
        at += (sizes[i] * 4 + 63) & ~(size_t)63;
    }
    return TLM_OK;
}

tlm_status tlm_model_loss_distill(tlm_model *m, const tlm_distill_config *dc, tlm_model *teacher,
                                  const int32_t *topk_ids, const float *topk_logp, int64_t k,
                                  float topk_temperature, const int32_t *input_ids, const int32_t *labels,
                                  const int32_t *attention_mask, const int32_t *position_ids, int64_t B, int64_t T,
                                  float *loss, int64_t *n_tokens, float *ce, float *kd) {
    TLM_TRY(check(m, dc, teacher, topk_ids, topk_logp, k, topk_temperature));
    int64_t V = m->cfg.vocab_size;
    if (topk_ids)
        for (int64_t i = 0; i < B * T * k; i++)
            REQUIRE(topk_ids[i] >= 0 && topk_ids[i] < V, "teacher top-k id %d (position %lld) is outside [0, %lld)",
                    topk_ids[i], (long long)(i / k), (long long)V);
    tlm_kd_desc desc = {.loss = dc->loss, .beta = dc->beta, .temperature = dc->temperature, .top_k = dc->top_k,
                        .tail = dc->tail};
    int64_t nv;
    TLM_TRY(tlm_decoder_loss_forward(m, input_ids, labels, attention_mask, position_ids, B, T, &nv));
    int64_t Dt = teacher ? teacher->cfg.hidden_size : 0;
    float *hv_t = NULL, *logp = NULL, *tchunk = NULL, *dkd = NULL, *kd_scratch = NULL;
    int32_t *ids = NULL;
    TLM_TRY(plan_block(m, nv, Dt, topk_ids ? k : 0, topk_ids ? k : desc.top_k, &hv_t, &ids, &logp, &tchunk, &dkd,
                       &kd_scratch));
    const int32_t *rows = m->arena.valid_rows;
    tlm_head thead;
    if (teacher) {
        TLM_TRY(tlm_decoder_hidden(teacher, input_ids, attention_mask, position_ids, B, T));
        for (int64_t i = 0; i < nv; i++)
            memcpy(hv_t + i * Dt, teacher->arena.h_f + (int64_t)rows[i] * Dt, (size_t)Dt * sizeof(float));
        thead = tlm_decoder_lm_head(teacher);
        thead.V = V; /* a vocabulary padded past the student's: its extra rows are never read */
    } else {
        for (int64_t i = 0; i < nv; i++) {
            memcpy(ids + i * k, topk_ids + (int64_t)rows[i] * k, (size_t)k * sizeof(int32_t));
            memcpy(logp + i * k, topk_logp + (int64_t)rows[i] * k, (size_t)k * sizeof(float));
        }
    }
    float *db, *dW = tlm_decoder_head_grad(m, &db);
    tlm_head shead = tlm_decoder_lm_head(m);
    float t2 = dc->scale_by_t2 ? dc->temperature * dc->temperature : 1.0f;
    double ce_sum, kd_sum;
    double total = tlm_head_distill(&desc, &shead, teacher ? &thead : NULL, m->arena.hv, hv_t, ids, logp, k,
                                    topk_temperature, m->arena.tv, nv, 1.0f - dc->kd_ratio, dc->kd_ratio * t2,
                                    m->arena.ce_chunk, tchunk, dkd, kd_scratch, m->training ? m->arena.dhv : NULL, dW,
                                    db, &ce_sum, &kd_sum);
    tlm_decoder_loss_done(m, nv, (float)(total / (double)nv));
    *loss = m->last_loss;
    *n_tokens = nv;
    if (ce) *ce = (float)(ce_sum / (double)nv);
    if (kd) *kd = (float)(t2 * kd_sum / (double)nv);
    return TLM_OK;
}
