/* decoder.c: the Llama-family decoder (Llama, Qwen2) composed from ops.
 *
 *   x = embed(ids)
 *   per layer: x += o_proj(attn(rope(q(n1)), rope(k(n1)), v(n1)))   n1 = rmsnorm(x)
 *              x += down(silu(gate(n2)) * up(n2))                    n2 = rmsnorm(x)
 *   logits = lm_head(rmsnorm(x))
 *
 * Backward walks the same list in reverse. Norm outputs and the SwiGLU
 * product are recomputed rather than stored (cheap, and it saves three
 * [N,D]/[N,F] tensors per layer). */
#include "core/internal.h"
#include "model/model.h"
#include "ops/ops.h"

#include <math.h>
#include <string.h>

#define LW(l, role) tlm_pdata(m, m->layer_params[l][role])
#define LG(l, role) tlm_pgrad(m, m->layer_params[l][role])

static tlm_status check_inputs(const tlm_model *m, const int32_t *ids, const int32_t *pos, int64_t B, int64_t T) {
    int64_t V = m->cfg.vocab_size;
    for (int64_t n = 0; n < B * T; n++)
        if (ids[n] < 0 || ids[n] >= V)
            return tlm_fail(TLM_EINVAL, "input_ids[%lld, %lld] = %d is outside the vocabulary [0, %lld)",
                            (long long)(n / T), (long long)(n % T), ids[n], (long long)V);
    if (pos)
        for (int64_t n = 0; n < B * T; n++)
            if (pos[n] < 0)
                return tlm_fail(TLM_EINVAL, "position_ids[%lld, %lld] = %d is negative", (long long)(n / T),
                                (long long)(n % T), pos[n]);
    return TLM_OK;
}

/* Copies the inputs into the arena (backward needs them after the caller's
 * buffers are gone) and builds the RoPE tables. */
static void stage_inputs(tlm_model *m, const int32_t *ids, const int32_t *mask, const int32_t *pos) {
    tlm_arena *a = &m->arena;
    int64_t N = a->B * a->T;
    memcpy(a->ids, ids, (size_t)N * sizeof(int32_t));
    a->has_mask = mask != NULL;
    if (mask)
        for (int64_t n = 0; n < N; n++) a->mask[n] = mask[n] != 0;
    for (int64_t n = 0; n < N; n++) a->pos[n] = pos ? pos[n] : (int32_t)(n % a->T);
    tlm_rope_tables(a->cos_t, a->sin_t, a->pos, m->inv_freq, N, m->cfg.head_dim);
}

/* A decoder layer in two halves around attention, shared with generate.c
 * (which attends over its KV cache instead): */

/* h = rmsnorm(x); q, k, v = projections of h; RoPE on q and k. */
void tlm_layer_attention_inputs(tlm_model *m, int64_t l) {
    const tlm_config *c = &m->cfg;
    tlm_arena *a = &m->arena;
    int64_t N = a->B * a->T, D = c->hidden_size, E = c->head_dim;
    tlm_rmsnorm_forward(a->h, a->rstd1[l], a->xs[l], LW(l, P_IN_NORM), N, D, c->rms_norm_eps);
    tlm_proj_forward(m, l, TLM_PROJ_Q, a->q[l], a->h, N);
    tlm_proj_forward(m, l, TLM_PROJ_K, a->k[l], a->h, N);
    tlm_proj_forward(m, l, TLM_PROJ_V, a->v[l], a->h, N);
    tlm_rope_forward(a->q[l], a->cos_t, a->sin_t, N, c->n_heads, E);
    tlm_rope_forward(a->k[l], a->cos_t, a->sin_t, N, c->n_kv_heads, E);
}

/* From the attention output o[l]: o_proj and the residual, then the MLP
 * block; the layer's output goes to `out`. */
void tlm_layer_finish(tlm_model *m, int64_t l, float *out) {
    const tlm_config *c = &m->cfg;
    tlm_arena *a = &m->arena;
    int64_t N = a->B * a->T, D = c->hidden_size, F = c->intermediate_size;
    tlm_proj_forward(m, l, TLM_PROJ_O, a->a, a->o[l], N);
    tlm_add(a->xmid[l], a->xs[l], a->a, N * D);
    tlm_rmsnorm_forward(a->h, a->rstd2[l], a->xmid[l], LW(l, P_POST_NORM), N, D, c->rms_norm_eps);
    tlm_proj_forward(m, l, TLM_PROJ_GATE, a->g[l], a->h, N);
    tlm_proj_forward(m, l, TLM_PROJ_UP, a->u[l], a->h, N);
    tlm_swiglu_forward(a->m, a->g[l], a->u[l], N * F);
    tlm_proj_forward(m, l, TLM_PROJ_DOWN, a->a, a->m, N);
    tlm_add(out, a->xmid[l], a->a, N * D);
}

/* Writes the layer's output to `out` (xs[l+1], or scratch when backward
 * recomputes a checkpointed layer). */
static void layer_forward(tlm_model *m, int64_t l, float *out) {
    const tlm_config *c = &m->cfg;
    tlm_arena *a = &m->arena;
    tlm_layer_attention_inputs(m, l);
    tlm_attention_forward(a->o[l], a->lse[l], a->q[l], a->k[l], a->v[l], a->has_mask ? a->mask : NULL, a->B, a->T,
                          c->n_heads, c->n_kv_heads, c->head_dim, a->attn_scratch);
    tlm_layer_finish(m, l, out);
}

/* Embedding, every layer, final norm into a->h_f. */
static void trunk_forward(tlm_model *m) {
    tlm_arena *a = &m->arena;
    const tlm_config *c = &m->cfg;
    int64_t N = a->B * a->T, D = c->hidden_size;
    tlm_embedding_forward(a->xs[0], a->ids, tlm_pdata(m, m->embed), N, D);
    for (int64_t l = 0; l < c->n_layers; l++) layer_forward(m, l, a->xs[l + 1]);
    tlm_rmsnorm_forward(a->h_f, a->rstd_f, a->xs[c->n_layers], tlm_pdata(m, m->final_norm), N, D, c->rms_norm_eps);
}

tlm_status tlm_model_forward(tlm_model *m, const int32_t *input_ids, const int32_t *attention_mask,
                             const int32_t *position_ids, int64_t B, int64_t T, float *logits) {
    TLM_TRY(tlm_arena_plan(m, B, T, 0));
    TLM_TRY(check_inputs(m, input_ids, position_ids, B, T));
    m->arena.dropout = 0;
    stage_inputs(m, input_ids, attention_mask, position_ids);
    trunk_forward(m);
    tlm_linear_forward(logits, m->arena.h_f, tlm_pdata(m, m->lm_head), NULL, B * T, m->cfg.hidden_size,
                       m->cfg.vocab_size);
    return TLM_OK;
}

tlm_status tlm_model_loss(tlm_model *m, const int32_t *input_ids, const int32_t *labels,
                          const int32_t *attention_mask, const int32_t *position_ids, int64_t B, int64_t T,
                          float *loss, int64_t *n_tokens) {
    /* Training mode keeps what backward needs and computes the LM head's
     * gradient with the loss (its logits are never recomputed); evaluation
     * mode runs as inference. */
    int grad = m->training;
    TLM_TRY(tlm_arena_plan(m, B, T, grad));
    TLM_TRY(check_inputs(m, input_ids, position_ids, B, T));
    if (grad) TLM_TRY(tlm_model_plan_grads(m));
    tlm_arena *a = &m->arena;
    int64_t V = m->cfg.vocab_size, D = m->cfg.hidden_size;
    /* Hugging Face's shift: position t predicts labels[t+1]; the last
     * position of each row predicts nothing. */
    int64_t nv = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            int32_t y = t + 1 < T ? labels[b * T + t + 1] : -100;
            if (y != -100 && (y < 0 || y >= V))
                return tlm_fail(TLM_EINVAL, "labels[%lld, %lld] = %d is neither -100 nor in [0, %lld)",
                                (long long)b, (long long)(t + 1), y, (long long)V);
            if (y != -100) a->valid_rows[nv] = (int32_t)(b * T + t), a->tv[nv] = y, nv++;
        }
    if (nv == 0) return tlm_fail(TLM_EINVAL, "every label is -100: there is no token to compute a loss on");
    m->have_loss = 0;
    stage_inputs(m, input_ids, attention_mask, position_ids);
    a->dropout = grad;
    if (grad) a->dropout_key = m->rng_counter++;
    trunk_forward(m);
    for (int64_t i = 0; i < nv; i++) memcpy(a->hv + i * D, a->h_f + (int64_t)a->valid_rows[i] * D, (size_t)D * 4);
    float *dW = grad && tlm_pgrad(m, m->lm_head) ? m->head_pending : NULL;
    if (dW) memset(dW, 0, (size_t)(V * D) * sizeof(float));
    double nll = tlm_lmhead_ce(a->hv, a->tv, tlm_pdata(m, m->lm_head), nv, D, V, a->ce_chunk, grad ? a->dhv : NULL,
                               dW);
    m->n_valid = nv;
    m->last_loss = (float)(nll / (double)nv);
    m->have_loss = grad;
    *loss = m->last_loss;
    *n_tokens = nv;
    return TLM_OK;
}

/* Lowest layer whose parameters (or anything below it) need a gradient:
 * backward stops there. Returns -1 when the embedding is trainable. */
static int64_t lowest_needed_layer(tlm_model *m) {
    if (tlm_pgrad(m, m->embed)) return -1;
    const tlm_lora *lora = tlm_active_lora(m);
    for (int64_t l = 0; l < m->cfg.n_layers; l++) {
        for (int r = 0; r < P_LAYER_ROLES; r++)
            if (LG(l, r)) return l;
        for (int p = 0; lora && p < TLM_PROJ_COUNT; p++) {
            int64_t i = l * TLM_PROJ_COUNT + p;
            if (lora->ranks[i] && (tlm_pgrad(m, lora->a_idx[i]) || tlm_pgrad(m, lora->b_idx[i]))) return l;
        }
    }
    return m->cfg.n_layers;
}

static void layer_backward(tlm_model *m, int64_t l, int need_dx) {
    const tlm_config *c = &m->cfg;
    tlm_arena *a = &m->arena;
    int64_t N = a->B * a->T, D = c->hidden_size, F = c->intermediate_size, E = c->head_dim;
    int64_t H = c->n_heads, K = c->n_kv_heads;
    float eps = c->rms_norm_eps;
    /* a->dx holds d(loss)/d(x leaving this layer). */

    /* MLP: recompute n2 and the SwiGLU product. */
    tlm_rmsnorm_forward(a->h, a->a /*rstd, unused*/, a->xmid[l], LW(l, P_POST_NORM), N, D, eps);
    tlm_swiglu_forward(a->m, a->g[l], a->u[l], N * F);
    tlm_proj_backward(m, l, TLM_PROJ_DOWN, a->dm, 0.0f, a->dx, a->m, N);
    tlm_swiglu_backward(a->dg, a->du, a->dm, a->g[l], a->u[l], N * F);
    tlm_proj_backward(m, l, TLM_PROJ_GATE, a->dh, 0.0f, a->dg, a->h, N);
    tlm_proj_backward(m, l, TLM_PROJ_UP, a->dh, 1.0f, a->du, a->h, N);
    tlm_rmsnorm_backward(a->dx, 1.0f, LG(l, P_POST_NORM), a->dh, a->xmid[l], LW(l, P_POST_NORM), a->rstd2[l], N, D,
                         a->norm_scratch);
    /* a->dx now holds d/d(xmid). Attention: */
    tlm_proj_backward(m, l, TLM_PROJ_O, a->dout_attn, 0.0f, a->dx, a->o[l], N);
    tlm_attention_backward(a->dq, a->dk, a->dv, a->dout_attn, a->q[l], a->k[l], a->v[l], a->o[l], a->lse[l],
                           a->has_mask ? a->mask : NULL, a->B, a->T, H, K, E, a->dk_heads, a->dv_heads,
                           a->attn_scratch);
    tlm_rope_backward(a->dq, a->cos_t, a->sin_t, N, H, E);
    tlm_rope_backward(a->dk, a->cos_t, a->sin_t, N, K, E);
    tlm_rmsnorm_forward(a->h, a->a /*rstd, unused*/, a->xs[l], LW(l, P_IN_NORM), N, D, eps);
    /* Below the lowest trainable layer nothing needs d/dx; the input norm's
     * weight may still need d/d(n1). */
    int need_dh = need_dx || LG(l, P_IN_NORM) != NULL;
    float *dh = need_dh ? a->dh : NULL;
    tlm_proj_backward(m, l, TLM_PROJ_Q, dh, 0.0f, a->dq, a->h, N);
    tlm_proj_backward(m, l, TLM_PROJ_K, dh, 1.0f, a->dk, a->h, N);
    tlm_proj_backward(m, l, TLM_PROJ_V, dh, 1.0f, a->dv, a->h, N);
    if (need_dh)
        tlm_rmsnorm_backward(need_dx ? a->dx : NULL, 1.0f, LG(l, P_IN_NORM), a->dh, a->xs[l], LW(l, P_IN_NORM),
                             a->rstd1[l], N, D, a->norm_scratch);
}

tlm_status tlm_model_backward(tlm_model *m, float scale) {
    if (!m->have_loss)
        return tlm_fail(TLM_EINVAL, "backward() needs a loss() computed in training mode: call loss() first "
                                    "(and model.train() if it is in evaluation mode)");
    if (!isfinite(m->last_loss))
        return tlm_fail(TLM_ENUMERIC, "the loss is %f; refusing to backpropagate it", (double)m->last_loss);
    tlm_arena *a = &m->arena;
    const tlm_config *c = &m->cfg;
    int64_t N = a->B * a->T, D = c->hidden_size, nv = m->n_valid;
    float per_token = scale / (float)nv; /* d(scale * mean NLL) = per_token * d(sum NLL) */
    int64_t lowest = lowest_needed_layer(m);

    float *dW_head = tlm_pgrad(m, m->lm_head);
    if (dW_head) tlm_axpy(dW_head, per_token, m->head_pending, c->vocab_size * D);
    if (lowest < c->n_layers || tlm_pgrad(m, m->final_norm)) {
        memset(a->dh, 0, (size_t)(N * D) * sizeof(float));
        for (int64_t i = 0; i < nv; i++) {
            float *dst = a->dh + (int64_t)a->valid_rows[i] * D;
            const float *src = a->dhv + i * D;
            for (int64_t d = 0; d < D; d++) dst[d] = per_token * src[d];
        }
        tlm_rmsnorm_backward(a->dx, 0.0f, tlm_pgrad(m, m->final_norm), a->dh, a->xs[c->n_layers],
                             tlm_pdata(m, m->final_norm), a->rstd_f, N, D, a->norm_scratch);
        int64_t stop = lowest < 0 ? 0 : lowest;
        for (int64_t l = c->n_layers - 1; l >= stop; l--) {
            if (a->checkpointing) layer_forward(m, l, a->layer_out); /* rebuild what the layer saved */
            layer_backward(m, l, l > lowest);
        }
        float *dE = tlm_pgrad(m, m->embed);
        if (dE) tlm_embedding_backward(dE, a->ids, a->dx, N, D);
    }
    return TLM_OK;
}

void tlm_model_set_checkpointing(tlm_model *m, int on) {
    m->checkpointing = !!on;
    m->have_loss = 0;
}

int tlm_model_checkpointing(const tlm_model *m) { return m->checkpointing; }

void tlm_model_set_training(tlm_model *m, int on) { m->training = !!on; }

int tlm_model_training(const tlm_model *m) { return m->training; }
