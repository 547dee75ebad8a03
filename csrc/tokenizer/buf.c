/* buf.c: growable byte, id, span and range arrays used across the tokenizer. */
#include "tokenizer/tok.h"

#include <string.h>

/* Grows *p (an array of `size`-byte items with capacity *cap) to hold `need` items. */
static int grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * size);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

int tok_buf_reserve(tok_buf *b, size_t extra) {
    /* One spare byte so that a finished buffer can be NUL-terminated in place. */
    return grow((void **)&b->p, &b->cap, b->n + extra + 1, 1);
}

int tok_buf_put(tok_buf *b, const void *s, size_t n) {
    if (tok_buf_reserve(b, n) < 0) return -1;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

void tok_buf_free(tok_buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

int tok_ids_push(tlm_tok_ids *v, int32_t id) {
    size_t cap = (size_t)v->cap;
    if (grow((void **)&v->ids, &cap, (size_t)v->n + 1, sizeof *v->ids) < 0) return -1;
    v->cap = (int64_t)cap;
    v->ids[v->n++] = id;
    return 0;
}

int tok_ids_put(tlm_tok_ids *v, const int32_t *ids, size_t n) {
    size_t cap = (size_t)v->cap;
    if (grow((void **)&v->ids, &cap, (size_t)v->n + n, sizeof *v->ids) < 0) return -1;
    v->cap = (int64_t)cap;
    if (n) memcpy(v->ids + v->n, ids, n * sizeof *ids);
    v->n += (int64_t)n;
    return 0;
}

void tlm_tok_ids_free(tlm_tok_ids *v) {
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

int tok_spans_push(tok_spans *v, size_t off, size_t len, size_t head) {
    if (grow((void **)&v->p, &v->cap, v->n + 1, sizeof *v->p) < 0) return -1;
    v->p[v->n++] = (tok_span){off, len, head};
    return 0;
}

int tok_ranges_push(tok_ranges *v, size_t start, size_t end, int is_match) {
    if (grow((void **)&v->p, &v->cap, v->n + 1, sizeof *v->p) < 0) return -1;
    v->p[v->n++] = (tok_range){start, end, is_match};
    return 0;
}
