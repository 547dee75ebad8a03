/* normalizer.c: tokenizer.json "normalizer" (NFC, NFD, NFKC, NFKD, Prepend,
 * Replace, and Sequences of them), read into a flat list of steps and
 * applied to each text segment between non-normalized added tokens. Unicode
 * normal forms come from utf8proc. */
#include "tokenizer/tok.h"

#include <string.h>
#include <utf8proc.h>

static tlm_status add_step(const cJSON *j, const char *path, tok_norm **steps, size_t *n, size_t *cap) {
    const char *type;
    TLM_TRY(tok_json_need_str(j, "type", path, "a normalizer", &type));
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "normalizers");
        if (!cJSON_IsArray(list)) return tlm_fail(TLM_EFORMAT, "%s: normalizer Sequence needs a 'normalizers' list", path);
        const cJSON *c;
        cJSON_ArrayForEach(c, list) TLM_TRY(add_step(c, path, steps, n, cap));
        return TLM_OK;
    }
    tok_norm st = {0};
    if (strcmp(type, "NFC") == 0) st.kind = TOK_N_NFC;
    else if (strcmp(type, "NFD") == 0) st.kind = TOK_N_NFD;
    else if (strcmp(type, "NFKC") == 0) st.kind = TOK_N_NFKC;
    else if (strcmp(type, "NFKD") == 0) st.kind = TOK_N_NFKD;
    else if (strcmp(type, "Prepend") == 0 || strcmp(type, "Replace") == 0) {
        const char *text;
        int prepend = type[0] == 'P';
        st.kind = prepend ? TOK_N_PREPEND : TOK_N_REPLACE;
        TLM_TRY(tok_json_need_str(j, prepend ? "prepend" : "content", path, type, &text));
        st.text_len = strlen(text);
        if (!(st.text = tok_strndup(text, st.text_len))) return tlm_fail(TLM_ENOMEM, "%s: out of memory", path);
        if (!prepend) {
            tlm_status s = tok_json_pattern(j, "pattern", path, &st.pat);
            if (s != TLM_OK) { free(st.text); return s; }
        }
    } else {
        return tlm_fail(TLM_EUNSUPPORTED, "%s: unsupported normalizer '%s'", path, type);
    }
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 4;
        tok_norm *p = realloc(*steps, c * sizeof *p);
        if (!p) { free(st.text); tok_pattern_free(&st.pat); return tlm_fail(TLM_ENOMEM, "%s: out of memory", path); }
        *steps = p;
        *cap = c;
    }
    (*steps)[(*n)++] = st;
    return TLM_OK;
}

tlm_status tok_norm_parse(const cJSON *j, const char *path, tok_norm **steps, size_t *n) {
    size_t cap = 0;
    *steps = NULL;
    *n = 0;
    if (!j || cJSON_IsNull(j)) return TLM_OK;
    return add_step(j, path, steps, n, &cap);
}

void tok_norm_free(tok_norm *steps, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(steps[i].text);
        tok_pattern_free(&steps[i].pat);
    }
    free(steps);
}

static int all_ascii(const char *s, size_t n) {
    unsigned char acc = 0;
    for (size_t i = 0; i < n; i++) acc |= (unsigned char)s[i];
    return acc < 0x80;
}

static void swap_bufs(tok_buf *a, tok_buf *b) {
    tok_buf t = *a;
    *a = *b;
    *b = t;
}

static tlm_status unicode_form(tok_buf *b, tok_buf *tmp, utf8proc_option_t opts) {
    /* ASCII text is already in every normal form. */
    if (all_ascii(b->p, b->n)) return TLM_OK;
    utf8proc_uint8_t *dst;
    utf8proc_ssize_t len = utf8proc_map((const utf8proc_uint8_t *)b->p, (utf8proc_ssize_t)b->n, &dst, opts | UTF8PROC_STABLE);
    if (len < 0) return tlm_fail(TLM_EINVAL, "tokenizer normalizer: %s", utf8proc_errmsg(len));
    tmp->n = 0;
    int rc = tok_buf_put(tmp, dst, (size_t)len);
    free(dst);
    if (rc < 0) return tlm_fail(TLM_ENOMEM, "tokenizer: out of memory");
    swap_bufs(b, tmp);
    return TLM_OK;
}

static tlm_status replace(const tok_norm *st, tok_buf *b, tok_buf *tmp, tok_ws *ws) {
    ws->ranges.n = 0;
    TLM_TRY(tok_pattern_ranges(&st->pat, b->p, b->n, ws, &ws->ranges));
    tmp->n = 0;
    for (size_t i = 0; i < ws->ranges.n; i++) {
        const tok_range *r = &ws->ranges.p[i];
        int rc = r->is_match ? tok_buf_put(tmp, st->text, st->text_len) : tok_buf_put(tmp, b->p + r->start, r->end - r->start);
        if (rc < 0) return tlm_fail(TLM_ENOMEM, "tokenizer: out of memory");
    }
    swap_bufs(b, tmp);
    return TLM_OK;
}

tlm_status tok_normalize(const tok_norm *steps, size_t n_steps, const char *s, size_t n, tok_ws *ws) {
    tok_buf *b = &ws->norm, *tmp = &ws->norm_tmp;
    b->n = 0;
    if (tok_buf_put(b, s, n) < 0) return tlm_fail(TLM_ENOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < n_steps; i++) {
        const tok_norm *st = &steps[i];
        switch (st->kind) {
        case TOK_N_NFC: TLM_TRY(unicode_form(b, tmp, UTF8PROC_COMPOSE)); break;
        case TOK_N_NFD: TLM_TRY(unicode_form(b, tmp, UTF8PROC_DECOMPOSE)); break;
        case TOK_N_NFKC: TLM_TRY(unicode_form(b, tmp, UTF8PROC_COMPOSE | UTF8PROC_COMPAT)); break;
        case TOK_N_NFKD: TLM_TRY(unicode_form(b, tmp, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT)); break;
        case TOK_N_PREPEND:
            if (b->n == 0) break;   /* tokenizers prepends to non-empty strings only */
            tmp->n = 0;
            if (tok_buf_put(tmp, st->text, st->text_len) < 0 || tok_buf_put(tmp, b->p, b->n) < 0)
                return tlm_fail(TLM_ENOMEM, "tokenizer: out of memory");
            swap_bufs(b, tmp);
            break;
        case TOK_N_REPLACE: TLM_TRY(replace(st, b, tmp, ws)); break;
        }
    }
    return TLM_OK;
}
