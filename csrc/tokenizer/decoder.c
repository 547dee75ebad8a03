/* decoder.c: tokenizer.json "decoder" (ByteLevel, Metaspace, Replace,
 * ByteFallback, Fuse, Strip, and Sequences of them) and tlm_tok_decode.
 * Each step maps the list of token strings to a new list, as tokenizers'
 * decode_chain does; the result is the concatenation of the final list. */
#include "tokenizer/tok.h"

#include <string.h>

#define NOMEM tlm_fail(TLM_ENOMEM, "tokenizer: out of memory")

static tlm_status parse_one(const cJSON *j, const char *path, const char *type, tok_dec *st) {
    memset(st, 0, sizeof *st);
    if (strcmp(type, "ByteLevel") == 0) { st->kind = TOK_D_BYTELEVEL; return TLM_OK; }
    if (strcmp(type, "ByteFallback") == 0) { st->kind = TOK_D_BYTEFALLBACK; return TLM_OK; }
    if (strcmp(type, "Fuse") == 0) { st->kind = TOK_D_FUSE; return TLM_OK; }
    if (strcmp(type, "Strip") == 0) {
        st->kind = TOK_D_STRIP;
        TLM_TRY(tok_json_char(j, "content", " ", path, &st->cp));
        TLM_TRY(tok_json_size(j, "start", 0, path, &st->start));
        return tok_json_size(j, "stop", 0, path, &st->stop);
    }
    if (strcmp(type, "Replace") == 0) {
        const char *content;
        st->kind = TOK_D_REPLACE;
        TLM_TRY(tok_json_need_str(j, "content", path, "Replace", &content));
        st->content_len = strlen(content);
        if (!(st->content = tok_strndup(content, st->content_len))) return NOMEM;
        return tok_json_pattern(j, "pattern", path, &st->pat);
    }
    if (strcmp(type, "Metaspace") == 0) {
        const char *scheme;
        st->kind = TOK_D_METASPACE;
        TLM_TRY(tok_json_char(j, "replacement", "\xE2\x96\x81", path, &st->cp));
        TLM_TRY(tok_json_str(j, "prepend_scheme", path, &scheme));
        if (!scheme) {
            int add;
            TLM_TRY(tok_json_bool(j, "add_prefix_space", 1, path, &add));
            st->prepend = add ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER;
        } else if (strcmp(scheme, "always") == 0) st->prepend = TOK_PREPEND_ALWAYS;
        else if (strcmp(scheme, "first") == 0) st->prepend = TOK_PREPEND_FIRST;
        else if (strcmp(scheme, "never") == 0) st->prepend = TOK_PREPEND_NEVER;
        else return tlm_fail(TLM_EFORMAT, "%s: unknown Metaspace prepend_scheme '%s'", path, scheme);
        return TLM_OK;
    }
    return tlm_fail(TLM_EUNSUPPORTED, "%s: unsupported decoder '%s'", path, type);
}

static tlm_status add_steps(const cJSON *j, const char *path, tok_dec **steps, size_t *n, size_t *cap) {
    const char *type;
    TLM_TRY(tok_json_need_str(j, "type", path, "a decoder", &type));
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "decoders"), *c;
        if (!cJSON_IsArray(list)) return tlm_fail(TLM_EFORMAT, "%s: decoder Sequence needs a 'decoders' list", path);
        cJSON_ArrayForEach(c, list) TLM_TRY(add_steps(c, path, steps, n, cap));
        return TLM_OK;
    }
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 4;
        tok_dec *p = realloc(*steps, c * sizeof *p);
        if (!p) return NOMEM;
        *steps = p;
        *cap = c;
    }
    /* Counted before parsing so that a half-built step is freed with the rest. */
    return parse_one(j, path, type, &(*steps)[(*n)++]);
}

tlm_status tok_dec_parse(const cJSON *j, const char *path, tok_dec **steps, size_t *n) {
    size_t cap = 0;
    *steps = NULL;
    *n = 0;
    if (!j || cJSON_IsNull(j)) return TLM_OK;
    return add_steps(j, path, steps, n, &cap);
}

void tok_dec_free(tok_dec *steps, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(steps[i].content);
        tok_pattern_free(&steps[i].pat);
    }
    free(steps);
}

static int put_str(tok_strs *o, const char *s, size_t n) {
    size_t off = o->text.n;
    return tok_buf_put(&o->text, s, n) < 0 || tok_spans_push(&o->spans, off, n, 0) < 0 ? -1 : 0;
}

/* Ends the string begun at text offset `off` (written straight into o->text).
 * The reserve gives the text a buffer even when every string is empty, so
 * no step computes text.p + off on a NULL pointer (undefined even for 0). */
static int close_str(tok_strs *o, size_t off) {
    return tok_buf_reserve(&o->text, 0) < 0 || tok_spans_push(&o->spans, off, o->text.n - off, 0) < 0 ? -1 : 0;
}

/* All tokens' bytes, each token mapped back through the byte-level alphabet
 * when every character of it belongs to the alphabet, then lossily decoded. */
static tlm_status bytelevel(const tok_bytelevel *bl, const tok_strs *in, tok_buf *raw, tok_strs *o) {
    raw->n = 0;
    for (size_t i = 0; i < in->spans.n; i++) {
        const char *s = in->text.p + in->spans.p[i].off;
        size_t n = in->spans.p[i].len, start = raw->n;
        if (tok_buf_reserve(raw, n) < 0) return NOMEM;
        int mapped = 1;
        for (size_t k = 0, l; k < n && mapped; k += l) {
            uint32_t cp = tok_utf8_next(s, k, &l);
            if (cp < sizeof bl->dec / sizeof bl->dec[0] && bl->dec[cp] >= 0) raw->p[raw->n++] = (char)bl->dec[cp];
            else mapped = 0;
        }
        if (!mapped) {
            raw->n = start;
            if (tok_buf_put(raw, s, n) < 0) return NOMEM;
        }
    }
    size_t off = o->text.n;
    if (tok_utf8_lossy(raw->p, raw->n, &o->text) < 0 || close_str(o, off) < 0) return NOMEM;
    return TLM_OK;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The byte of a "<0xNN>" token (either case of hex digits), or -1. */
static int byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* Flushes pending byte tokens: their UTF-8 string if valid, else one U+FFFD each. */
static int flush_bytes(tok_buf *bytes, tok_strs *o) {
    if (bytes->n == 0) return 0;
    int rc = 0;
    if (tok_utf8_valid(bytes->p, bytes->n)) rc = put_str(o, bytes->p, bytes->n);
    else
        for (size_t i = 0; i < bytes->n && rc == 0; i++) rc = put_str(o, "\xEF\xBF\xBD", 3);
    bytes->n = 0;
    return rc;
}

static tlm_status byte_fallback(const tok_strs *in, tok_buf *bytes, tok_strs *o) {
    bytes->n = 0;
    for (size_t i = 0; i < in->spans.n; i++) {
        const char *s = in->text.p + in->spans.p[i].off;
        size_t n = in->spans.p[i].len;
        int b = byte_token(s, n);
        if (b >= 0) {
            char c = (char)b;
            if (tok_buf_put(bytes, &c, 1) < 0) return NOMEM;
            continue;
        }
        if (flush_bytes(bytes, o) < 0 || put_str(o, s, n) < 0) return NOMEM;
    }
    return flush_bytes(bytes, o) < 0 ? NOMEM : TLM_OK;
}

static tlm_status strip(const tok_dec *st, const tok_strs *in, tok_strs *o) {
    char c[4];
    size_t cl = tok_utf8_put(st->cp, c);
    for (size_t i = 0; i < in->spans.n; i++) {
        const char *s = in->text.p + in->spans.p[i].off;
        size_t n = in->spans.p[i].len, a = 0, b = n;
        for (size_t k = 0; k < st->start && a + cl <= n && memcmp(s + a, c, cl) == 0; k++) a += cl;
        for (size_t k = 0; k < st->stop && b >= a + cl && memcmp(s + b - cl, c, cl) == 0; k++) b -= cl;
        if (put_str(o, s + a, b - a) < 0) return NOMEM;
    }
    return TLM_OK;
}

static tlm_status metaspace(const tok_dec *st, const tok_strs *in, tok_strs *o) {
    for (size_t i = 0; i < in->spans.n; i++) {
        const char *s = in->text.p + in->spans.p[i].off;
        size_t n = in->spans.p[i].len, off = o->text.n;
        /* The first token loses every replacement character, later ones turn them into spaces. */
        int drop = i == 0 && st->prepend != TOK_PREPEND_NEVER;
        for (size_t k = 0, l; k < n; k += l) {
            uint32_t cp = tok_utf8_next(s, k, &l);
            int rc = cp != st->cp ? tok_buf_put(&o->text, s + k, l) : drop ? 0 : tok_buf_put(&o->text, " ", 1);
            if (rc < 0) return NOMEM;
        }
        if (close_str(o, off) < 0) return NOMEM;
    }
    return TLM_OK;
}

static tlm_status replace(const tok_dec *st, const tok_strs *in, tok_ws *ws, tok_strs *o) {
    for (size_t i = 0; i < in->spans.n; i++) {
        const char *s = in->text.p + in->spans.p[i].off;
        size_t off = o->text.n;
        ws->ranges.n = 0;
        TLM_TRY(tok_pattern_ranges(&st->pat, s, in->spans.p[i].len, ws, &ws->ranges));
        for (size_t k = 0; k < ws->ranges.n; k++) {
            const tok_range *r = &ws->ranges.p[k];
            int rc = r->is_match ? tok_buf_put(&o->text, st->content, st->content_len)
                                 : tok_buf_put(&o->text, s + r->start, r->end - r->start);
            if (rc < 0) return NOMEM;
        }
        if (close_str(o, off) < 0) return NOMEM;
    }
    return TLM_OK;
}

static tlm_status fuse(const tok_strs *in, tok_strs *o) {
    size_t off = o->text.n;
    for (size_t i = 0; i < in->spans.n; i++)
        if (tok_buf_put(&o->text, in->text.p + in->spans.p[i].off, in->spans.p[i].len) < 0) return NOMEM;
    return close_str(o, off) < 0 ? NOMEM : TLM_OK;
}

tlm_status tok_decode_steps(const tok_dec *steps, size_t n_steps, const tok_bytelevel *bl, tok_ws *ws, tok_strs *toks) {
    for (size_t i = 0; i < n_steps; i++) {
        tok_strs *o = &ws->strs[1];
        o->text.n = o->spans.n = 0;
        switch (steps[i].kind) {
        case TOK_D_BYTELEVEL: TLM_TRY(bytelevel(bl, toks, &ws->norm, o)); break;
        case TOK_D_BYTEFALLBACK: TLM_TRY(byte_fallback(toks, &ws->norm, o)); break;
        case TOK_D_FUSE: TLM_TRY(fuse(toks, o)); break;
        case TOK_D_STRIP: TLM_TRY(strip(&steps[i], toks, o)); break;
        case TOK_D_METASPACE: TLM_TRY(metaspace(&steps[i], toks, o)); break;
        case TOK_D_REPLACE: TLM_TRY(replace(&steps[i], toks, ws, o)); break;
        }
        tok_strs t = *toks;
        *toks = *o;
        *o = t;
    }
    return TLM_OK;
}

tlm_status tlm_tok_decode(const tlm_tok *t, const int32_t *ids, int64_t n, int skip_special_tokens,
                          char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    tok_ws *ws = tok_ws_acquire(t->pool);
    if (!ws) return NOMEM;
    tok_strs *toks = &ws->strs[0];
    toks->text.n = toks->spans.n = 0;
    tlm_status st = TLM_OK;
    for (int64_t i = 0; i < n && st == TLM_OK; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_ids || !t->id_str[id] || (skip_special_tokens && t->id_special[id])) continue;
        if (put_str(toks, t->id_str[id], t->id_len[id]) < 0) st = NOMEM;
    }
    if (st == TLM_OK) st = tok_decode_steps(t->dec, t->n_dec, &t->bl, ws, toks);
    /* Without a decoder tokenizers joins the tokens with spaces. */
    tok_buf res = {0};
    for (size_t i = 0; st == TLM_OK && i < toks->spans.n; i++) {
        if (!t->has_decoder && i > 0 && tok_buf_put(&res, " ", 1) < 0) st = NOMEM;
        else if (tok_buf_put(&res, toks->text.p + toks->spans.p[i].off, toks->spans.p[i].len) < 0) st = NOMEM;
    }
    if (st == TLM_OK && tok_buf_reserve(&res, 0) < 0) st = NOMEM;
    tok_ws_release(t->pool, ws);
    if (st != TLM_OK) { tok_buf_free(&res); return st; }
    res.p[res.n] = '\0';
    *out = res.p;
    *out_len = res.n;
    return TLM_OK;
}
