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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cursor c = {data, size};
    tlm_config cfg = {0};
    uint8_t flags = size ? data[0] : 0;
    cfg.arch = (tlm_arch)(flags & 3);
    cfg.weights = (tlm_weight_storage)((flags >> 2) & 3);
    cfg.rope_type = (tlm_rope_type)((flags >> 4) & 3);
    cfg.tie_word_embeddings = (flags >> 6) & 1;
    cfg.qkv_bias = cfg.o_bias = cfg.mlp_bias = flags >> 7;
    if (size) c.p++, c.n--;
    cfg.vocab_size = take_int(&c);
    cfg.hidden_size = take_int(&c);
    cfg.intermediate_size = take_int(&c);
    cfg.n_layers = take_int(&c);
    cfg.n_heads = take_int(&c);
    cfg.n_kv_heads = take_int(&c);
    cfg.head_dim = take_int(&c);
    cfg.rope_original_max_position = take_int(&c);
    cfg.rms_norm_eps = take_float(&c, 1e-5f);
    cfg.rope_theta = take_float(&c, 10000.f);
    cfg.rope_factor = take_float(&c, 8.f);
    cfg.rope_low_freq_factor = take_float(&c, 1.f);
    cfg.rope_high_freq_factor = take_float(&c, 4.f);

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
