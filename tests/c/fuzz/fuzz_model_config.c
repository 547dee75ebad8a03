/* fuzz_model_config.c: tlm_config_check and tlm_model_create on arbitrary
 * configurations (config.json is parsed in Python, tinylm/config.py; what
 * reaches C is this struct, and C must refuse any combination of values
 * whose sizes would overflow or be absurd before allocating).
 *
 * Each integer field is one byte when below 0xF0 (the small dimensions
 * that build real models quickly), else the 8 bytes that follow, raw (to
 * reach the extremes); each float is 4 raw bytes. A config the check
 * accepts is built when its parameters take at most 64 MB (a larger one is
 * valid but would only exercise malloc), and the model's parameter table
 * must then add up to exactly what the check said. */
#include "fuzz_common.h"

typedef struct { const uint8_t *p; size_t n; } cursor;

static int64_t take_int(cursor *c) {
    if (!c->n) return 1;
    uint8_t b = *c->p++;
    c->n--;
    if (b < 0xF0 || c->n < 8) return b;
    int64_t v;
    memcpy(&v, c->p, 8);
    c->p += 8;
    c->n -= 8;
    return v;
}

static float take_float(cursor *c, float dflt) {
    if (c->n < 4) return dflt;
    float v;
    memcpy(&v, c->p, 4);
    c->p += 4;
    c->n -= 4;
    return v;
}

/* One rope kind: its type and numbers, longrope factors all one value. */
static void take_rope(cursor *c, tlm_rope *r, uint8_t type) {
    r->type = (tlm_rope_type)(type & 3);
    r->theta = take_float(c, 10000.f);
    r->factor = take_float(c, 8.f);
    r->low_freq_factor = take_float(c, 1.f);
    r->high_freq_factor = take_float(c, 4.f);
    r->original_max_position = take_int(c);
    r->attention_factor = take_float(c, 1.f);
    float f = take_float(c, 1.f);
    for (int i = 0; i < TLM_MAX_ROPE_PAIRS; i++) r->short_factor[i] = r->long_factor[i] = f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cursor c = {data, size};
    static tlm_config cfg;
    memset(&cfg, 0, sizeof cfg);
    /* two bytes of switches, then the dimensions, then the numbers */
    uint16_t sw = 0;
    for (int i = 0; i < 2 && c.n; i++, c.p++, c.n--) sw |= (uint16_t)(*c.p << (8 * i));
    cfg.names = (tlm_names)(sw & 7); /* past the last: refused */
    cfg.weights = (tlm_weight_storage)((sw >> 3) & 3);
    cfg.tie_word_embeddings = (sw >> 5) & 1;
    cfg.qkv_bias = cfg.o_bias = cfg.mlp_bias = (sw >> 6) & 1;
    cfg.norm_kind = (sw >> 7) & 1;
    cfg.norm_bias = cfg.qk_norm_bias = cfg.lm_head_bias = (sw >> 8) & 1;
    cfg.sandwich_norms = (sw >> 9) & 1;
    cfg.parallel_residual = (sw >> 10) & 1;
    cfg.qk_norm = (sw >> 11) & 3;
    cfg.gated = !((sw >> 13) & 1);
    cfg.fused_qkv = cfg.fused_gate_up = (sw >> 14) & 1;
    cfg.act = (sw >> 15) & 1;
    cfg.vocab_size = take_int(&c);
    cfg.hidden_size = take_int(&c);
    cfg.intermediate_size = take_int(&c);
    cfg.n_layers = take_int(&c);
    cfg.n_heads = take_int(&c);
    cfg.n_kv_heads = take_int(&c);
    cfg.head_dim = take_int(&c);
    cfg.rotary_dim = take_int(&c);
    cfg.sliding_window = take_int(&c);
    cfg.padding_idx = take_int(&c) - 1;
    cfg.norm_eps = take_float(&c, 1e-5f);
    cfg.norm_offset = take_float(&c, 0.f);
    cfg.attn_scale = take_float(&c, 0.125f);
    cfg.attn_softcap = take_float(&c, 0.f);
    cfg.final_softcap = take_float(&c, 0.f);
    cfg.embed_scale = take_float(&c, 1.f);
    uint8_t rope_types = c.n ? (c.n--, *c.p++) : 0;
    take_rope(&c, &cfg.rope[0], rope_types);
    take_rope(&c, &cfg.rope[1], rope_types >> 2);
    /* per-layer flags: a repeating pattern from one byte */
    uint8_t pattern = c.n ? (c.n--, *c.p++) : 0;
    for (int64_t l = 0; l < TLM_MAX_LAYERS; l++) cfg.layer_flags[l] = (pattern >> (2 * (l % 4))) & 3;

    uint64_t bytes;
    tlm_status st = tlm_config_check(&cfg, &bytes);
    if (st != TLM_OK) {
        if (st != TLM_EINVAL) fuzz_expect_failure(TLM_OK, "tlm_config_check");
        fuzz_expect_failure(st, "tlm_config_check");
        return 0;
    }
    if (bytes > (64u << 20)) return 0;
    tlm_model *m;
    st = tlm_model_create(&cfg, &m);
    if (st != TLM_OK) {
        fprintf(stderr, "a config tlm_config_check accepted failed to build: %s\n", tlm_last_error());
        abort();
    }
    uint64_t numel = 0;
    for (int64_t i = 0; i < tlm_model_n_params(m); i++) {
        tlm_param p;
        if (tlm_model_param(m, i, &p) != TLM_OK) abort();
        numel += ((uint64_t)p.numel + 15) & ~(uint64_t)15;
    }
    if (numel * sizeof(float) != bytes) {
        fprintf(stderr, "tlm_config_check said %llu bytes, the model has %llu\n", (unsigned long long)bytes,
                (unsigned long long)(numel * sizeof(float)));
        abort();
    }
    tlm_model_free(m);
    return 0;
}
