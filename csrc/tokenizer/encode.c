/* encode.c: the encoding pipeline (see tok.h) and its batch form, which
 * spreads texts over the OpenMP threads with one workspace per thread. */
#include "tokenizer/tok.h"

#include <stdio.h>
#include <string.h>

#define NOMEM tlm_fail(TLM_ENOMEM, "tokenizer: out of memory")

/* Pre-tokenizes a normalized piece and runs BPE over its words. */
static tlm_status encode_words(const tlm_tok *t, tok_ws *ws, const char *s, size_t n, size_t head, tlm_tok_ids *out) {
    tok_words w;
    TLM_TRY(tok_pretokenize(t->pre, t->n_pre, &t->bl, s, n, head, ws, &w));
    for (size_t i = 0; i < w.spans->n; i++)
        TLM_TRY(tok_bpe_word(&t->bpe, w.base + w.spans->p[i].off, w.spans->p[i].len, ws, out));
    return TLM_OK;
}

/* A segment of raw text between non-normalized added tokens; at_start: it
 * begins the input, so its first character is the head (see tok_span). */
static tlm_status encode_segment(const tlm_tok *t, tok_ws *ws, const char *s, size_t n, int at_start, tlm_tok_ids *out) {
    size_t head = at_start && n > 0 ? tok_utf8_len((unsigned char)s[0]) : 0;
    if (t->n_norm > 0) {
        TLM_TRY(tok_normalize(t->norm, t->n_norm, s, n, head, ws));
        s = ws->norm.p;
        n = ws->norm.n;
        head = ws->norm_head;
    }
    if (n == 0) return TLM_OK;
    if (t->norm_match.n == 0) return encode_words(t, ws, s, n, head, out);
    if (tok_matcher_split(&t->norm_match, t->added, s, n, &ws->norm_segs) < 0) return NOMEM;
    for (size_t i = 0; i < ws->norm_segs.n; i++) {
        const tok_seg *g = &ws->norm_segs.p[i];
        size_t len = g->end - g->start;
        if (g->added >= 0) {
            if (tok_ids_push(out, t->added[g->added].id) < 0) return NOMEM;
        } else {
            TLM_TRY(encode_words(t, ws, s + g->start, len, tok_sub_head(head, g->start, len), out));
        }
    }
    return TLM_OK;
}

static tlm_status encode_ws(const tlm_tok *t, tok_ws *ws, const char *s, size_t n, int add_special, tlm_tok_ids *out) {
    out->n = 0;
    if (!tok_utf8_valid(s, n)) return tlm_fail(TLM_EINVAL, "tokenizer: the text is not valid UTF-8");
    if (add_special && tok_ids_put(out, t->prefix, t->n_prefix) < 0) return NOMEM;
    if (t->raw_match.n == 0) {
        TLM_TRY(encode_segment(t, ws, s, n, 1, out));
    } else {
        if (tok_matcher_split(&t->raw_match, t->added, s, n, &ws->raw_segs) < 0) return NOMEM;
        for (size_t i = 0; i < ws->raw_segs.n; i++) {
            const tok_seg *g = &ws->raw_segs.p[i];
            if (g->added >= 0) {
                if (tok_ids_push(out, t->added[g->added].id) < 0) return NOMEM;
            } else {
                TLM_TRY(encode_segment(t, ws, s + g->start, g->end - g->start, g->start == 0, out));
            }
        }
    }
    if (add_special && tok_ids_put(out, t->suffix, t->n_suffix) < 0) return NOMEM;
    return TLM_OK;
}

tlm_status tlm_tok_encode(const tlm_tok *t, const char *text, size_t len, int add_special_tokens, tlm_tok_ids *out) {
    tok_ws *ws = tok_ws_acquire(t->pool);
    if (!ws) return NOMEM;
    tlm_status st = encode_ws(t, ws, text, len, add_special_tokens, out);
    tok_ws_release(t->pool, ws);
    return st;
}

tlm_status tlm_tok_encode_batch(const tlm_tok *t, const char *const *texts, const size_t *lens, int64_t n,
                                int add_special_tokens, tlm_tok_ids *outs) {
    tlm_status first_st = TLM_OK;
    int64_t first_at = -1;
    char msg[1024] = "";
    /* Error messages are per thread: the first failure's is carried out of the region. */
#pragma omp parallel if (n > 1)
    {
        tok_ws *ws = tok_ws_acquire(t->pool);
#pragma omp for schedule(dynamic, 1)
        for (int64_t i = 0; i < n; i++) {
            tlm_status st = ws ? encode_ws(t, ws, texts[i], lens[i], add_special_tokens, &outs[i]) : NOMEM;
            if (st != TLM_OK) {
#pragma omp critical(tlm_tok_batch_error)
                if (first_at < 0 || i < first_at) {
                    first_at = i;
                    first_st = st;
                    snprintf(msg, sizeof msg, "%s", tlm_last_error());
                }
            }
        }
        if (ws) tok_ws_release(t->pool, ws);
    }
    if (first_st != TLM_OK) return tlm_fail(first_st, "text %lld: %s", (long long)first_at, msg);
    return TLM_OK;
}
