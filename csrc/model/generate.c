/* generate.c: incremental decoding with a KV cache.
 *
 * A session holds, per layer, the keys (after RoPE) and values of every
 * position fed so far, for B rows of up to Tc positions, in one block planned
 * at creation. Each feed runs the decoder on the S new positions only: the
 * prompt once (prefill), then one token per step. Projections go through
 * tlm_proj_forward, so adapters and however the base weights are stored work
 * here as in forward(); activations use the model's arena, planned for
 * (B, S) in inference mode, so steps after the prefill allocate nothing.
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
    int64_t B, Tc;      /* rows; cache positions per row */
    int64_t len;        /* positions fed so far (the same for every row) */
    int32_t *start;     /* [B] left padding of each row */
    float *kc, *vc;     /* [L, B, K, Tc, E] keys (after RoPE) and values */
    float *scratch;     /* [nthreads * tlm_attention_decode_scratch_floats(Tc)] */
    int scratch_threads;
};

static size_t cache_floats(const tlm_gen *g) {
    const tlm_config *c = &g->m->cfg;
    return (size_t)(c->n_layers * g->B * c->n_kv_heads * g->Tc * c->head_dim);
}

tlm_status tlm_gen_create(tlm_model *m, int64_t B, int64_t Tc, tlm_gen **out) {
    *out = NULL;
    if (B <= 0 || Tc <= 0)
        return tlm_fail(TLM_EINVAL, "a generation session needs B > 0 and max_len > 0, got B=%lld max_len=%lld",
                        (long long)B, (long long)Tc);
    tlm_gen *g = calloc(1, sizeof *g);
    if (!g) return tlm_fail(TLM_ENOMEM, "out of memory for a generation session");
    g->m = m, g->B = B, g->Tc = Tc;
    size_t n = cache_floats(g);
    g->start = tlm_alloc((size_t)B * sizeof(int32_t));
    g->kc = tlm_alloc(n * sizeof(float));
    g->vc = tlm_alloc(n * sizeof(float));
    if (!g->start || !g->kc || !g->vc) {
        tlm_gen_free(g);
        return tlm_fail(TLM_ENOMEM, "out of memory for a KV cache of B=%lld x %lld positions (%.1f MB)", (long long)B,
                        (long long)Tc, 2.0 * (double)n * sizeof(float) / 1e6);
    }
    *out = g;
    return TLM_OK;
}

void tlm_gen_free(tlm_gen *g) {
    if (!g) return;
    tlm_free(g->start);
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
    g->len = 0;
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

/* Copies the new positions' k and v [B, S, K, E] into layer l's cache. */
static void store_kv(tlm_gen *g, int64_t l, const float *k, const float *v, int64_t S) {
    const tlm_config *c = &g->m->cfg;
    int64_t K = c->n_kv_heads, E = c->head_dim, B = g->B;
    float *kc = g->kc + (size_t)l * B * K * g->Tc * E, *vc = g->vc + (size_t)l * B * K * g->Tc * E;
    #pragma omp parallel for collapse(2) schedule(static) if (B * K * S * E > 16384)
    for (int64_t b = 0; b < B; b++)
        for (int64_t kh = 0; kh < K; kh++)
            for (int64_t s = 0; s < S; s++) {
                size_t dst = ((size_t)(b * K + kh) * g->Tc + g->len + s) * E;
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
    int64_t K = c->n_kv_heads, E = c->head_dim;
    tlm_layer_attention_inputs(m, l);
    store_kv(g, l, a->k[l], a->v[l], S);
    size_t layer = (size_t)l * g->B * K * g->Tc * E;
    tlm_attn_desc ad = tlm_layer_attn_desc(m, l);
    tlm_attention_decode(&ad, a->o[l], a->q[l], g->kc + layer, g->vc + layer, g->start, g->B, S, g->len, g->Tc,
                         c->n_heads, K, E, g->scratch);
    tlm_layer_finish(m, l, a->xs[l + 1]);
}

tlm_status tlm_gen_feed(tlm_gen *g, const int32_t *ids, int64_t S, float *logits) {
    tlm_model *m = g->m;
    const tlm_config *c = &m->cfg;
    int64_t B = g->B, N = B * S, D = c->hidden_size, V = c->vocab_size;
    if (S <= 0) return tlm_fail(TLM_EINVAL, "feed needs at least one new position per row, got %lld", (long long)S);
    if (g->len + S > g->Tc)
        return tlm_fail(TLM_EINVAL, "the KV cache holds %lld positions; %lld are used and %lld more were fed",
                        (long long)g->Tc, (long long)g->len, (long long)S);
    for (int64_t n = 0; n < N; n++)
        if (ids[n] < 0 || ids[n] >= V)
            return tlm_fail(TLM_EINVAL, "token id %d (row %lld) is outside the vocabulary [0, %lld)", ids[n],
                            (long long)(n / S), (long long)V);
    TLM_TRY(plan_scratch(g));
    TLM_TRY(tlm_arena_plan(m, B, S, 0));
    tlm_arena *a = &m->arena;
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++) {
            int64_t p = g->len + s - g->start[b]; /* padding (p < 0) is never attended; any angle will do */
            a->pos[b * S + s] = (int32_t)(p < 0 ? 0 : p);
        }
    tlm_decoder_rope_tables(m, N);
    tlm_decoder_embed(m, ids, N);
    for (int64_t l = 0; l < c->n_layers; l++) layer_step(g, l, S);
    g->len += S;

    /* Only each row's last position is needed for the next token: gather
     * those rows into the (now free) norm buffer, then the final norm and
     * the LM head on B rows. */
    const float *xl = a->xs[c->n_layers];
    for (int64_t b = 0; b < B; b++) memcpy(a->h + b * D, xl + (b * S + S - 1) * D, (size_t)D * sizeof(float));
    if (logits) tlm_decoder_head(m, a->h, B, logits);
    return TLM_OK;
}
