/* hash.c: the string -> id dictionary (vocabulary, added tokens) and the
 * (id, id) -> (rank, id) table of BPE merges, both open addressing with
 * linear probing at load factor <= 1/2. */
#include "tokenizer/tok.h"

#include <string.h>

#define MIX 0x9E3779B97F4A7C15ull

uint64_t tok_hash(const char *s, size_t n) {
    uint64_t h = 0x243F6A8885A308D3ull ^ (n * MIX);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * MIX;
        h ^= h >> 29;
    }
    uint64_t tail = 0;
    memcpy(&tail, s + i, n - i);
    h = (h ^ tail) * MIX;
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ull;
    return h ^ (h >> 32);
}

static int dict_rehash(tok_dict *d, size_t cap) {
    uint64_t *slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    size_t mask = cap - 1;
    for (size_t k = 0; k < d->n; k++) {
        uint64_t h = tok_hash(d->arena.p + d->e[k].off, d->e[k].len);
        size_t i = h & mask;
        while (slots[i]) i = (i + 1) & mask;
        slots[i] = (h >> 32 << 32) | (uint64_t)(k + 1);
    }
    free(d->slots);
    d->slots = slots;
    d->mask = mask;
    return 0;
}

/* Slot index holding s, or the empty slot where it would go. */
static size_t dict_find(const tok_dict *d, const char *s, size_t n, uint64_t h) {
    size_t i = h & d->mask;
    for (;;) {
        uint64_t v = d->slots[i];
        if (!v) return i;
        if (v >> 32 == h >> 32) {
            const tok_dict_entry *e = &d->e[(uint32_t)v - 1];
            if (e->len == n && memcmp(d->arena.p + e->off, s, n) == 0) return i;
        }
        i = (i + 1) & d->mask;
    }
}

int tok_dict_put(tok_dict *d, const char *s, size_t n, int32_t val) {
    if (n > UINT32_MAX) return -1;
    if ((d->n + 1) * 2 > d->mask + 1 || !d->slots) {
        if (dict_rehash(d, d->slots ? (d->mask + 1) * 2 : 64) < 0) return -1;
    }
    uint64_t h = tok_hash(s, n);
    size_t i = dict_find(d, s, n, h);
    if (d->slots[i]) {
        d->e[(uint32_t)d->slots[i] - 1].val = val;
        return 0;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        tok_dict_entry *e = realloc(d->e, cap * sizeof *e);
        if (!e) return -1;
        d->e = e;
        d->cap = cap;
    }
    size_t off = d->arena.n;
    if (tok_buf_put(&d->arena, s, n) < 0) return -1;
    d->e[d->n] = (tok_dict_entry){off, (uint32_t)n, val};
    d->n++;
    d->slots[i] = (h >> 32 << 32) | (uint64_t)d->n;
    return 0;
}

int32_t tok_dict_get(const tok_dict *d, const char *s, size_t n) {
    if (!d->slots) return -1;
    uint64_t v = d->slots[dict_find(d, s, n, tok_hash(s, n))];
    return v ? d->e[(uint32_t)v - 1].val : -1;
}

void tok_dict_free(tok_dict *d) {
    tok_buf_free(&d->arena);
    free(d->e);
    free(d->slots);
    memset(d, 0, sizeof *d);
}

/* Ids are non-negative int32, so an all-ones key never occurs. */
#define EMPTY_KEY UINT64_MAX

static inline uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

int tok_merges_init(tok_merges *m, size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2) cap *= 2;
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots) return -1;
    for (size_t i = 0; i < cap; i++) m->slots[i].key = EMPTY_KEY;
    m->mask = cap - 1;
    m->n = 0;
    return 0;
}

static inline size_t pair_slot(const tok_merges *m, uint64_t key) {
    size_t i = (size_t)((key * MIX) >> 20) & m->mask;
    while (m->slots[i].key != EMPTY_KEY && m->slots[i].key != key) i = (i + 1) & m->mask;
    return i;
}

int tok_merges_put(tok_merges *m, int32_t a, int32_t b, uint32_t rank, int32_t id) {
    if ((m->n + 1) * 2 > m->mask + 1) {
        tok_merges bigger;
        if (tok_merges_init(&bigger, (m->mask + 1)) < 0) return -1;
        for (size_t i = 0; i <= m->mask; i++)
            if (m->slots[i].key != EMPTY_KEY) bigger.slots[pair_slot(&bigger, m->slots[i].key)] = m->slots[i];
        bigger.n = m->n;
        free(m->slots);
        *m = bigger;
    }
    uint64_t key = pair_key(a, b);
    size_t i = pair_slot(m, key);
    if (m->slots[i].key == EMPTY_KEY) m->n++;
    m->slots[i] = (tok_merge){key, rank, id};
    return 0;
}

const tok_merge *tok_merges_get(const tok_merges *m, int32_t a, int32_t b) {
    const tok_merge *s = &m->slots[pair_slot(m, pair_key(a, b))];
    return s->key == EMPTY_KEY ? NULL : s;
}

void tok_merges_free(tok_merges *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}
