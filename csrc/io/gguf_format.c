/* gguf_format.c: value sizes, type names and name lookup (gguf_format.h). */
#include "io/gguf_format.h"

#include "core/internal.h"

#include <string.h>

static const struct {
    const char *name;
    uint64_t size;
} VALUE_TYPES[TLM_GGUF_TYPE_COUNT] = {
    [TLM_GGUF_UINT8] = {"uint8", 1},     [TLM_GGUF_INT8] = {"int8", 1},       [TLM_GGUF_UINT16] = {"uint16", 2},
    [TLM_GGUF_INT16] = {"int16", 2},     [TLM_GGUF_UINT32] = {"uint32", 4},   [TLM_GGUF_INT32] = {"int32", 4},
    [TLM_GGUF_FLOAT32] = {"float32", 4}, [TLM_GGUF_BOOL] = {"bool", 1},       [TLM_GGUF_STRING] = {"string", 0},
    [TLM_GGUF_ARRAY] = {"array", 0},     [TLM_GGUF_UINT64] = {"uint64", 8},   [TLM_GGUF_INT64] = {"int64", 8},
    [TLM_GGUF_FLOAT64] = {"float64", 8},
};

uint64_t tlm_gguf_value_size(tlm_gguf_type t) { return (unsigned)t < TLM_GGUF_TYPE_COUNT ? VALUE_TYPES[t].size : 0; }

const char *tlm_gguf_type_name(tlm_gguf_type t) {
    return (unsigned)t < TLM_GGUF_TYPE_COUNT ? VALUE_TYPES[t].name : "unknown";
}

/* qsort has no context argument: the names travel with the indices. */
typedef struct {
    const char *name;
    int64_t index;
} named;

static int cmp_named(const void *a, const void *b) {
    const named *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

tlm_status tlm_gguf_sort_names(const void *base, int64_t n, const char *(*name_of)(const void *, int64_t),
                               int64_t **order, const char **dup, const char *path) {
    *dup = NULL;
    named *tmp = malloc(((size_t)n + 1) * sizeof *tmp);
    *order = malloc(((size_t)n + 1) * sizeof **order);
    if (!tmp || !*order) {
        free(tmp);
        return tlm_fail(TLM_ENOMEM, "%s: no memory to index %lld names", path, (long long)n);
    }
    for (int64_t i = 0; i < n; i++) tmp[i] = (named){name_of(base, i), i};
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_named);
    for (int64_t i = 0; i < n; i++) {
        (*order)[i] = tmp[i].index;
        if (i && !*dup && strcmp(tmp[i - 1].name, tmp[i].name) == 0) *dup = tmp[i].name;
    }
    free(tmp);
    return TLM_OK;
}

int64_t tlm_gguf_lookup(const void *base, const int64_t *order, int64_t n,
                        const char *(*name_of)(const void *, int64_t), const char *name) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name_of(base, order[mid]), name);
        if (c == 0) return order[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}
