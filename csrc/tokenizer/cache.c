/* cache.c: the per-workspace cache of BPE results by word (see tok.h).
 * Text repeats its words; merging a word costs a few hash probes per
 * symbol, a hit one hash and one compare. */
#include "tokenizer/tok.h"

#include <string.h>

/* 512 KB of slots and an arena of 2 MB (4 MB reserved at most) per
 * workspace; workspaces are per thread. */
#define SLOTS (1u << 15)
#define ARENA_LIMIT ((size_t)2 << 20)

const int32_t *tok_cache_get(const tok_cache *c, const char *w, size_t len, uint64_t hash, size_t *n) {
    if (!c->slots) return NULL;
    const tok_cache_slot *s = &c->slots[hash & c->mask];
    if (s->hash != hash || s->len != len || memcmp(c->arena.p + s->off, w, len) != 0) return NULL;
    *n = s->n_ids;
    return (const int32_t *)(c->arena.p + ((s->off + len + 3) & ~(size_t)3));
}

void tok_cache_put(tok_cache *c, const char *w, size_t len, uint64_t hash, const int32_t *ids, size_t n) {
    /* A failed allocation only means no caching. */
    if (!c->slots) {
        if (!(c->slots = calloc(SLOTS, sizeof *c->slots))) return;
        c->mask = SLOTS - 1;
    }
    size_t need = len + 3 + n * sizeof *ids;
    if (c->arena.n + need > ARENA_LIMIT) {
        memset(c->slots, 0, SLOTS * sizeof *c->slots);
        c->arena.n = 0;
    }
    if (n > UINT16_MAX || tok_buf_reserve(&c->arena, need) < 0) return;
    size_t off = c->arena.n, ids_off = (off + len + 3) & ~(size_t)3;
    memcpy(c->arena.p + off, w, len);
    memcpy(c->arena.p + ids_off, ids, n * sizeof *ids);
    c->arena.n = ids_off + n * sizeof *ids;
    c->slots[hash & c->mask] = (tok_cache_slot){hash, (uint32_t)off, (uint16_t)len, (uint16_t)n};
}

void tok_cache_free(tok_cache *c) {
    free(c->slots);
    tok_buf_free(&c->arena);
    memset(c, 0, sizeof *c);
}
