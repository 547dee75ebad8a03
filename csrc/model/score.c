/* score.c: per-token log-likelihoods for evaluation (multiple-choice scoring,
 * perplexity). Inference only: forward() on a few rows at a time, then the
 * log-softmax of each target, so neither the training arena nor [B,T,V]
 * logits for the whole batch are ever held. */
#include "core/internal.h"
#include "model/model.h"
#include "ops/ops.h"

/* Logits held at once: about 64 MB, at least one row. */
#define SCORE_CHUNK_FLOATS ((int64_t)1 << 24)

tlm_status tlm_model_logprobs(tlm_model *m, const int32_t *input_ids, const int32_t *attention_mask,
                              const int32_t *position_ids, const int32_t *targets, int64_t B, int64_t T, float *out) {
    int64_t V = m->cfg.vocab_size;
    if (B <= 0 || T <= 0)
        return tlm_fail(TLM_EINVAL, "batch and sequence length must be > 0, got B=%lld T=%lld", (long long)B,
                        (long long)T);
    for (int64_t n = 0; n < B * T; n++)
        if (targets[n] != -100 && (targets[n] < 0 || targets[n] >= V))
            return tlm_fail(TLM_EINVAL, "targets[%lld, %lld] = %d is neither -100 nor in [0, %lld)",
                            (long long)(n / T), (long long)(n % T), targets[n], (long long)V);
    int64_t rows = tlm_max_i64(1, tlm_min_i64(B, SCORE_CHUNK_FLOATS / (T * V)));
    float *logits = tlm_alloc((size_t)(rows * T * V) * sizeof(float));
    if (!logits)
        return tlm_fail(TLM_ENOMEM, "out of memory for the logits of %lld x %lld tokens", (long long)rows,
                        (long long)T);
    tlm_status st = TLM_OK;
    for (int64_t b = 0; b < B && st == TLM_OK; b += rows) {
        int64_t r = tlm_min_i64(rows, B - b);
        st = tlm_model_forward(m, input_ids + b * T, attention_mask ? attention_mask + b * T : NULL,
                               position_ids ? position_ids + b * T : NULL, r, T, logits);
        if (st == TLM_OK) tlm_logprob_gather(out + b * T, logits, targets + b * T, r * T, V);
    }
    tlm_free(logits);
    return st;
}
