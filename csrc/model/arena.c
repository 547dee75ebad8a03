/* arena.c: one block for all activations of a (B, T) step.
 *
 * The layout is computed by walking the same list twice: once to measure,
 * once to hand out pointers. The block only grows; a step with the same (or
 * smaller) shape reuses it, so the training loop never allocates. */
#include "adapters/lora.h"
#include "core/internal.h"
#include "model/arena.h"

#include <omp.h>

typedef struct {
    char *base; /* NULL while measuring */
    size_t used;
} bump;

static void *take(bump *b, size_t bytes) {
    size_t at = (b->used + 63) & ~(size_t)63;
    b->used = at + bytes;
    return b->base ? b->base + at : NULL;
}

#define TAKE_F(b, n) ((float *)take((b), (size_t)(n) * sizeof(float)))
#define TAKE_I(b, n) ((int32_t *)take((b), (size_t)(n) * sizeof(int32_t)))
#define TAKE_U8(b, n) ((uint8_t *)take((b), (size_t)(n)))

/* Arrays of per-layer pointers live in the arena too. */
static float **take_layer_ptrs(bump *b, int64_t count) { return (float **)take(b, (size_t)count * sizeof(float *)); }

/* The active adapter's x A^T per adapted projection (kept per layer in
 * training, one shared buffer otherwise) and its dropout/backward scratch. */
static void layout_lora(tlm_model *m, tlm_arena *a, bump *b) {
    const tlm_config *c = &m->cfg;
    const tlm_lora *lora = tlm_active_lora(m);
    int64_t N = a->B * a->T, P = m->projs.n, n = c->n_layers * P;
    a->lora_active = lora ? m->active : -1;
    a->xa = take_layer_ptrs(b, n);
    a->lora_in = a->lora_t = a->lora_dx = NULL;
    if (!lora) {
        if (b->base)
            for (int64_t i = 0; i < n; i++) a->xa[i] = NULL;
        return;
    }
    int64_t max_r = 0, max_in = m->projs.max_in;
    for (int64_t i = 0; i < n; i++) max_r = tlm_max_i64(max_r, lora->ranks[i]);
    /* x A^T must live until the projection's backward: per (layer,
     * projection) in training, per projection when layers are recomputed one
     * at a time, and one buffer in inference, where it is used at once. */
    float *shared = a->train ? NULL : TAKE_F(b, N * max_r);
    float *per_proj[TLM_PROJ_ROLES] = {0};
    if (a->train && a->checkpointing)
        for (int p = 0; p < P; p++) per_proj[p] = TAKE_F(b, N * max_r);
    for (int64_t i = 0; i < n; i++) {
        float *xa = !lora->ranks[i] ? NULL
                    : !a->train     ? shared
                    : a->checkpointing ? per_proj[i % P]
                                       : TAKE_F(b, N * lora->ranks[i]);
        if (b->base) a->xa[i] = xa;
    }
    if (a->train) {
        a->lora_t = TAKE_F(b, N * max_r);
        if (lora->dropout > 0.0f) {
            a->lora_in = TAKE_F(b, N * max_in);
            a->lora_dx = TAKE_F(b, N * max_in);
        }
    }
}

/* Room to dequantize a quantized weight a tile of rows at a time: about a
 * megabyte, at least 64 rows, so each tile's GEMM is still a big one. */
static void layout_quant(tlm_model *m, tlm_arena *a, bump *b) {
    a->qtile = a->qblocks = NULL;
    a->qtile_rows = 0;
    a->fake_quant = tlm_fake_quant_needs(m);
    a->fq_src = a->fq_grad = a->fq_x = a->fq_dx = NULL;
    a->fq_clip = a->fq_xclip = NULL;
    if (m->cfg.weights == TLM_WEIGHTS_F32 && !a->fake_quant) return;
    int64_t N = a->B * a->T, max_in = m->projs.max_in, max_elems = m->projs.max_elems;
    a->qtile_rows = tlm_max_i64(64, ((int64_t)1 << 18) / max_in);
    a->qtile = TAKE_F(b, a->qtile_rows * max_in);
    a->qblocks = TAKE_F(b, max_elems / 64 + 2);
    /* Fake quantization: a tile of merged rows, its clip mask and (training)
     * its gradient; for torchao's 8da4w also the fake-quantized input. */
    if (a->fake_quant & TLM_FQ_WEIGHTS) {
        a->fq_src = TAKE_F(b, a->qtile_rows * max_in);
        a->fq_clip = TAKE_U8(b, a->qtile_rows * max_in);
        if (a->train) a->fq_grad = TAKE_F(b, a->qtile_rows * max_in);
    }
    if (a->fake_quant & TLM_FQ_ACTS) {
        a->fq_x = TAKE_F(b, N * max_in);
        a->fq_xclip = TAKE_U8(b, N * max_in);
        if (a->train) a->fq_dx = TAKE_F(b, N * max_in);
    }
}

/* A per-layer tensor that only some configs have: NULL pointers otherwise. */
#define PER_LAYER(field, cond, count)                                     \
    do {                                                                  \
        float *t_ = (cond) ? TAKE_F(b, count) : NULL;                     \
        if (b->base)                                                      \
            for (int64_t l = s; l < L; l += slots) a->field[l] = t_;      \
    } while (0)

static void layout(tlm_model *m, tlm_arena *a, bump *b) {
    const tlm_config *c = &m->cfg;
    int64_t N = a->B * a->T, D = c->hidden_size, F = c->intermediate_size, L = c->n_layers, H = c->n_heads;
    int64_t QD = H * c->head_dim, KD = c->n_kv_heads * c->head_dim, R = c->rotary_dim;
    int64_t fused = tlm_max_i64(c->fused_qkv ? QD + 2 * KD : 0, c->fused_gate_up ? 2 * F : 0);
    int qk = c->qk_norm != TLM_QK_NORM_NONE, sandwich = c->sandwich_norms, seq = !c->parallel_residual;
    /* saved tensors per layer, or one shared set (inference, or checkpointing
     * where backward recomputes each layer into it) */
    int64_t slots = a->train && !a->checkpointing ? L : 1;

    a->ids = TAKE_I(b, N);
    a->mask = TAKE_I(b, N);
    a->pos = TAKE_I(b, N);
    for (int kind = 0; kind < 2; kind++) {
        a->cos_t[kind] = TAKE_F(b, N * R / 2 + 1);
        a->sin_t[kind] = TAKE_F(b, N * R / 2 + 1);
    }

    a->xs = take_layer_ptrs(b, L + 1);
    float ***per_layer[] = {&a->st_attn, &a->st_mlp, &a->q_in, &a->k_in, &a->st_q, &a->st_k, &a->q, &a->k, &a->v,
                            &a->o, &a->lse, &a->attn_raw, &a->st_attn_post, &a->xmid, &a->g, &a->u, &a->mlp_raw,
                            &a->st_mlp_post};
    for (size_t i = 0; i < sizeof per_layer / sizeof *per_layer; i++) *per_layer[i] = take_layer_ptrs(b, L);
    float *xs_block = TAKE_F(b, (a->train ? L + 1 : 2) * N * D);
    for (int64_t s = 0; s < slots; s++) {
        PER_LAYER(st_attn, 1, 2 * N);
        PER_LAYER(st_mlp, seq, 2 * N);
        PER_LAYER(q_in, qk, N * QD);
        PER_LAYER(k_in, qk, N * KD);
        PER_LAYER(st_q, qk, 2 * N * H);
        PER_LAYER(st_k, qk, 2 * N * c->n_kv_heads);
        PER_LAYER(q, 1, N * QD);
        PER_LAYER(k, 1, N * KD);
        PER_LAYER(v, 1, N * KD);
        PER_LAYER(o, 1, N * QD);
        PER_LAYER(lse, 1, a->B * H * a->T);
        PER_LAYER(attn_raw, sandwich, N * D);
        PER_LAYER(st_attn_post, sandwich, 2 * N);
        PER_LAYER(xmid, seq, N * D);
        PER_LAYER(g, 1, N * F);
        PER_LAYER(u, c->gated, N * F);
        PER_LAYER(mlp_raw, sandwich, N * D);
        PER_LAYER(st_mlp_post, sandwich, 2 * N);
    }
    if (b->base)
        for (int64_t l = 0; l <= L; l++) a->xs[l] = xs_block + (a->train ? l : l % 2) * N * D;
    a->st_f = TAKE_F(b, 2 * N);
    a->h_f = TAKE_F(b, N * D);

    a->h = TAKE_F(b, N * D);
    a->a = TAKE_F(b, N * D);
    a->mo = TAKE_F(b, N * D);
    a->m = TAKE_F(b, N * F);
    a->fused = fused ? TAKE_F(b, N * fused) : NULL;
    a->stats = TAKE_F(b, 2 * N * H);
    a->attn_scratch = TAKE_F(b, (int64_t)a->nthreads * tlm_attention_scratch_floats(a->T));
    int64_t norm_scratch = tlm_max_i64(tlm_norm_scratch_floats(&m->norm, D),
                                       tlm_max_i64(tlm_norm_scratch_floats(&m->q_norm, c->head_dim),
                                                   tlm_norm_scratch_floats(&m->k_norm, c->head_dim)));
    a->norm_scratch = TAKE_F(b, (int64_t)a->nthreads * norm_scratch);
    a->valid_rows = TAKE_I(b, N);
    a->tv = TAKE_I(b, N);
    a->hv = TAKE_F(b, N * D);
    a->ce_chunk = TAKE_F(b, tlm_lmhead_ce_rows(c->vocab_size) * c->vocab_size);

    layout_lora(m, a, b);
    layout_quant(m, a, b);

    a->layer_out = a->train && a->checkpointing ? TAKE_F(b, N * D) : NULL;
    a->dx = a->dh = a->dy = a->dq = a->dk = a->dv = a->dout_attn = a->dq_in = a->dk_in = NULL;
    a->dk_heads = a->dv_heads = a->dg = a->du = a->dm = a->dfused = a->dhv = a->dresid = NULL;
    if (a->train) {
        a->dx = TAKE_F(b, N * D);
        a->dh = TAKE_F(b, N * D);
        a->dy = TAKE_F(b, N * D);
        a->dq = TAKE_F(b, N * QD);
        a->dk = TAKE_F(b, N * KD);
        a->dv = TAKE_F(b, N * KD);
        a->dout_attn = TAKE_F(b, N * QD);
        if (qk) {
            a->dq_in = TAKE_F(b, N * QD);
            a->dk_in = TAKE_F(b, N * KD);
        }
        a->dk_heads = TAKE_F(b, N * QD);
        a->dv_heads = TAKE_F(b, N * QD);
        a->dg = TAKE_F(b, N * F);
        a->du = TAKE_F(b, N * F);
        a->dm = TAKE_F(b, N * F);
        a->dfused = fused ? TAKE_F(b, N * fused) : NULL;
        a->dresid = c->resid_dropout > 0.0f ? TAKE_F(b, N * D) : NULL;
        a->dhv = TAKE_F(b, N * D);
    }
}

tlm_status tlm_arena_plan(tlm_model *m, int64_t B, int64_t T, int train) {
    if (B <= 0 || T <= 0)
        return tlm_fail(TLM_EINVAL, "batch and sequence length must be > 0, got B=%lld T=%lld", (long long)B,
                        (long long)T);
    if (m->blocks_pending)
        return tlm_fail(TLM_EINVAL, "%lld projection weights stored as ggml blocks have not been loaded yet",
                        (long long)m->blocks_pending);
    tlm_arena *a = &m->arena;
    int nthreads = omp_get_max_threads();
    const tlm_lora *lora = tlm_active_lora(m);
    int checkpointing = train && m->checkpointing;
    if (lora && lora->dropout > 0.0f && m->n_fake_quant)
        return tlm_fail(TLM_EUNSUPPORTED,
                        "LoRA dropout (%g) with fake quantization: QAT fake-quantizes the merged weight W + s B A, "
                        "which leaves no separate low-rank path to drop out; use lora dropout 0",
                        (double)lora->dropout);
    if (m->arena_block && a->B == B && a->T == T && a->train == train && a->nthreads == nthreads &&
        a->lora_active == (lora ? m->active : -1) && a->checkpointing == checkpointing &&
        a->fake_quant == tlm_fake_quant_needs(m))
        return TLM_OK;
    tlm_arena next = {.B = B, .T = T, .train = train, .checkpointing = checkpointing, .nthreads = nthreads};
    bump measure = {NULL, 0};
    layout(m, &next, &measure);
    if (measure.used > m->arena_capacity) {
        tlm_free(m->arena_block);
        m->arena_block = tlm_alloc(measure.used);
        m->arena_capacity = m->arena_block ? measure.used : 0;
        if (!m->arena_block) {
            m->arena.B = 0;
            return tlm_fail(TLM_ENOMEM, "out of memory for activations of B=%lld T=%lld (%.1f MB)", (long long)B,
                            (long long)T, (double)measure.used / 1e6);
        }
    }
    bump place = {m->arena_block, 0};
    layout(m, &next, &place);
    next.bytes = place.used;
    *a = next;
    m->have_loss = 0;
    return TLM_OK;
}

void tlm_arena_release(tlm_model *m) {
    tlm_free(m->arena_block);
    m->arena_block = NULL;
    m->arena_capacity = 0;
}
