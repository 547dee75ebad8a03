/* gguf_write.c: the GGUF v3 writer (tlm.h). Key/values are serialised as
 * they are added; tensor infos get packed, aligned offsets in the order they
 * are added (as llama.cpp lays files out and insists on reading them); the
 * header goes out with the first tensor's data, and each tensor's data is
 * streamed, so a model is never held twice in memory. The file only appears
 * under its name once complete (atomic_file.h). */
#include "core/internal.h"
#include "io/atomic_file.h"
#include "io/gguf_format.h"

#include <string.h>

typedef struct {
    unsigned char *p;
    uint64_t len, cap;
    int failed;  /* latches an allocation failure: checked once at the end */
} bytes;

static void put(bytes *b, const void *src, uint64_t n) {
    if (b->failed) return;
    if (b->len + n > b->cap) {
        uint64_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *p = realloc(b->p, (size_t)cap);
        if (!p) { b->failed = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, (size_t)n);
    b->len += n;
}

static void put_uint(bytes *b, uint64_t v, int size) {
    unsigned char le[8];
    for (int i = 0; i < size; i++) le[i] = (unsigned char)(v >> (8 * i));
    put(b, le, (uint64_t)size);
}

static void put_str(bytes *b, const char *s, uint64_t len) {
    put_uint(b, len, 8);
    put(b, s, len);
}

typedef struct {
    char *name;
    int ndim;
    int64_t ne[TLM_GGUF_MAX_DIMS];
    int type;
    uint64_t offset, nbytes;
} info;

struct tlm_gguf_writer {
    tlm_atomic_file file;
    uint64_t alignment;
    bytes kvs;           /* the serialised key/values */
    int64_t n_kv;
    char **keys;         /* [n_kv] for the uniqueness check */
    info *infos;         /* [n_infos] */
    int64_t n_infos, cap_infos;
    uint64_t data_size;  /* the data section so far, padded */
    int64_t written;     /* tensors whose data has gone out; -1 before the header */
};

static uint64_t pad_to(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

tlm_status tlm_gguf_writer_create(const char *path, uint64_t alignment, tlm_gguf_writer **out) {
    *out = NULL;
    if (alignment == 0 || (alignment & (alignment - 1)) || alignment > (1u << 30))
        return tlm_fail(TLM_EINVAL, "%s: alignment %llu is not a power of two up to 2^30", path,
                        (unsigned long long)alignment);
    tlm_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return tlm_fail(TLM_ENOMEM, "%s: no memory", path);
    w->alignment = alignment;
    w->written = -1;
    tlm_status st = tlm_atomic_create(&w->file, path);
    if (st != TLM_OK) {
        free(w);
        return st;
    }
    if (alignment != TLM_GGUF_DEFAULT_ALIGNMENT) {
        /* the writer's own key: add_kv refuses it from callers */
        put_str(&w->kvs, TLM_GGUF_KEY_ALIGNMENT, strlen(TLM_GGUF_KEY_ALIGNMENT));
        put_uint(&w->kvs, TLM_GGUF_UINT32, 4);
        put_uint(&w->kvs, alignment, 4);
        w->keys = malloc(sizeof *w->keys);
        if (!w->keys || !(w->keys[0] = strdup(TLM_GGUF_KEY_ALIGNMENT))) {
            tlm_gguf_writer_abandon(w);
            return tlm_fail(TLM_ENOMEM, "%s: no memory", path);
        }
        w->n_kv = 1;
    }
    *out = w;
    return TLM_OK;
}

static void free_writer(tlm_gguf_writer *w) {
    for (int64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    for (int64_t i = 0; i < w->n_infos; i++) free(w->infos[i].name);
    free(w->keys);
    free(w->infos);
    free(w->kvs.p);
    free(w);
}

void tlm_gguf_writer_abandon(tlm_gguf_writer *w) {
    if (!w) return;
    tlm_atomic_abandon(&w->file);
    free_writer(w);
}

static tlm_status check_kv(const tlm_gguf_writer *w, const tlm_gguf_kv *kv) {
    const char *path = w->file.path;
    if (w->written >= 0) return tlm_fail(TLM_EINVAL, "%s: key/values must all be added before tensor data", path);
    if (!kv->key || !*kv->key || !tlm_utf8_valid(kv->key))
        return tlm_fail(TLM_EINVAL, "%s: a key is empty or not valid UTF-8", path);
    if (strcmp(kv->key, TLM_GGUF_KEY_ALIGNMENT) == 0)
        return tlm_fail(TLM_EINVAL, "%s: \"%s\" is set by the writer's alignment argument", path, kv->key);
    for (int64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], kv->key) == 0) return tlm_fail(TLM_EINVAL, "%s: key \"%s\" is given twice", path, kv->key);
    int array = kv->type == TLM_GGUF_ARRAY;
    tlm_gguf_type elem = array ? kv->elem_type : kv->type;
    if ((unsigned)kv->type >= TLM_GGUF_TYPE_COUNT || (unsigned)elem >= TLM_GGUF_TYPE_COUNT || elem == TLM_GGUF_ARRAY)
        return tlm_fail(TLM_EINVAL, "%s: key \"%s\": invalid value type", path, kv->key);
    if (!array && kv->n != 1) return tlm_fail(TLM_EINVAL, "%s: key \"%s\": a scalar has n = 1", path, kv->key);
    if (elem == TLM_GGUF_STRING) {
        if (kv->n && !kv->strs) return tlm_fail(TLM_EINVAL, "%s: key \"%s\": no strings", path, kv->key);
        for (uint64_t j = 0; j < kv->n; j++)
            if (!tlm_utf8_valid_n(kv->strs[j].ptr, kv->strs[j].len))
                return tlm_fail(TLM_EINVAL, "%s: key \"%s\": string %llu is not valid UTF-8", path, kv->key,
                                (unsigned long long)j);
    } else {
        if (kv->n && !kv->data) return tlm_fail(TLM_EINVAL, "%s: key \"%s\": no values", path, kv->key);
        if (elem == TLM_GGUF_BOOL)
            for (uint64_t j = 0; j < kv->n; j++)
                if (((const unsigned char *)kv->data)[j] > 1)
                    return tlm_fail(TLM_EINVAL, "%s: key \"%s\": bool %llu is not 0 or 1", path, kv->key,
                                    (unsigned long long)j);
    }
    return TLM_OK;
}

tlm_status tlm_gguf_writer_add_kv(tlm_gguf_writer *w, const tlm_gguf_kv *kv) {
    TLM_TRY(check_kv(w, kv));
    char **keys = realloc(w->keys, ((size_t)w->n_kv + 1) * sizeof *keys);
    if (!keys) return tlm_fail(TLM_ENOMEM, "%s: no memory", w->file.path);
    w->keys = keys;
    if (!(keys[w->n_kv] = strdup(kv->key))) return tlm_fail(TLM_ENOMEM, "%s: no memory", w->file.path);
    w->n_kv++;
    bytes *b = &w->kvs;
    put_str(b, kv->key, strlen(kv->key));
    put_uint(b, (uint64_t)kv->type, 4);
    tlm_gguf_type elem = kv->type;
    if (kv->type == TLM_GGUF_ARRAY) {
        elem = kv->elem_type;
        put_uint(b, (uint64_t)elem, 4);
        put_uint(b, kv->n, 8);
    }
    if (elem == TLM_GGUF_STRING)
        for (uint64_t j = 0; j < kv->n; j++) put_str(b, kv->strs[j].ptr, kv->strs[j].len);
    else
        put(b, kv->data, kv->n * tlm_gguf_value_size(elem));  /* the host is little-endian, as the file */
    if (b->failed) return tlm_fail(TLM_ENOMEM, "%s: no memory for key \"%s\"", w->file.path, kv->key);
    return TLM_OK;
}

tlm_status tlm_gguf_writer_add_tensor(tlm_gguf_writer *w, const char *name, int ndim, const int64_t *ne, int type) {
    const char *path = w->file.path;
    if (w->written >= 0) return tlm_fail(TLM_EINVAL, "%s: tensor infos must all be added before tensor data", path);
    /* llama.cpp keeps names in a 64-byte field (GGML_MAX_NAME), NUL included */
    if (!name || !*name || strlen(name) >= 64 || !tlm_utf8_valid(name))
        return tlm_fail(TLM_EINVAL, "%s: tensor name \"%s\" must be 1 to 63 bytes of UTF-8", path, name ? name : "");
    for (int64_t i = 0; i < w->n_infos; i++)
        if (strcmp(w->infos[i].name, name) == 0)
            return tlm_fail(TLM_EINVAL, "%s: tensor \"%s\" is given twice", path, name);
    if (ndim < 1 || ndim > TLM_GGUF_MAX_DIMS)
        return tlm_fail(TLM_EINVAL, "%s: tensor \"%s\": ndim %d is outside [1, %d]", path, name, ndim,
                        TLM_GGUF_MAX_DIMS);
    int64_t block = tlm_ggml_block_elems(type);
    if (block <= 0) return tlm_fail(TLM_EINVAL, "%s: tensor \"%s\": %d is not a ggml type", path, name, type);
    info t = {.ndim = ndim, .type = type};
    uint64_t rows = 1;
    for (int d = 0; d < TLM_GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < ndim ? ne[d] : 1;
        if (t.ne[d] < 0) return tlm_fail(TLM_EINVAL, "%s: tensor \"%s\": ne[%d] is negative", path, name, d);
        if (d && __builtin_mul_overflow(rows, (uint64_t)t.ne[d], &rows))
            return tlm_fail(TLM_EINVAL, "%s: tensor \"%s\" is too large", path, name);
    }
    if (t.ne[0] % block)
        return tlm_fail(TLM_EINVAL, "%s: tensor \"%s\": row length %lld is not a multiple of %s's block of %lld", path,
                        name, (long long)t.ne[0], tlm_ggml_type_name(type), (long long)block);
    uint64_t row_bytes = (uint64_t)(t.ne[0] / block) * (uint64_t)tlm_ggml_block_bytes(type);
    if (__builtin_mul_overflow(rows, row_bytes, &t.nbytes))
        return tlm_fail(TLM_EINVAL, "%s: tensor \"%s\" is too large", path, name);
    if (w->n_infos == w->cap_infos) {
        int64_t cap = w->cap_infos ? 2 * w->cap_infos : 64;
        info *grown = realloc(w->infos, (size_t)cap * sizeof *grown);
        if (!grown) return tlm_fail(TLM_ENOMEM, "%s: no memory", path);
        w->infos = grown;
        w->cap_infos = cap;
    }
    if (!(t.name = strdup(name))) return tlm_fail(TLM_ENOMEM, "%s: no memory", path);
    t.offset = w->data_size;
    w->data_size += pad_to(t.nbytes, w->alignment);
    w->infos[w->n_infos++] = t;
    return TLM_OK;
}

static const unsigned char ZEROS[256];

static tlm_status write_padding(tlm_gguf_writer *w, uint64_t n) {
    while (n) {
        uint64_t chunk = n < sizeof ZEROS ? n : sizeof ZEROS;
        TLM_TRY(tlm_atomic_write(&w->file, ZEROS, chunk));
        n -= chunk;
    }
    return TLM_OK;
}

static tlm_status write_header(tlm_gguf_writer *w) {
    bytes h = {0};
    put(&h, "GGUF", 4);
    put_uint(&h, TLM_GGUF_VERSION, 4);
    put_uint(&h, (uint64_t)w->n_infos, 8);
    put_uint(&h, (uint64_t)w->n_kv, 8);
    put(&h, w->kvs.p, w->kvs.len);
    for (int64_t i = 0; i < w->n_infos; i++) {
        const info *t = &w->infos[i];
        put_str(&h, t->name, strlen(t->name));
        put_uint(&h, (uint64_t)t->ndim, 4);
        for (int d = 0; d < t->ndim; d++) put_uint(&h, (uint64_t)t->ne[d], 8);
        put_uint(&h, (uint64_t)t->type, 4);
        put_uint(&h, t->offset, 8);
    }
    tlm_status st = h.failed || w->kvs.failed ? tlm_fail(TLM_ENOMEM, "%s: no memory for the header", w->file.path)
                                              : tlm_atomic_write(&w->file, h.p, h.len);
    if (st == TLM_OK) st = write_padding(w, pad_to(h.len, w->alignment) - h.len);
    free(h.p);
    w->written = 0;
    return st;
}

tlm_status tlm_gguf_writer_write_tensor(tlm_gguf_writer *w, const void *data, uint64_t nbytes) {
    if (w->written < 0) TLM_TRY(write_header(w));
    if (w->written >= w->n_infos)
        return tlm_fail(TLM_EINVAL, "%s: data for more tensors than the %lld added", w->file.path,
                        (long long)w->n_infos);
    const info *t = &w->infos[w->written];
    if (nbytes != t->nbytes || (nbytes && !data))
        return tlm_fail(TLM_EINVAL, "%s: tensor \"%s\" takes %llu bytes as %s, got %llu", w->file.path, t->name,
                        (unsigned long long)t->nbytes, tlm_ggml_type_name(t->type), (unsigned long long)nbytes);
    TLM_TRY(tlm_atomic_write(&w->file, data, nbytes));
    if (w->written == 0) tlm_test_point("gguf:partial");  /* header and one tensor on disk */
    TLM_TRY(write_padding(w, pad_to(nbytes, w->alignment) - nbytes));
    w->written++;
    return TLM_OK;
}

tlm_status tlm_gguf_writer_commit(tlm_gguf_writer *w) {
    tlm_status st = w->written < 0 ? write_header(w) : TLM_OK;
    if (st == TLM_OK && w->written < w->n_infos)
        st = tlm_fail(TLM_EINVAL, "%s: data of tensor \"%s\" (and %lld more) was never written", w->file.path,
                      w->infos[w->written].name, (long long)(w->n_infos - w->written - 1));
    if (st != TLM_OK) {
        tlm_gguf_writer_abandon(w);
        return st;
    }
    st = tlm_atomic_commit(&w->file, "gguf:rename");
    free_writer(w);
    return st;
}
