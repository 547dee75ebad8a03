/* generate.c: incremental decoding with a KV cache.
 *
 * A session holds, per layer, the keys (after RoPE) and values of the
 * positions fed so far, for B rows, in one block planned at creation. Each
 * feed runs the decoder on the S new positions only: the prompt once
 * (prefill), then one token per step. Projections go through
 * tlm_proj_forward, so adapters and however the base weights are stored work
 * here as in forward(); activations use the model's arena, planned for
 * (B, S) in inference mode, so steps after the prefill allocate nothing.
 *
 * Full-attention layers cache every position (up to max_len). A
 * sliding-window layer (window W) only ever looks at the W most recent
 * positions, so when max_len is more than twice W its cache holds 2W
 * positions: once full, the last W-1 are moved to the front and the slots
 * after them reused, and a feed longer than W+1 positions (a long prompt)
 * runs in chunks of W+1. The attention op sees cache slots, not positions:
 * slot j of such a layer is position base + j, and passing it positions
 * relative to base leaves its causal and window tests unchanged.
 *
 * Rows are left-padded: row b's first start[b] positions are padding that no
 * query attends to, and its real tokens take RoPE positions 0, 1, ... from
 * there, as transformers derives position_ids from the attention mask. */
#include "core/internal.h"
#include "model/arena.h"
#include "model/decoder.h"

#include <omp.h>
#include <string.h>

struct tlm_gen {
    tlm_model *m;
    int64_t B, Tc;      /* rows; positions per row (max_len) */
    int64_t len;        /* positions fed so far (the same for every row) */
    int32_t *start;     /* [B] left padding of each row */
    int64_t Tw;         /* slots of a sliding-window layer's cache (Tc when not smaller) */
    int64_t base;       /* position of a sliding-window layer's slot 0 */
    int64_t chunk;      /* most positions one pass over the layers takes */
    int32_t *start_rel; /* [B] start relative to base */
    int32_t *chunk_ids; /* [B, chunk] one chunk of a long feed */
    size_t *offset;     /* [L] where layer l's cache starts in kc and vc */
    float *kc, *vc;     /* per layer [B, K, slots, E] keys (after RoPE) and values */
    float *scratch;     /* [nthreads * tlm_attention_decode_scratch_floats(Tc)] */
    int scratch_threads;
};

static int64_t slots(const tlm_gen *g, int64_t l) { return tlm_layer_sliding(&g->m->cfg, l) ? g->Tw : g->Tc; }

tlm_status tlm_gen_create(tlm_model *m, int64_t B, int64_t Tc, tlm_gen **out) {
    *out = NULL;
    if (B <= 0 || Tc <= 0)
        return tlm_fail(TLM_EINVAL, "a generation session needs B > 0 and max_len > 0, got B=%lld max_len=%lld",
                        (long long)B, (long long)Tc);
    const tlm_config *c = &m->cfg;
    tlm_gen *g = calloc(1, sizeof *g);
    if (!g) return tlm_fail(TLM_ENOMEM, "out of memory for a generation session");
    g->m = m, g->B = B, g->Tc = Tc;
    g->Tw = c->sliding_window > 0 && 2 * c->sliding_window < Tc ? 2 * c->sliding_window : Tc;
    g->chunk = g->Tw < Tc ? c->sliding_window + 1 : Tc; /* W-1 kept + W+1 new = 2W slots */
    g->offset = malloc((size_t)c->n_layers * sizeof *g->offset);
    size_t n = 0, per_slot = (size_t)(B * c->n_kv_heads * c->head_dim);
    for (int64_t l = 0; g->offset && l < c->n_layers; l++) g->offset[l] = n, n += per_slot * (size_t)slots(g, l);
    g->start = tlm_alloc((size_t)B * sizeof(int32_t));
    g->start_rel = tlm_alloc((size_t)B * sizeof(int32_t));
    g->chunk_ids = g->chunk < Tc ? tlm_alloc((size_t)(B * g->chunk) * sizeof(int32_t)) : NULL;
    g->kc = tlm_alloc(n * sizeof(float));
    g->vc = tlm_alloc(n * sizeof(float));
    if (!g->offset || !g->start || !g->start_rel || (g->chunk < Tc && !g->chunk_ids) || !g->kc || !g->vc) {
        tlm_gen_free(g);
        return tlm_fail(TLM_ENOMEM, "out of memory for a KV cache of B=%lld x %lld positions (%.1f MB)", (long long)B,
                        (long long)Tc, 2.0 * (double)n * sizeof(float) / 1e6);
    }
    *out = g;
    return TLM_OK;
}

void tlm_gen_free(tlm_gen *g) {
    if (!g) return;
    free(g->offset);
    tlm_free(g->start);
    tlm_free(g->start_rel);
    tlm_free(g->chunk_ids);
    tlm_free(g->kc);
    tlm_free(g->vc);
    tlm_free(g->scratch);
    free(g);
}

int64_t tlm_gen_length(const tlm_gen *g) { return g->len; }

tlm_status tlm_gen_begin(tlm_gen *g, const int32_t *n_pad) {
    for (int64_t b = 0; b < g->B; b++)
        if (n_pad[b] < 0 || n_pad[b] >= g->Tc)
            return tlm_fail(TLM_EINVAL, "left padding of row %lld is %d, outside [0, %lld)", (long long)b, n_pad[b],
                            (long long)g->Tc);
    memcpy(g->start, n_pad, (size_t)g->B * sizeof(int32_t));
    g->len = g->base = 0;
    return TLM_OK;
}

/* The attention scratch follows the thread count, which may change between
 * feeds; it only grows. */
static tlm_status plan_scratch(tlm_gen *g) {
    int nthreads = omp_get_max_threads();
    if (g->scratch && g->scratch_threads >= nthreads) return TLM_OK;
    tlm_free(g->scratch);
    g->scratch = tlm_alloc((size_t)nthreads * (size_t)tlm_attention_decode_scratch_floats(g->Tc) * sizeof(float));
    g->scratch_threads = g->scratch ? nthreads : 0;
    return g->scratch ? TLM_OK : tlm_fail(TLM_ENOMEM, "out of memory for attention scratch");
}

/* Makes room for S new positions in the sliding-window caches: when they
 * would overflow, the W-1 most recent positions (all a new query can see)
 * move to the front. */
static void slide(tlm_gen *g, int64_t S) {
    const tlm_config *c = &g->m->cfg;
    int64_t used = g->len - g->base;
    if (g->Tw == g->Tc || used + S <= g->Tw) return;
    int64_t keep = c->sliding_window - 1, drop = used - keep, E = c->head_dim;
    for (int64_t l = 0; l < c->n_layers; l++) {
        if (!tlm_layer_sliding(c, l)) continue;
        for (int which = 0; which < 2; which++) {
            float *cache = (which ? g->vc : g->kc) + g->offset[l];
            #pragma omp parallel for schedule(static) if (g->B * c->n_kv_heads * keep * E > 65536)
            for (int64_t row = 0; row < g->B * c->n_kv_heads; row++) {
                float *r = cache + (size_t)row * (size_t)(g->Tw * E);
                memmove(r, r + drop * E, (size_t)(keep * E) * sizeof(float));
            }
        }
    }
    g->base += drop;
}

/* Copies the new positions' k and v [B, S, K, E] into layer l's cache. */
static void store_kv(tlm_gen *g, int64_t l, const float *k, const float *v, int64_t S) {
    const tlm_config *c = &g->m->cfg;
    int64_t K = c->n_kv_heads, E = c->head_dim, B = g->B, T = slots(g, l);
    int64_t at = g->len - (T == g->Tc ? 0 : g->base);
    float *kc = g->kc + g->offset[l], *vc = g->vc + g->offset[l];
    #pragma omp parallel for collapse(2) schedule(static) if (B * K * S * E > 16384)
    for (int64_t b = 0; b < B; b++)
        for (int64_t kh = 0; kh < K; kh++)
            for (int64_t s = 0; s < S; s++) {
                size_t dst = ((size_t)(b * K + kh) * T + at + s) * E;
                size_t src = ((size_t)(b * S + s) * K + kh) * E;
                memcpy(kc + dst, k + src, (size_t)E * sizeof(float));
                memcpy(vc + dst, v + src, (size_t)E * sizeof(float));
            }
}

/* One decoder layer on the N = B*S new positions: decoder.c's layer with
 * attention reading (and first extending) the cache. */
static void layer_step(tlm_gen *g, int64_t l, int64_t S) {
    tlm_model *m = g->m;
    const tlm_config *c = &m->cfg;
    tlm_arena *a = &m->arena;
    tlm_layer_attention_inputs(m, l);
    store_kv(g, l, a->k[l], a->v[l], S);
    int64_t T = slots(g, l), base = T == g->Tc ? 0 : g->base;
    const int32_t *start = g->start;
    if (base) {
        for (int64_t b = 0; b < g->B; b++) g->start_rel[b] = (int32_t)tlm_max_i64(0, g->start[b] - base);
        start = g->start_rel;
    }
    tlm_attn_desc ad = tlm_layer_attn_desc(m, l);
    tlm_attention_decode(&ad, a->o[l], a->q[l], g->kc + g->offset[l], g->vc + g->offset[l], start, g->B, S,
                         g->len - base, T, c->n_heads, c->n_kv_heads, c->head_dim, g->scratch);
    tlm_layer_finish(m, l, a->xs[l + 1]);
}

/* Runs S <= chunk new positions through every layer; logits of each row's
 * last one when wanted. max_pos: the largest position of the whole feed
 * (LongRoPE's choice of factors is the feed's, not a chunk's). */
static tlm_status feed_chunk(tlm_gen *g, const int32_t *ids, int64_t S, int32_t max_pos, float *logits) {
    tlm_model *m = g->m;
    const tlm_config *c = &m->cfg;
    int64_t B = g->B, N = B * S, D = c->hidden_size;
    TLM_TRY(tlm_arena_plan(m, B, S, 0));
    tlm_arena *a = &m->arena;
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++) {
            int64_t p = g->len + s - g->start[b]; /* padding (p < 0) is never attended; any angle will do */
            a->pos[b * S + s] = (int32_t)(p < 0 ? 0 : p);
        }
    slide(g, S);
    tlm_decoder_rope_tables(m, N, max_pos);
    tlm_decoder_embed(m, ids, N);
    for (int64_t l = 0; l < c->n_layers; l++) layer_step(g, l, S);
    g->len += S;
    if (!logits) return TLM_OK;
    /* Only each row's last position is needed for the next token: gather
     * those rows into the (now free) norm buffer, then the final norm and
     * the LM head on B rows. */
    const float *xl = a->xs[c->n_layers];
    for (int64_t b = 0; b < B; b++) memcpy(a->h + b * D, xl + (b * S + S - 1) * D, (size_t)D * sizeof(float));
    tlm_decoder_head(m, a->h, B, logits);
    return TLM_OK;
}

tlm_status tlm_gen_feed(tlm_gen *g, const int32_t *ids, int64_t S, float *logits) {
    const tlm_config *c = &g->m->cfg;
    int64_t B = g->B, N = B * S, V = c->vocab_size;
    if (S <= 0) return tlm_fail(TLM_EINVAL, "feed needs at least one new position per row, got %lld", (long long)S);
    if (g->len + S > g->Tc)
        return tlm_fail(TLM_EINVAL, "the KV cache holds %lld positions; %lld are used and %lld more were fed",
                        (long long)g->Tc, (long long)g->len, (long long)S);
    for (int64_t n = 0; n < N; n++)
        if (ids[n] < 0 || ids[n] >= V)
            return tlm_fail(TLM_EINVAL, "token id %d (row %lld) is outside the vocabulary [0, %lld)", ids[n],
                            (long long)(n / S), (long long)V);
    TLM_TRY(plan_scratch(g));
    int32_t max_pos = 0;
    for (int64_t b = 0; b < B; b++)
        max_pos = (int32_t)tlm_max_i64(max_pos, g->len + S - 1 - g->start[b]);
    if (S <= g->chunk) return feed_chunk(g, ids, S, max_pos, logits);
    for (int64_t s0 = 0; s0 < S; s0 += g->chunk) {
        int64_t n = tlm_min_i64(g->chunk, S - s0);
        for (int64_t b = 0; b < B; b++) memcpy(g->chunk_ids + b * n, ids + b * S + s0, (size_t)n * sizeof(int32_t));
        TLM_TRY(feed_chunk(g, g->chunk_ids, n, max_pos, s0 + n == S ? logits : NULL));
    }
    return TLM_OK;
}
