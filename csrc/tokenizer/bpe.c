/* bpe.c: the BPE model applied to one word, as tokenizers' BPE does it.
 *
 * The word starts as one symbol per character (its vocabulary id; else its
 * UTF-8 bytes as <0xNN> tokens under byte_fallback; else unk, fused across
 * neighbours under fuse_unk). Merges are then applied lowest rank first,
 * leftmost first among equal ranks: by scanning pair ranks for short words,
 * from a heap of candidate pairs for long ones. */
#include "tokenizer/tok.h"

#include <string.h>

typedef struct { int32_t id, prev, next; } sym;   /* id -1: merged into its left neighbour */
typedef struct { uint32_t rank; int32_t pos, id; } cand;

static inline int cand_less(cand a, cand b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }

static void heap_push(cand *h, size_t *n, cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(c, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        cand best = last;
        if (l < *n && cand_less(h[l], best)) { m = l; best = h[l]; }
        if (r < *n && cand_less(h[r], best)) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    h[i] = last;
    return top;
}

static int reserve(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * size);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static inline void add_sym(sym *s, size_t *k, int32_t id) { s[(*k)++].id = id; }

/* Initial symbols of w; returns their count. */
static size_t initial_symbols(const tok_bpe *m, const char *w, size_t n, sym *s) {
    size_t k = 0;
    int unk = 0;   /* an unk symbol is pending (not yet added) */
    for (size_t i = 0; i < n;) {
        size_t l;
        uint32_t cp = tok_utf8_next(w, i, &l);
        int32_t id = cp < 0x10000 ? m->bmp_id[cp] : tok_dict_get(&m->vocab, w + i, l);
        if (id >= 0) {
            if (unk) { add_sym(s, &k, m->unk_id); unk = 0; }
            add_sym(s, &k, id);
        } else {
            int bytes = m->byte_fallback;
            for (size_t b = 0; bytes && b < l; b++) bytes = m->byte_id[(unsigned char)w[i + b]] >= 0;
            if (bytes) {
                /* As in tokenizers, a pending unk is not flushed before byte tokens. */
                for (size_t b = 0; b < l; b++) add_sym(s, &k, m->byte_id[(unsigned char)w[i + b]]);
            } else if (m->unk_id >= 0) {
                if (unk && !m->fuse_unk) add_sym(s, &k, m->unk_id);
                unk = 1;
            }
        }
        i += l;
    }
    if (unk) add_sym(s, &k, m->unk_id);
    return k;
}

/* Symbols up to this many are merged by scanning an array of pair ranks:
 * no heap and no stale entries to re-check, and the scan is cheap while the
 * array is short. Both ways pick the same merges. */
#define SCAN_MAX 32

static size_t merge_scan(const tok_bpe *m, sym *s, size_t k, uint32_t *rank, int32_t *to) {
    for (size_t i = 0; i + 1 < k; i++) {
        const tok_merge *mg = tok_merges_get(&m->merges, s[i].id, s[i + 1].id);
        rank[i] = mg ? mg->rank : UINT32_MAX;
        to[i] = mg ? mg->id : -1;
    }
    while (k > 1) {
        size_t j = 0;
        for (size_t i = 1; i + 1 < k; i++) if (rank[i] < rank[j]) j = i;
        if (rank[j] == UINT32_MAX) break;
        s[j].id = to[j];
        /* Drop symbol j + 1 and pair j + 1; pairs j - 1 and j are new. */
        memmove(s + j + 1, s + j + 2, (k - j - 2) * sizeof *s);
        if (k >= j + 3) {
            memmove(rank + j + 1, rank + j + 2, (k - j - 3) * sizeof *rank);
            memmove(to + j + 1, to + j + 2, (k - j - 3) * sizeof *to);
        }
        k--;
        for (size_t i = j > 0 ? j - 1 : 0; i <= j && i + 1 < k; i++) {
            const tok_merge *mg = tok_merges_get(&m->merges, s[i].id, s[i + 1].id);
            rank[i] = mg ? mg->rank : UINT32_MAX;
            to[i] = mg ? mg->id : -1;
        }
    }
    return k;
}

/* The same merges for long words, from a binary heap of candidate pairs over
 * a linked list of symbols; returns the head of the list. */
static void merge_heap(const tok_bpe *m, sym *s, size_t k, cand *h) {
    size_t nh = 0;
    for (size_t i = 0; i < k; i++) {
        s[i].prev = (int32_t)i - 1;
        s[i].next = i + 1 < k ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < k; i++) {
        const tok_merge *mg = tok_merges_get(&m->merges, s[i].id, s[i + 1].id);
        if (mg) heap_push(h, &nh, (cand){mg->rank, (int32_t)i, mg->id});
    }
    while (nh > 0) {
        cand c = heap_pop(h, &nh);
        sym *a = &s[c.pos];
        if (a->id < 0 || a->next < 0) continue;
        sym *b = &s[a->next];
        const tok_merge *mg = tok_merges_get(&m->merges, a->id, b->id);
        if (!mg || mg->id != c.id) continue;   /* stale: the pair changed since it was queued */
        a->id = c.id;
        b->id = -1;
        a->next = b->next;
        if (a->next >= 0) s[a->next].prev = c.pos;
        if (a->prev >= 0 && (mg = tok_merges_get(&m->merges, s[a->prev].id, a->id)))
            heap_push(h, &nh, (cand){mg->rank, a->prev, mg->id});
        if (a->next >= 0 && (mg = tok_merges_get(&m->merges, a->id, s[a->next].id)))
            heap_push(h, &nh, (cand){mg->rank, c.pos, mg->id});
    }
}

/* Merges w[0..n) (a word, or an independent piece of one). */
static tlm_status merge_piece(const tok_bpe *m, const char *w, size_t n, tok_ws *ws, tlm_tok_ids *out) {
    /* Each byte of w yields at most one symbol; each merge queues at most two
     * new candidates after the k - 1 initial ones. The queue's room also
     * holds the scan's rank and target arrays. */
    if (reserve(&ws->sym, &ws->sym_cap, n, sizeof(sym)) < 0 || reserve(&ws->heap, &ws->heap_cap, 3 * n, sizeof(cand)) < 0)
        return tlm_fail(TLM_ENOMEM, "tokenizer: out of memory");
    sym *s = ws->sym;
    size_t k = initial_symbols(m, w, n, s);
    int rc = 0;
    if (k <= SCAN_MAX) {
        uint32_t *rank = ws->heap;
        k = merge_scan(m, s, k, rank, (int32_t *)(rank + k));
        for (size_t i = 0; i < k && rc == 0; i++) rc = tok_ids_push(out, s[i].id);
    } else {
        merge_heap(m, s, k, ws->heap);
        /* Symbol 0 always survives: merges fold the right symbol into the left. */
        for (int32_t i = 0; i >= 0 && rc == 0; i = s[i].next) rc = tok_ids_push(out, s[i].id);
    }
    return rc < 0 ? tlm_fail(TLM_ENOMEM, "tokenizer: out of memory") : TLM_OK;
}

/* merge_piece through the workspace's word cache. */
static tlm_status cached_piece(const tok_bpe *m, const char *w, size_t n, tok_ws *ws, tlm_tok_ids *out) {
    if (n > TOK_CACHE_MAX_WORD) return merge_piece(m, w, n, ws, out);
    uint64_t h = tok_hash(w, n) | 1;   /* never 0, the empty-slot mark */
    size_t k;
    const int32_t *ids = tok_cache_get(&ws->cache, w, n, h, &k);
    if (ids) return tok_ids_put(out, ids, k) < 0 ? tlm_fail(TLM_ENOMEM, "tokenizer: out of memory") : TLM_OK;
    int64_t first = out->n;
    TLM_TRY(merge_piece(m, w, n, ws, out));
    tok_cache_put(&ws->cache, w, n, h, out->ids + first, (size_t)(out->n - first));
    return TLM_OK;
}

static inline int metaspace_at(const char *w, size_t n, size_t i) {
    return i + 3 <= n && (unsigned char)w[i] == 0xE2 && (unsigned char)w[i + 1] == 0x96 && (unsigned char)w[i + 2] == 0x81;
}

tlm_status tok_bpe_word(const tok_bpe *m, const char *w, size_t n, tok_ws *ws, tlm_tok_ids *out) {
    if (n == 0) return TLM_OK;
    if (m->ignore_merges) {
        int32_t id = tok_dict_get(&m->vocab, w, n);
        if (id >= 0) return tok_ids_push(out, id) < 0 ? tlm_fail(TLM_ENOMEM, "tokenizer: out of memory") : TLM_OK;
    }
    if (!m->split_at_metaspace) return cached_piece(m, w, n, ws, out);
    /* Cut before each '▁' that follows another character (see tok_bpe). */
    size_t start = 0;
    for (size_t i = 1; i < n; i++) {
        if (!metaspace_at(w, n, i) || (i >= 3 && metaspace_at(w, n, i - 3))) continue;
        TLM_TRY(cached_piece(m, w + start, i - start, ws, out));
        start = i;
    }
    return cached_piece(m, w + start, n - start, ws, out);
}

void tok_bpe_free(tok_bpe *m) {
    tok_dict_free(&m->vocab);
    tok_merges_free(&m->merges);
    free(m->bmp_id);
    m->bmp_id = NULL;
}
