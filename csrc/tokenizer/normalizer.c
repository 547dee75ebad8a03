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

/* The head after a normal form: the form of the old head, widened to the
 * end of the output character it ends in (composition may fuse the head's
 * last character with the marks after it). tokenizers hands out original
 * offsets by position instead, which differs only when canonical reordering
 * moves a mark of the next character before the head's own marks; a word
 * boundary would have to fall between such marks for it to matter. */
static size_t form_head(const char *old, size_t head, const tok_buf *out, utf8proc_option_t opts) {
    if (head == 0) return 0;
    utf8proc_uint8_t *d;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)old, (utf8proc_ssize_t)head, &d, opts);
    if (k < 0) return head < out->n ? head : out->n;
    free(d);
    size_t end = (size_t)k < out->n ? (size_t)k : out->n;
    while (end > 0 && end < out->n && ((unsigned char)out->p[end] & 0xC0) == 0x80) end++;
    return end;
}

static tlm_status unicode_form(tok_buf *b, tok_buf *tmp, size_t *head, utf8proc_option_t opts) {
    /* ASCII text is already in every normal form. */
    if (all_ascii(b->p, b->n)) return TLM_OK;
    opts |= UTF8PROC_STABLE;
    utf8proc_uint8_t *dst;
    utf8proc_ssize_t len = utf8proc_map((const utf8proc_uint8_t *)b->p, (utf8proc_ssize_t)b->n, &dst, opts);
    if (len < 0) return tlm_fail(TLM_EINVAL, "tokenizer normalizer: %s", utf8proc_errmsg(len));
    tmp->n = 0;
    int rc = tok_buf_put(tmp, dst, (size_t)len);
    free(dst);
    if (rc < 0) return tlm_fail(TLM_ENOMEM, "tokenizer: out of memory");
    *head = form_head(b->p, *head, tmp, opts);
    swap_bufs(b, tmp);
    return TLM_OK;
}

/* Replace, and its head: matched text becomes `content`, which keeps the
 * original offset of the last character it replaces. */
static tlm_status replace(const tok_norm *st, tok_buf *b, tok_buf *tmp, size_t *head, tok_ws *ws) {
    ws->ranges.n = 0;
    TLM_TRY(tok_pattern_ranges(&st->pat, b->p, b->n, ws, &ws->ranges));
    tmp->n = 0;
    size_t new_head = 0;
    int in_head = *head > 0;
    for (size_t i = 0; i < ws->ranges.n; i++) {
        const tok_range *r = &ws->ranges.p[i];
        if (in_head && r->start < *head) {
            if (!r->is_match) new_head += (r->end < *head ? r->end : *head) - r->start;
            else if (r->end <= *head) new_head += st->text_len;
            else in_head = 0;   /* the content stands for a character past the head */
        }
        int rc = r->is_match ? tok_buf_put(tmp, st->text, st->text_len) : tok_buf_put(tmp, b->p + r->start, r->end - r->start);
        if (rc < 0) return tlm_fail(TLM_ENOMEM, "tokenizer: out of memory");
    }
    *head = new_head;
    swap_bufs(b, tmp);
    return TLM_OK;
}

tlm_status tok_normalize(const tok_norm *steps, size_t n_steps, const char *s, size_t n, size_t head, tok_ws *ws) {
    tok_buf *b = &ws->norm, *tmp = &ws->norm_tmp;
    b->n = 0;
    if (tok_buf_put(b, s, n) < 0) return tlm_fail(TLM_ENOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < n_steps; i++) {
        const tok_norm *st = &steps[i];
        switch (st->kind) {
        case TOK_N_NFC: TLM_TRY(unicode_form(b, tmp, &head, UTF8PROC_COMPOSE)); break;
        case TOK_N_NFD: TLM_TRY(unicode_form(b, tmp, &head, UTF8PROC_DECOMPOSE)); break;
        case TOK_N_NFKC: TLM_TRY(unicode_form(b, tmp, &head, UTF8PROC_COMPOSE | UTF8PROC_COMPAT)); break;
        case TOK_N_NFKD: TLM_TRY(unicode_form(b, tmp, &head, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT)); break;
        case TOK_N_PREPEND:
            if (b->n == 0) break;   /* tokenizers prepends to non-empty strings only */
            tmp->n = 0;
            if (tok_buf_put(tmp, st->text, st->text_len) < 0 || tok_buf_put(tmp, b->p, b->n) < 0)
                return tlm_fail(TLM_ENOMEM, "tokenizer: out of memory");
            /* The prefix takes the original offset of the character it precedes. */
            if (head > 0) head += st->text_len;
            swap_bufs(b, tmp);
            break;
        case TOK_N_REPLACE: TLM_TRY(replace(st, b, tmp, &head, ws)); break;
        }
    }
    ws->norm_head = head;
    return TLM_OK;
}
