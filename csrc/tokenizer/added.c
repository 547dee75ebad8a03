/* added.c: finding added tokens in text, as tokenizers' AddedVocabulary does.
 *
 * Matches are leftmost-longest and non-overlapping (its Aho-Corasick tries);
 * a single_word token is dropped where a word character touches it, and the
 * search goes on after the dropped match; lstrip/rstrip widen a kept match
 * over the whitespace beside it. Patterns are bucketed by first byte and
 * tried longest first, which gives the same matches for the few hundred
 * tokens a tokenizer adds. */
#include "tokenizer/tok.h"

#include <string.h>

typedef struct { unsigned char c; size_t len, k; } order_key;

static int by_first_then_longest(const void *a, const void *b) {
    const order_key *x = a, *y = b;
    if (x->c != y->c) return x->c < y->c ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->k < y->k ? -1 : x->k > y->k;
}

void tok_matcher_free(tok_matcher *m) {
    for (size_t i = 0; i < m->n; i++) free(m->pat[i]);
    free(m->pat);
    free(m->pat_len);
    free(m->added);
    memset(m, 0, sizeof *m);
}

int tok_matcher_build(tok_matcher *m, const tok_added *added, size_t n_added, int normalized) {
    memset(m, 0, sizeof *m);
    size_t n = 0;
    for (size_t i = 0; i < n_added; i++) n += added[i].normalized == normalized && added[i].form_len > 0;
    m->pat = calloc(n + 1, sizeof *m->pat);
    m->pat_len = calloc(n + 1, sizeof *m->pat_len);
    m->added = calloc(n + 1, sizeof *m->added);
    order_key *order = calloc(n + 1, sizeof *order);
    if (!m->pat || !m->pat_len || !m->added || !order) goto fail;
    size_t k = 0;
    for (size_t i = 0; i < n_added; i++) {
        if (added[i].normalized != normalized || added[i].form_len == 0) continue;
        order[k] = (order_key){(unsigned char)added[i].form[0], added[i].form_len, i};
        k++;
    }
    qsort(order, n, sizeof *order, by_first_then_longest);
    for (size_t j = 0; j < n; j++) {
        size_t i = order[j].k;
        if (!(m->pat[j] = tok_strndup(added[i].form, added[i].form_len))) goto fail;
        m->n = j + 1;   /* so that tok_matcher_free frees what is built */
        m->pat_len[j] = added[i].form_len;
        m->added[j] = (int32_t)i;
    }
    size_t j = 0;
    for (int c = 0; c < 256; c++) {
        m->first[c] = (uint32_t)j;
        while (j < n && (unsigned char)m->pat[j][0] == c) j++;
    }
    m->first[256] = (uint32_t)n;
    free(order);
    return 0;
fail:
    free(order);
    tok_matcher_free(m);
    return -1;
}

/* Leftmost-longest match at or after pos: returns its start or n if none. */
static size_t find(const tok_matcher *m, const char *s, size_t n, size_t pos, size_t *end, int32_t *which) {
    for (size_t i = pos; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        for (uint32_t j = m->first[c]; j < m->first[c + 1]; j++) {
            size_t l = m->pat_len[j];
            if (l <= n - i && memcmp(s + i, m->pat[j], l) == 0) {
                *end = i + l;
                *which = m->added[j];
                return i;
            }
        }
    }
    return n;
}

/* The code point that ends s[0..i) (i > 0). */
static uint32_t prev_char(const char *s, size_t i, size_t *start) {
    size_t j = i - 1;
    while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
    size_t l;
    *start = j;
    return tok_utf8_next(s, j, &l);
}

static int push(tok_segs *v, size_t start, size_t end, int32_t added) {
    if (v->n == v->cap) {
        size_t c = v->cap ? v->cap * 2 : 16;
        tok_seg *p = realloc(v->p, c * sizeof *p);
        if (!p) return -1;
        v->p = p;
        v->cap = c;
    }
    v->p[v->n++] = (tok_seg){start, end, added};
    return 0;
}

int tok_matcher_split(const tok_matcher *m, const tok_added *added, const char *s, size_t n, tok_segs *out) {
    out->n = 0;
    size_t done = 0, pos = 0;   /* done: end of the last kept match; pos: where the search resumes */
    while (m->n > 0 && pos < n) {
        size_t me;
        int32_t which;
        size_t ms = find(m, s, n, pos, &me, &which);
        if (ms == n) break;
        pos = me;
        const tok_added *a = &added[which];
        if (a->single_word) {
            size_t l, at;
            int word_before = ms > 0 && tok_is_word(prev_char(s, ms, &at));
            int word_after = me < n && tok_is_word(tok_utf8_next(s, me, &l));
            if (word_before || word_after) continue;
        }
        size_t start = ms, stop = me;
        if (a->lstrip) {
            size_t at;
            while (start > 0 && tok_is_space(prev_char(s, start, &at))) start = at;
        }
        if (a->rstrip) {
            size_t l;
            while (stop < n && tok_is_space(tok_utf8_next(s, stop, &l))) stop += l;
        }
        /* Whitespace already taken by the previous match stays with it. */
        if (start < done) start = done;
        if (done < start && push(out, done, start, -1) < 0) return -1;
        if (push(out, start, stop, which) < 0) return -1;
        done = stop;
    }
    if (done < n && push(out, done, n, -1) < 0) return -1;
    return 0;
}
