/* proj.c: one projection of a decoder layer, y = x W^T + b, plus the active
 * LoRA adapter's low-rank path when it adapts this projection. Forward and
 * backward of the decoder (and later generation) go through here, so base
 * weight storage and adapters are handled in one place. */
#include "adapters/lora.h"
#include "core/internal.h"
#include "model/proj.h"

/* Dropout keys differ per step, layer and projection. */
static uint64_t dropout_key(const tlm_model *m, int64_t l, int p) {
    return (m->arena.dropout_key * (uint64_t)m->cfg.n_layers + (uint64_t)l) * (uint64_t)m->projs.n + (uint64_t)p;
}

/* The LoRA path's input: x itself, or dropout(x) in a training step. */
static const float *lora_input(tlm_model *m, const tlm_lora *a, int64_t l, int p, const float *x, int64_t n) {
    if (a->dropout == 0.0f || !m->arena.dropout) return x;
    tlm_dropout_forward(m->arena.lora_in, x, n, a->dropout, a->seed, dropout_key(m, l, p));
    return m->arena.lora_in;
}

/* y = x W^T + b with W quantized: each tile of rows of W is dequantized into
 * the arena and multiplied, so the whole f32 weight never exists. */
static void quantized_forward(tlm_model *m, const tlm_qweight *qw, float *y, const float *x, const float *bias,
                              int64_t N, int64_t in, int64_t out) {
    tlm_arena *a = &m->arena;
    for (int64_t r0 = 0; r0 < out; r0 += a->qtile_rows) {
        int64_t r1 = tlm_min_i64(r0 + a->qtile_rows, out);
        tlm_qweight_rows(qw, r0, r1, a->qtile, a->qblocks);
        tlm_gemm_xwt(y + r0, out, x, a->qtile, N, in, r1 - r0);
    }
    if (bias) tlm_add_bias(y, bias, N, out);
}

/* dx = beta dx + dy W, tile by tile (the weight is frozen: no dW). */
static void quantized_backward_dx(tlm_model *m, const tlm_qweight *qw, float *dx, float beta, const float *dy,
                                  int64_t N, int64_t in, int64_t out) {
    tlm_arena *a = &m->arena;
    for (int64_t r0 = 0; r0 < out; r0 += a->qtile_rows) {
        int64_t r1 = tlm_min_i64(r0 + a->qtile_rows, out);
        tlm_qweight_rows(qw, r0, r1, a->qtile, a->qblocks);
        tlm_gemm_dyw(dx, r0 == 0 ? beta : 1.0f, dy + r0, out, a->qtile, N, in, r1 - r0);
    }
}

void tlm_proj_forward(tlm_model *m, int64_t l, tlm_proj_role role, float *y, const float *x, int64_t N) {
    int p = m->projs.index[role];
    int64_t in = m->projs.in[p], out = m->projs.out[p];
    const tlm_param_slot *w = &m->params[m->layer_params[l][TLM_ROLE_PROJ_W(role)]];
    const float *bias = TLM_LW(m, l, TLM_ROLE_PROJ_B(role));
    if (w->qw)
        quantized_forward(m, w->qw, y, x, bias, N, in, out);
    else
        tlm_linear_forward(y, x, w->data, bias, N, in, out);
    const tlm_lora *a = tlm_active_lora(m);
    int64_t i = l * m->projs.n + p;
    if (!a || !a->ranks[i]) return;
    const float *xin = lora_input(m, a, l, p, x, N * in);
    tlm_lora_forward(y, m->arena.xa[i], xin, tlm_pdata(m, a->a_idx[i]), tlm_pdata(m, a->b_idx[i]), a->scales[i], N,
                     in, out, a->ranks[i]);
}

void tlm_proj_backward(tlm_model *m, int64_t l, tlm_proj_role role, float *dx, float beta, const float *dy,
                       const float *x, int64_t N) {
    int p = m->projs.index[role];
    int64_t in = m->projs.in[p], out = m->projs.out[p];
    int w = m->layer_params[l][TLM_ROLE_PROJ_W(role)], b = m->layer_params[l][TLM_ROLE_PROJ_B(role)];
    const tlm_qweight *qw = m->params[w].qw;
    if (qw) {
        if (dx) quantized_backward_dx(m, qw, dx, beta, dy, N, in, out);
        tlm_linear_backward(NULL, 0.0f, NULL, tlm_pgrad(m, b), dy, x, NULL, N, in, out);
    } else {
        tlm_linear_backward(dx, beta, tlm_pgrad(m, w), tlm_pgrad(m, b), dy, x, tlm_pdata(m, w), N, in, out);
    }
    const tlm_lora *a = tlm_active_lora(m);
    int64_t i = l * m->projs.n + p;
    if (!a || !a->ranks[i]) return;
    float *dA = tlm_pgrad(m, a->a_idx[i]), *dB = tlm_pgrad(m, a->b_idx[i]);
    if (!dA && !dB && !dx) return;
    tlm_arena *ar = &m->arena;
    const float *xin = lora_input(m, a, l, p, x, N * in); /* the forward's mask, regenerated */
    int dropped = xin != x;
    /* Without dropout the GEMM adds into dx; with it, the mask applies first. */
    tlm_lora_backward(dropped ? (dx ? ar->lora_dx : NULL) : dx, dropped ? 0.0f : 1.0f, dA, dB, dy, xin, ar->xa[i],
                      tlm_pdata(m, a->a_idx[i]), tlm_pdata(m, a->b_idx[i]), a->scales[i], N, in, out, a->ranks[i],
                      ar->lora_t);
    if (dx && dropped) tlm_dropout_backward_add(dx, ar->lora_dx, N * in, a->dropout, a->seed, dropout_key(m, l, p));
}
