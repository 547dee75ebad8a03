/* proj.c: one projection of a decoder layer, y = x W^T + b, plus the active
 * LoRA adapter's low-rank path when it adapts this projection. Forward and
 * backward of the decoder and generation go through here, so how the base
 * weight is stored (or fake-quantized for QAT) and adapters are handled in
 * one place. */
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

/* Where a projection's weight comes from; the one place that decides.
 *   FLOAT   the f32 parameter: whole-weight GEMMs, dW when trainable
 *   STORED  NF4 / int8 / ggml blocks: dequantized a tile of rows at a time
 *           right before each GEMM (the whole f32 weight never exists); frozen
 *   FAKE    f32 through its fake quantizer, a tile of rows at a time: FQ(W),
 *           or FQ(W + s B A) when the active adapter adapts the projection
 *           (then the LoRA path is inside the weight, not beside it) */
typedef enum { SOURCE_FLOAT, SOURCE_STORED, SOURCE_FAKE } weight_source;

static weight_source source_of(const tlm_model *m, const tlm_param_slot *w) {
    if (w->qw) return SOURCE_STORED;
    return w->fq.kind != TLM_FQ_NONE && !m->fake_quant_off ? SOURCE_FAKE : SOURCE_FLOAT;
}

/* Rows [r0, r1) of the weight the GEMMs use, into the arena's tile. For a
 * fake-quantized weight *src gets the rows before quantization (W's own, or
 * the merged ones) and the arena's fq_clip their mask, which the gradient
 * needs. */
static const float *weight_rows(tlm_model *m, int64_t l, int p, const tlm_param_slot *w, int64_t r0, int64_t r1,
                                const float **src) {
    tlm_arena *a = &m->arena;
    int64_t in = m->projs.in[p];
    if (w->qw) {
        tlm_qweight_rows(w->qw, r0, r1, a->qtile, a->qblocks);
        return a->qtile;
    }
    const float *rows = w->data + r0 * in;
    const tlm_lora *lora = tlm_active_lora(m);
    int64_t i = l * m->projs.n + p;
    if (lora && lora->ranks[i]) {
        int64_t R = lora->ranks[i];
        tlm_lora_merge_rows(a->fq_src, rows, tlm_pdata(m, lora->a_idx[i]), tlm_pdata(m, lora->b_idx[i]) + r0 * R,
                            lora->scales[i], r1 - r0, in, R);
        rows = a->fq_src;
    }
    *src = rows;
    tlm_fake_quantize(&w->fq, rows, r1 - r0, in, a->qtile, a->fq_clip); /* checked when it was set */
    return a->qtile;
}

/* y = x W^T + b, W a tile of rows at a time. */
static void tiled_forward(tlm_model *m, int64_t l, int p, const tlm_param_slot *w, float *y, const float *x,
                          const float *bias, int64_t N) {
    tlm_arena *a = &m->arena;
    int64_t in = m->projs.in[p], out = m->projs.out[p];
    const float *src;
    if (w->fq.act_int8 && source_of(m, w) == SOURCE_FAKE) {
        tlm_fq_act_forward(x, N, in, a->fq_x, a->fq_xclip);
        x = a->fq_x;
    }
    for (int64_t r0 = 0; r0 < out; r0 += a->qtile_rows) {
        int64_t r1 = tlm_min_i64(r0 + a->qtile_rows, out);
        tlm_gemm_xwt(y + r0, out, x, weight_rows(m, l, p, w, r0, r1, &src), N, in, r1 - r0);
    }
    if (bias) tlm_add_bias(y, bias, N, out);
}

/* dx = beta dx + dy W, a tile at a time; for a fake-quantized weight also
 * the gradient of the rows before quantization (the quantizer's backward of
 * dy^T x), into dW or, through the merge, into the adapter's A and B. */
static void tiled_backward(tlm_model *m, int64_t l, int p, const tlm_param_slot *w, float *dx, float beta,
                           const float *dy, const float *x, int64_t N) {
    tlm_arena *a = &m->arena;
    int64_t in = m->projs.in[p], out = m->projs.out[p], i = l * m->projs.n + p;
    int fake = source_of(m, w) == SOURCE_FAKE, acts = fake && w->fq.act_int8;
    const tlm_lora *lora = fake ? tlm_active_lora(m) : NULL;
    int adapted = lora && lora->ranks[i];
    float *dW = fake ? tlm_pgrad(m, (int)(w - m->params)) : NULL;
    float *dA = adapted ? tlm_pgrad(m, lora->a_idx[i]) : NULL, *dB = adapted ? tlm_pgrad(m, lora->b_idx[i]) : NULL;
    const float *xq = x; /* the input the GEMMs saw */
    float *dxin = dx, dx_beta = beta;
    if (acts) { /* the fake-quantized input, again; dx passes back through its quantizer */
        tlm_fq_act_forward(x, N, in, a->fq_x, a->fq_xclip);
        xq = a->fq_x;
        dxin = dx ? a->fq_dx : NULL;
        dx_beta = 0.0f;
    }
    for (int64_t r0 = 0; r0 < out; r0 += a->qtile_rows) {
        int64_t r1 = tlm_min_i64(r0 + a->qtile_rows, out), rows = r1 - r0;
        const float *src = NULL, *tile = weight_rows(m, l, p, w, r0, r1, &src);
        if (dxin) tlm_gemm_dyw(dxin, r0 == 0 ? dx_beta : 1.0f, dy + r0, out, tile, N, in, rows);
        if (!dW && !dA && !dB) continue;
        tlm_gemm_dytx(a->fq_grad, dy + r0, out, xq, N, in, rows);
        tlm_fake_quantize_backward(&w->fq, src, a->fq_clip, a->fq_grad, rows, in, a->fq_grad);
        if (dW) tlm_axpy(dW + r0 * in, 1.0f, a->fq_grad, rows * in);
        if (adapted)
            tlm_lora_merged_grads(dA, dB ? dB + r0 * lora->ranks[i] : NULL, a->fq_grad, tlm_pdata(m, lora->a_idx[i]),
                                  tlm_pdata(m, lora->b_idx[i]) + r0 * lora->ranks[i], lora->scales[i], rows, in,
                                  lora->ranks[i]);
    }
    if (acts && dx) tlm_fq_act_backward(x, a->fq_xclip, a->fq_dx, N, in, dx, beta);
}

void tlm_proj_forward(tlm_model *m, int64_t l, tlm_proj_role role, float *y, const float *x, int64_t N) {
    int p = m->projs.index[role];
    int64_t in = m->projs.in[p], out = m->projs.out[p];
    const tlm_param_slot *w = &m->params[m->layer_params[l][TLM_ROLE_PROJ_W(role)]];
    const float *bias = TLM_LW(m, l, TLM_ROLE_PROJ_B(role));
    weight_source source = source_of(m, w);
    if (source == SOURCE_FLOAT)
        tlm_linear_forward(y, x, w->data, bias, N, in, out);
    else
        tiled_forward(m, l, p, w, y, x, bias, N);
    const tlm_lora *a = tlm_active_lora(m);
    int64_t i = l * m->projs.n + p;
    if (!a || !a->ranks[i] || source == SOURCE_FAKE) return;
    const float *xin = lora_input(m, a, l, p, x, N * in);
    tlm_lora_forward(y, m->arena.xa[i], xin, tlm_pdata(m, a->a_idx[i]), tlm_pdata(m, a->b_idx[i]), a->scales[i], N,
                     in, out, a->ranks[i]);
}

void tlm_proj_backward(tlm_model *m, int64_t l, tlm_proj_role role, float *dx, float beta, const float *dy,
                       const float *x, int64_t N) {
    int p = m->projs.index[role];
    int64_t in = m->projs.in[p], out = m->projs.out[p];
    int w = m->layer_params[l][TLM_ROLE_PROJ_W(role)], b = m->layer_params[l][TLM_ROLE_PROJ_B(role)];
    weight_source source = source_of(m, &m->params[w]);
    if (source == SOURCE_FLOAT) {
        tlm_linear_backward(dx, beta, tlm_pgrad(m, w), tlm_pgrad(m, b), dy, x, tlm_pdata(m, w), N, in, out);
    } else {
        tiled_backward(m, l, p, &m->params[w], dx, beta, dy, x, N);
        tlm_linear_backward(NULL, 0.0f, NULL, tlm_pgrad(m, b), dy, x, NULL, N, in, out);
    }
    if (source == SOURCE_FAKE) return;
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
