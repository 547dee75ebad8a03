/* workspace.c: per-call scratch memory and the pool a tokenizer keeps of it. */
#include "tokenizer/tok.h"

#include <pthread.h>

tok_ws *tok_ws_new(void) {
    tok_ws *ws = calloc(1, sizeof *ws);
    if (!ws) return NULL;
    if (!(ws->md = pcre2_match_data_create(1, NULL))) { free(ws); return NULL; }
    return ws;
}

void tok_ws_free(tok_ws *ws) {
    if (!ws) return;
    pcre2_match_data_free(ws->md);
    tok_buf_free(&ws->norm);
    tok_buf_free(&ws->norm_tmp);
    for (int i = 0; i < 2; i++) {
        tok_buf_free(&ws->text[i]);
        free(ws->spans[i].p);
        tok_buf_free(&ws->strs[i].text);
        free(ws->strs[i].spans.p);
    }
    free(ws->ranges.p);
    free(ws->raw_segs.p);
    free(ws->norm_segs.p);
    free(ws->sym);
    free(ws->heap);
    tok_cache_free(&ws->cache);
    free(ws);
}

/* More idle workspaces than this are freed on release: a burst of threads
 * does not leave its memory behind. */
#define POOL_MAX 64

struct tok_pool {
    pthread_mutex_t mu;
    tok_ws *idle[POOL_MAX];
    size_t n;
};

tok_pool *tok_pool_new(void) {
    tok_pool *p = calloc(1, sizeof *p);
    if (p && pthread_mutex_init(&p->mu, NULL) != 0) { free(p); return NULL; }
    return p;
}

void tok_pool_free(tok_pool *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) tok_ws_free(p->idle[i]);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

tok_ws *tok_ws_acquire(tok_pool *p) {
    tok_ws *ws = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->n > 0) ws = p->idle[--p->n];
    pthread_mutex_unlock(&p->mu);
    return ws ? ws : tok_ws_new();
}

void tok_ws_release(tok_pool *p, tok_ws *ws) {
    pthread_mutex_lock(&p->mu);
    if (p->n < POOL_MAX) { p->idle[p->n++] = ws; ws = NULL; }
    pthread_mutex_unlock(&p->mu);
    tok_ws_free(ws);
}
