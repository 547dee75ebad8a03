/* decoder.c: the decoder composed from ops, its block set by tlm_config.
 *
 *   x = embed_scale * embed(ids)
 *   per layer:  n1 = norm(x)
 *               q, k, v = projections of n1 (or one fused qkv, split)
 *               q, k = qk_norm(q), qk_norm(k) per head       (Qwen3, Gemma 3, StableLM)
 *               q, k = rope(q), rope(k) on the first R dims   (unless a no-RoPE layer)
 *               a = o_proj(attn(q, k, v))  scale, soft-cap, window per layer
 *               a = post_norm(a)                              (Gemma 2/3)
 *     sequential:  x' = x + a;  y = mlp(norm(x'));  out = x' + post_norm(y)
 *     parallel:    out = x + a + mlp(n1)                      (Phi-2, StableLM)
 *               mlp(h) = down(act(gate(h)) * up(h)), or fc2(act(fc1(h)))
 *   logits = softcap(lm_head(norm(x)) + bias)
 *
 * Backward walks the same list in reverse. Norm outputs and the activation
 * product are recomputed rather than stored (cheap, and it saves [N,D] and
 * [N,F] tensors per layer). */
#include "adapters/lora.h"
#include "core/internal.h"
#include "model/arena.h"
#include "model/decoder.h"
#include "model/fake_tables.h"
#include "model/params.h"
#include "model/proj.h"

#include <math.h>
#include <string.h>

#define W(l, role) TLM_LW(m, l, role)
#define G(l, role) TLM_LG(m, l, role)
#define NORM_W(l, r) W(l, TLM_ROLE_NORM_W(r))
#define NORM_B(l, r) W(l, TLM_ROLE_NORM_B(r))

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

void tlm_decoder_rope_tables(tlm_model *m, int64_t N, int32_t max_pos) {
    const tlm_config *c = &m->cfg;
    tlm_arena *a = &m->arena;
    if (max_pos < 0)
        for (int64_t n = 0; n < N; n++) max_pos = a->pos[n] > max_pos ? a->pos[n] : max_pos;
    int used[2] = {0, 0};
    for (int64_t l = 0; l < c->n_layers; l++)
        if (tlm_layer_rope(c, l)) used[tlm_layer_rope_kind(c, l)] = 1;
    for (int kind = 0; kind < 2; kind++) {
        if (!used[kind]) continue;
        const tlm_rope *r = &c->rope[kind];
        /* longrope: the long factors once the positions pass the original
         * context, as transformers decides from max(position_ids) + 1 */
        int use_long = r->type == TLM_ROPE_LONGROPE && (int64_t)max_pos + 1 > r->original_max_position;
        tlm_rope_tables(a->cos_t[kind], a->sin_t[kind], a->pos, m->inv_freq[kind][use_long], N, c->rotary_dim,
                        r->attention_factor);
    }
}

/* Copies the inputs into the arena (backward needs them after the caller's
 * buffers are gone) and builds the RoPE tables. */
static void stage_inputs(tlm_model *m, const int32_t *ids, const int32_t *mask, const int32_t *pos) {
    tlm_arena *a = &m->arena;
    int64_t N = a->B * a->T;
    memcpy(a->ids, ids, (size_t)N * sizeof(int32_t));
    /* No mask is all ones. Attention always gets one: GCC vectorises its
     * "mask_b && !mask_b[j]" tests into AVX2 masked loads, which never fault
     * on a real CPU when every lane is off (a NULL mask) but do under
     * qemu-user, the emulator the older-CPU tests run in. */
    for (int64_t n = 0; n < N; n++) a->mask[n] = mask ? mask[n] != 0 : 1;
    for (int64_t n = 0; n < N; n++) a->pos[n] = pos ? pos[n] : (int32_t)(n % a->T);
    tlm_decoder_rope_tables(m, N, -1);
}

/* Every compute path starts here: the fake-quantized copies of the
 * embedding and head (QAT) are brought up to date first. */
void tlm_decoder_embed(tlm_model *m, const int32_t *ids, int64_t N) {
    tlm_fq_tables_refresh(m);
    tlm_embedding_forward(m->arena.xs[0], ids, tlm_fq_table_weight(m, m->embed), N, m->cfg.hidden_size,
                          m->cfg.embed_scale);
}

tlm_attn_desc tlm_layer_attn_desc(const tlm_model *m, int64_t l) {
    const tlm_config *c = &m->cfg;
    return (tlm_attn_desc){.scale = c->attn_scale, .softcap = c->attn_softcap,
                           .window = tlm_layer_sliding(c, l) ? c->sliding_window : 0};
}

/* norm(x) of layer l's norm r into out, its stats into st. */
static void norm_forward(tlm_model *m, int64_t l, tlm_norm_role r, float *out, float *st, const float *x, int64_t N) {
    tlm_norm_forward(&m->norm, out, st, x, NORM_W(l, r), NORM_B(l, r), N, m->cfg.hidden_size);
}

/* Backward of layer l's norm r: dx = beta dx + d/dx (dx may be NULL). */
static void norm_backward(tlm_model *m, int64_t l, tlm_norm_role r, float *dx, float beta, const float *dout,
                          const float *x, const float *st, int64_t N) {
    tlm_norm_backward(&m->norm, dx, beta, G(l, TLM_ROLE_NORM_W(r)), G(l, TLM_ROLE_NORM_B(r)), dout, x, NORM_W(l, r),
                      st, N, m->cfg.hidden_size, m->arena.norm_scratch);
}

/* Rows [N, w0 + w1 + w2] of a fused projection's output into three [N, w*] tensors, or back. */
static void split3(const float *src, int64_t N, float *d0, int64_t w0, float *d1, int64_t w1, float *d2, int64_t w2) {
    int64_t ld = w0 + w1 + w2;
    #pragma omp parallel for schedule(static) if (N * ld > 65536)
    for (int64_t n = 0; n < N; n++) {
        memcpy(d0 + n * w0, src + n * ld, (size_t)w0 * sizeof(float));
        memcpy(d1 + n * w1, src + n * ld + w0, (size_t)w1 * sizeof(float));
        if (w2) memcpy(d2 + n * w2, src + n * ld + w0 + w1, (size_t)w2 * sizeof(float));
    }
}

static void join3(float *dst, int64_t N, const float *s0, int64_t w0, const float *s1, int64_t w1, const float *s2,
                  int64_t w2) {
    int64_t ld = w0 + w1 + w2;
    #pragma omp parallel for schedule(static) if (N * ld > 65536)
    for (int64_t n = 0; n < N; n++) {
        memcpy(dst + n * ld, s0 + n * w0, (size_t)w0 * sizeof(float));
        memcpy(dst + n * ld + w0, s1 + n * w1, (size_t)w1 * sizeof(float));
        if (w2) memcpy(dst + n * ld + w0 + w1, s2 + n * w2, (size_t)w2 * sizeof(float));
    }
}

/* Residual dropout (Phi's resid_pdrop) in a training step: the masks are
 * keyed by (step, layer, sublayer), so backward regenerates them. */
#define RESID_SEED UINT64_C(0x7265736964706472) /* apart from LoRA's masks, keyed by the adapter's seed */
enum { RESID_ATTN, RESID_MLP };

static uint64_t resid_key(const tlm_model *m, int64_t l, int branch) {
    return (m->arena.dropout_key * (uint64_t)m->cfg.n_layers + (uint64_t)l) * 2 + (uint64_t)branch;
}

static int resid_dropout_on(const tlm_model *m) { return m->arena.dropout && m->cfg.resid_dropout > 0.0f; }

static void resid_dropout(tlm_model *m, int64_t l, int branch, float *y) {
    if (resid_dropout_on(m))
        tlm_dropout_forward(y, y, m->arena.B * m->arena.T * m->cfg.hidden_size, m->cfg.resid_dropout, RESID_SEED,
                            resid_key(m, l, branch));
}

/* dy through the sublayer's dropout (dy itself when there is none). */
static const float *resid_dropout_grad(tlm_model *m, int64_t l, int branch, const float *dy) {
    if (!resid_dropout_on(m)) return dy;
    tlm_arena *a = &m->arena;
    int64_t n = a->B * a->T * m->cfg.hidden_size;
    memset(a->dresid, 0, (size_t)n * sizeof(float));
    tlm_dropout_backward_add(a->dresid, dy, n, m->cfg.resid_dropout, RESID_SEED, resid_key(m, l, branch));
    return a->dresid;
}

/* A decoder layer in two halves around attention, shared with generate.c
 * (which attends over its KV cache instead): */

/* h = norm(x); q, k, v from h; q/k norms; RoPE on q and k. */
void tlm_layer_attention_inputs(tlm_model *m, int64_t l) {
    const tlm_config *c = &m->cfg;
    tlm_arena *a = &m->arena;
    int64_t N = a->B * a->T, E = c->head_dim, H = c->n_heads, K = c->n_kv_heads;
    int qk = c->qk_norm != TLM_QK_NORM_NONE;
    norm_forward(m, l, TLM_NORM_ATTN, a->h, a->st_attn[l], a->xs[l], N);
    float *q = qk ? a->q_in[l] : a->q[l], *k = qk ? a->k_in[l] : a->k[l];
    if (c->fused_qkv) {
        tlm_proj_forward(m, l, TLM_PROJ_QKV, a->fused, a->h, N);
        split3(a->fused, N, q, H * E, k, K * E, a->v[l], K * E);
    } else {
        tlm_proj_forward(m, l, TLM_PROJ_Q, q, a->h, N);
        tlm_proj_forward(m, l, TLM_PROJ_K, k, a->h, N);
        tlm_proj_forward(m, l, TLM_PROJ_V, a->v[l], a->h, N);
    }
    if (qk) {
        tlm_norm_forward(&m->q_norm, a->q[l], a->st_q[l], q, NORM_W(l, TLM_NORM_Q), NORM_B(l, TLM_NORM_Q), N * H, E);
        tlm_norm_forward(&m->k_norm, a->k[l], a->st_k[l], k, NORM_W(l, TLM_NORM_K), NORM_B(l, TLM_NORM_K), N * K, E);
    }
    if (tlm_layer_rope(c, l)) {
        int kind = tlm_layer_rope_kind(c, l);
        tlm_rope_forward(a->q[l], a->cos_t[kind], a->sin_t[kind], N, H, E, c->rotary_dim);
        tlm_rope_forward(a->k[l], a->cos_t[kind], a->sin_t[kind], N, K, E, c->rotary_dim);
    }
}

/* The MLP on h [N,D] into a->mo (post-normed when the config has it). */
static void mlp_forward(tlm_model *m, int64_t l, const float *h, int64_t N) {
    const tlm_config *c = &m->cfg;
    tlm_arena *a = &m->arena;
    int64_t F = c->intermediate_size;
    if (!c->gated) {
        tlm_proj_forward(m, l, TLM_PROJ_UP, a->g[l], h, N); /* fc1 */
    } else if (c->fused_gate_up) {
        tlm_proj_forward(m, l, TLM_PROJ_GATE_UP, a->fused, h, N);
        split3(a->fused, N, a->g[l], F, a->u[l], F, NULL, 0);
    } else {
        tlm_proj_forward(m, l, TLM_PROJ_GATE, a->g[l], h, N);
        tlm_proj_forward(m, l, TLM_PROJ_UP, a->u[l], h, N);
    }
    tlm_act_forward((tlm_act)c->act, a->m, a->g[l], c->gated ? a->u[l] : NULL, N * F);
    if (c->sandwich_norms) {
        tlm_proj_forward(m, l, TLM_PROJ_DOWN, a->mlp_raw[l], a->m, N);
        norm_forward(m, l, TLM_NORM_MLP_POST, a->mo, a->st_mlp_post[l], a->mlp_raw[l], N);
    } else {
        tlm_proj_forward(m, l, TLM_PROJ_DOWN, a->mo, a->m, N);
    }
    resid_dropout(m, l, RESID_MLP, a->mo);
}

/* From the attention output o[l]: o_proj, the residual and the MLP; the
 * layer's output goes to `out`. a->h still holds n1 (the parallel MLP's input). */
void tlm_layer_finish(tlm_model *m, int64_t l, float *out) {
    const tlm_config *c = &m->cfg;
    tlm_arena *a = &m->arena;
    int64_t N = a->B * a->T, D = c->hidden_size;
    if (c->sandwich_norms) {
        tlm_proj_forward(m, l, TLM_PROJ_O, a->attn_raw[l], a->o[l], N);
        norm_forward(m, l, TLM_NORM_ATTN_POST, a->a, a->st_attn_post[l], a->attn_raw[l], N);
    } else {
        tlm_proj_forward(m, l, TLM_PROJ_O, a->a, a->o[l], N);
    }
    resid_dropout(m, l, RESID_ATTN, a->a);
    if (c->parallel_residual) {
        mlp_forward(m, l, a->h, N);
        /* transformers' order: (attn + mlp) + residual */
        tlm_add(out, a->a, a->mo, N * D);
        tlm_add(out, out, a->xs[l], N * D);
    } else {
        tlm_add(a->xmid[l], a->xs[l], a->a, N * D);
        norm_forward(m, l, TLM_NORM_MLP, a->h, a->st_mlp[l], a->xmid[l], N);
        mlp_forward(m, l, a->h, N);
        tlm_add(out, a->xmid[l], a->mo, N * D);
    }
}

/* Writes the layer's output to `out` (xs[l+1], or scratch when backward
 * recomputes a checkpointed layer). */
static void layer_forward(tlm_model *m, int64_t l, float *out) {
    const tlm_config *c = &m->cfg;
    tlm_arena *a = &m->arena;
    tlm_attn_desc ad = tlm_layer_attn_desc(m, l);
    tlm_layer_attention_inputs(m, l);
    tlm_attention_forward(&ad, a->o[l], a->lse[l], a->q[l], a->k[l], a->v[l], a->mask, a->B,
                          a->T, c->n_heads, c->n_kv_heads, c->head_dim, a->attn_scratch);
    tlm_layer_finish(m, l, out);
}

/* Embedding, every layer, final norm into a->h_f. */
static void trunk_forward(tlm_model *m) {
    tlm_arena *a = &m->arena;
    const tlm_config *c = &m->cfg;
    int64_t N = a->B * a->T;
    tlm_decoder_embed(m, a->ids, N);
    for (int64_t l = 0; l < c->n_layers; l++) layer_forward(m, l, a->xs[l + 1]);
    tlm_norm_forward(&m->norm, a->h_f, a->st_f, a->xs[c->n_layers], tlm_pdata(m, m->final_norm),
                     tlm_pdata(m, m->final_norm_b), N, c->hidden_size);
}

tlm_status tlm_decoder_hidden(tlm_model *m, const int32_t *input_ids, const int32_t *attention_mask,
                              const int32_t *position_ids, int64_t B, int64_t T) {
    TLM_TRY(tlm_arena_plan(m, B, T, 0));
    TLM_TRY(check_inputs(m, input_ids, position_ids, B, T));
    m->arena.dropout = 0;
    stage_inputs(m, input_ids, attention_mask, position_ids);
    trunk_forward(m);
    return TLM_OK;
}

void tlm_decoder_head(tlm_model *m, const float *x, int64_t N, float *logits) {
    const tlm_config *c = &m->cfg;
    tlm_arena *a = &m->arena;
    tlm_norm_forward(&m->norm, a->h_f, a->st_f, x, tlm_pdata(m, m->final_norm), tlm_pdata(m, m->final_norm_b), N,
                     c->hidden_size);
    tlm_linear_forward(logits, a->h_f, tlm_fq_table_weight(m, m->lm_head), tlm_pdata(m, m->lm_head_b), N,
                       c->hidden_size, c->vocab_size);
    if (c->final_softcap > 0.0f) tlm_softcap_forward(logits, N * c->vocab_size, c->final_softcap);
}

tlm_status tlm_model_forward(tlm_model *m, const int32_t *input_ids, const int32_t *attention_mask,
                             const int32_t *position_ids, int64_t B, int64_t T, float *logits) {
    TLM_TRY(tlm_arena_plan(m, B, T, 0));
    TLM_TRY(check_inputs(m, input_ids, position_ids, B, T));
    m->arena.dropout = 0;
    stage_inputs(m, input_ids, attention_mask, position_ids);
    tlm_decoder_embed(m, m->arena.ids, B * T);
    for (int64_t l = 0; l < m->cfg.n_layers; l++) layer_forward(m, l, m->arena.xs[l + 1]);
    tlm_decoder_head(m, m->arena.xs[m->cfg.n_layers], B * T, logits);
    return TLM_OK;
}

/* The rows with a target (Hugging Face's shift: position t predicts
 * labels[t+1]; a row's last position predicts nothing) into valid_rows and
 * tv; their count into *nv. */
static tlm_status gather_targets(tlm_model *m, const int32_t *labels, int64_t B, int64_t T, int64_t *nv) {
    tlm_arena *a = &m->arena;
    int64_t V = m->cfg.vocab_size, n = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            int32_t y = t + 1 < T ? labels[b * T + t + 1] : -100;
            if (y != -100 && (y < 0 || y >= V))
                return tlm_fail(TLM_EINVAL, "labels[%lld, %lld] = %d is neither -100 nor in [0, %lld)",
                                (long long)b, (long long)(t + 1), y, (long long)V);
            if (y != -100) a->valid_rows[n] = (int32_t)(b * T + t), a->tv[n] = y, n++;
        }
    if (n == 0) return tlm_fail(TLM_EINVAL, "every label is -100: there is no token to compute a loss on");
    *nv = n;
    return TLM_OK;
}

tlm_status tlm_decoder_loss_forward(tlm_model *m, const int32_t *input_ids, const int32_t *labels,
                                    const int32_t *attention_mask, const int32_t *position_ids, int64_t B, int64_t T,
                                    int64_t *nv) {
    /* Training mode keeps what backward needs; evaluation mode runs as inference. */
    int grad = m->training;
    TLM_TRY(tlm_arena_plan(m, B, T, grad));
    TLM_TRY(check_inputs(m, input_ids, position_ids, B, T));
    if (grad) TLM_TRY(tlm_model_plan_grads(m));
    TLM_TRY(gather_targets(m, labels, B, T, nv));
    tlm_arena *a = &m->arena;
    int64_t D = m->cfg.hidden_size;
    m->have_loss = 0;
    stage_inputs(m, input_ids, attention_mask, position_ids);
    a->dropout = grad;
    if (grad) a->dropout_key = m->rng_counter++;
    trunk_forward(m);
    for (int64_t i = 0; i < *nv; i++) memcpy(a->hv + i * D, a->h_f + (int64_t)a->valid_rows[i] * D, (size_t)D * 4);
    return TLM_OK;
}

tlm_head tlm_decoder_lm_head(tlm_model *m) {
    return (tlm_head){.W = tlm_fq_table_weight(m, m->lm_head), .bias = tlm_pdata(m, m->lm_head_b),
                      .softcap = m->cfg.final_softcap, .D = m->cfg.hidden_size, .V = m->cfg.vocab_size};
}

float *tlm_decoder_head_grad(tlm_model *m, float **db) {
    int grad = m->training;
    float *dW = grad && tlm_pgrad(m, m->lm_head) ? m->head_pending : NULL;
    *db = grad && tlm_pgrad(m, m->lm_head_b) ? m->head_b_pending : NULL;
    if (dW) memset(dW, 0, (size_t)(m->cfg.vocab_size * m->cfg.hidden_size) * sizeof(float));
    if (*db) memset(*db, 0, (size_t)m->cfg.vocab_size * sizeof(float));
    return dW;
}

void tlm_decoder_loss_done(tlm_model *m, int64_t nv, float loss) {
    m->n_valid = nv;
    m->last_loss = loss;
    m->have_loss = m->training;
}

tlm_status tlm_model_loss(tlm_model *m, const int32_t *input_ids, const int32_t *labels,
                          const int32_t *attention_mask, const int32_t *position_ids, int64_t B, int64_t T,
                          float *loss, int64_t *n_tokens) {
    int64_t nv;
    TLM_TRY(tlm_decoder_loss_forward(m, input_ids, labels, attention_mask, position_ids, B, T, &nv));
    tlm_arena *a = &m->arena;
    /* the LM head's gradient is computed with the loss: its logits are never recomputed */
    float *db, *dW = tlm_decoder_head_grad(m, &db);
    tlm_head head = tlm_decoder_lm_head(m);
    double nll = tlm_lmhead_ce(a->hv, a->tv, head.W, head.bias, head.softcap, nv, head.D, head.V, a->ce_chunk,
                               m->training ? a->dhv : NULL, dW, db);
    tlm_decoder_loss_done(m, nv, (float)(nll / (double)nv));
    *loss = m->last_loss;
    *n_tokens = nv;
    return TLM_OK;
}

/* Lowest layer whose parameters (or anything below it) need a gradient:
 * backward stops there. Returns -1 when the embedding is trainable. */
static int64_t lowest_needed_layer(tlm_model *m) {
    if (tlm_pgrad(m, m->embed)) return -1;
    const tlm_lora *lora = tlm_active_lora(m);
    int P = m->projs.n;
    for (int64_t l = 0; l < m->cfg.n_layers; l++) {
        for (int r = 0; r < TLM_LAYER_ROLES; r++)
            if (G(l, r)) return l;
        for (int p = 0; lora && p < P; p++) {
            int64_t i = l * P + p;
            if (lora->ranks[i] && (tlm_pgrad(m, lora->a_idx[i]) || tlm_pgrad(m, lora->b_idx[i]))) return l;
        }
    }
    return m->cfg.n_layers;
}

/* Does anything at or below the layer's input norm need d/d(norm output)?
 * (The norm's own parameters, or the layers below through dx.) */
static int norm_needs_grad(tlm_model *m, int64_t l, tlm_norm_role r, int need_dx) {
    return need_dx || G(l, TLM_ROLE_NORM_W(r)) || G(l, TLM_ROLE_NORM_B(r));
}

/* The MLP's backward from dy = d/d(MLP output) to dh = beta dh + d/d(its input h);
 * h is the MLP's input (recomputed by the caller). dh NULL: input grad not needed. */
static void mlp_backward(tlm_model *m, int64_t l, const float *dy, const float *h, float *dh, float beta) {
    const tlm_config *c = &m->cfg;
    tlm_arena *a = &m->arena;
    int64_t N = a->B * a->T, F = c->intermediate_size;
    if (c->sandwich_norms) {
        norm_backward(m, l, TLM_NORM_MLP_POST, a->dy, 0.0f, dy, a->mlp_raw[l], a->st_mlp_post[l], N);
        dy = a->dy;
    }
    tlm_act_forward((tlm_act)c->act, a->m, a->g[l], c->gated ? a->u[l] : NULL, N * F);
    tlm_proj_backward(m, l, TLM_PROJ_DOWN, a->dm, 0.0f, dy, a->m, N);
    tlm_act_backward((tlm_act)c->act, a->dg, a->du, a->dm, a->g[l], c->gated ? a->u[l] : NULL, N * F);
    if (!c->gated) {
        tlm_proj_backward(m, l, TLM_PROJ_UP, dh, beta, a->dg, h, N);
    } else if (c->fused_gate_up) {
        join3(a->dfused, N, a->dg, F, a->du, F, NULL, 0);
        tlm_proj_backward(m, l, TLM_PROJ_GATE_UP, dh, beta, a->dfused, h, N);
    } else {
        tlm_proj_backward(m, l, TLM_PROJ_GATE, dh, beta, a->dg, h, N);
        tlm_proj_backward(m, l, TLM_PROJ_UP, dh, dh ? 1.0f : 0.0f, a->du, h, N);
    }
}

/* Attention's backward from dy = d/d(attention block output) to
 * dh = beta dh + d/d(n1), with h = n1 (recomputed by the caller). */
static void attention_backward(tlm_model *m, int64_t l, const float *dy, const float *h, float *dh, float beta) {
    const tlm_config *c = &m->cfg;
    tlm_arena *a = &m->arena;
    int64_t N = a->B * a->T, E = c->head_dim, H = c->n_heads, K = c->n_kv_heads;
    if (c->sandwich_norms) {
        norm_backward(m, l, TLM_NORM_ATTN_POST, a->dy, 0.0f, dy, a->attn_raw[l], a->st_attn_post[l], N);
        dy = a->dy;
    }
    tlm_attn_desc ad = tlm_layer_attn_desc(m, l);
    tlm_proj_backward(m, l, TLM_PROJ_O, a->dout_attn, 0.0f, dy, a->o[l], N);
    tlm_attention_backward(&ad, a->dq, a->dk, a->dv, a->dout_attn, a->q[l], a->k[l], a->v[l], a->o[l], a->lse[l],
                           a->mask, a->B, a->T, H, K, E, a->dk_heads, a->dv_heads,
                           a->attn_scratch);
    if (tlm_layer_rope(c, l)) {
        int kind = tlm_layer_rope_kind(c, l);
        tlm_rope_backward(a->dq, a->cos_t[kind], a->sin_t[kind], N, H, E, c->rotary_dim);
        tlm_rope_backward(a->dk, a->cos_t[kind], a->sin_t[kind], N, K, E, c->rotary_dim);
    }
    float *dq = a->dq, *dk = a->dk;
    if (c->qk_norm != TLM_QK_NORM_NONE) {
        tlm_norm_backward(&m->q_norm, a->dq_in, 0.0f, G(l, TLM_ROLE_NORM_W(TLM_NORM_Q)), G(l, TLM_ROLE_NORM_B(TLM_NORM_Q)),
                          a->dq, a->q_in[l], NORM_W(l, TLM_NORM_Q), a->st_q[l], N * H, E, a->norm_scratch);
        tlm_norm_backward(&m->k_norm, a->dk_in, 0.0f, G(l, TLM_ROLE_NORM_W(TLM_NORM_K)), G(l, TLM_ROLE_NORM_B(TLM_NORM_K)),
                          a->dk, a->k_in[l], NORM_W(l, TLM_NORM_K), a->st_k[l], N * K, E, a->norm_scratch);
        dq = a->dq_in, dk = a->dk_in;
    }
    if (c->fused_qkv) {
        join3(a->dfused, N, dq, H * E, dk, K * E, a->dv, K * E);
        tlm_proj_backward(m, l, TLM_PROJ_QKV, dh, beta, a->dfused, h, N);
    } else {
        tlm_proj_backward(m, l, TLM_PROJ_Q, dh, beta, dq, h, N);
        tlm_proj_backward(m, l, TLM_PROJ_K, dh, dh ? 1.0f : 0.0f, dk, h, N);
        tlm_proj_backward(m, l, TLM_PROJ_V, dh, dh ? 1.0f : 0.0f, a->dv, h, N);
    }
}

/* a->dx holds d(loss)/d(layer output) and leaves with d/d(layer input)
 * when need_dx. */
static void layer_backward(tlm_model *m, int64_t l, int need_dx) {
    const tlm_config *c = &m->cfg;
    tlm_arena *a = &m->arena;
    int64_t N = a->B * a->T;
    int need_dh = norm_needs_grad(m, l, TLM_NORM_ATTN, need_dx);
    float *dh = need_dh ? a->dh : NULL;
    if (c->parallel_residual) {
        /* out = x + attn(n1) + mlp(n1): both branches add into d/d(n1) */
        norm_forward(m, l, TLM_NORM_ATTN, a->h, a->stats, a->xs[l], N);
        mlp_backward(m, l, resid_dropout_grad(m, l, RESID_MLP, a->dx), a->h, dh, 0.0f);
        attention_backward(m, l, resid_dropout_grad(m, l, RESID_ATTN, a->dx), a->h, dh, 1.0f);
    } else {
        norm_forward(m, l, TLM_NORM_MLP, a->h, a->stats, a->xmid[l], N);
        mlp_backward(m, l, resid_dropout_grad(m, l, RESID_MLP, a->dx), a->h, a->dh, 0.0f);
        /* d/d(xmid) = residual + through the MLP's norm */
        norm_backward(m, l, TLM_NORM_MLP, a->dx, 1.0f, a->dh, a->xmid[l], a->st_mlp[l], N);
        norm_forward(m, l, TLM_NORM_ATTN, a->h, a->stats, a->xs[l], N);
        attention_backward(m, l, resid_dropout_grad(m, l, RESID_ATTN, a->dx), a->h, dh, 0.0f);
    }
    /* Below the lowest trainable layer nothing needs d/dx; the input norm's
     * parameters may still need d/d(n1). */
    if (need_dh) norm_backward(m, l, TLM_NORM_ATTN, need_dx ? a->dx : NULL, 1.0f, a->dh, a->xs[l], a->st_attn[l], N);
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

    float *dW_head = tlm_pgrad(m, m->lm_head), *db_head = tlm_pgrad(m, m->lm_head_b);
    if (dW_head) tlm_axpy(dW_head, per_token, m->head_pending, c->vocab_size * D);
    if (db_head) tlm_axpy(db_head, per_token, m->head_b_pending, c->vocab_size);
    if (lowest < c->n_layers || tlm_pgrad(m, m->final_norm) || tlm_pgrad(m, m->final_norm_b)) {
        memset(a->dh, 0, (size_t)(N * D) * sizeof(float));
        for (int64_t i = 0; i < nv; i++) {
            float *dst = a->dh + (int64_t)a->valid_rows[i] * D;
            const float *src = a->dhv + i * D;
            for (int64_t d = 0; d < D; d++) dst[d] = per_token * src[d];
        }
        tlm_norm_backward(&m->norm, a->dx, 0.0f, tlm_pgrad(m, m->final_norm), tlm_pgrad(m, m->final_norm_b), a->dh,
                          a->xs[c->n_layers], tlm_pdata(m, m->final_norm), a->st_f, N, D, a->norm_scratch);
        int64_t stop = lowest < 0 ? 0 : lowest;
        for (int64_t l = c->n_layers - 1; l >= stop; l--) {
            if (a->checkpointing) layer_forward(m, l, a->layer_out); /* rebuild what the layer saved */
            layer_backward(m, l, l > lowest);
        }
        float *dE = tlm_pgrad(m, m->embed);
        if (dE) {
            /* the padding row takes no gradient from its lookups (it may
             * still get the tied LM head's, added above) */
            if (c->padding_idx >= 0)
                for (int64_t n = 0; n < N; n++)
                    if (a->ids[n] == c->padding_idx) memset(a->dx + n * D, 0, (size_t)D * sizeof(float));
            tlm_embedding_backward(dE, a->ids, a->dx, N, D, c->embed_scale);
        }
    }
    tlm_fq_tables_mask_grads(m);
    return TLM_OK;
}

void tlm_model_set_checkpointing(tlm_model *m, int on) {
    m->checkpointing = !!on;
    m->have_loss = 0;
}

int tlm_model_checkpointing(const tlm_model *m) { return m->checkpointing; }

void tlm_model_set_training(tlm_model *m, int on) { m->training = !!on; }

int tlm_model_training(const tlm_model *m) { return m->training; }
