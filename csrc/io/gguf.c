/* gguf.c: reader of llama.cpp's GGUF files (versions 2 and 3).
 *
 * Layout (all little-endian): "GGUF", u32 version, u64 tensor count, u64
 * key/value count; each key/value as a string key (u64 length + bytes), a u32
 * value type and the value (a string, a scalar, or an array: u32 element
 * type, u64 count, elements); each tensor info as a string name, u32 ndim,
 * ndim u64 dimensions (ggml order), u32 ggml type and u64 offset; padding to
 * general.alignment; then the data section, each tensor at an aligned offset.
 *
 * Like the safetensors reader, the file is mapped and everything is checked
 * before a tensor byte is handed out: a cursor that never reads past the end,
 * counts bounded by the bytes left (so an absurd count fails before any
 * allocation), types and lengths, UTF-8 keys, names and string values,
 * unique keys and names, sizes that fit 64 bits, row lengths a multiple of
 * the type's block, offsets aligned, inside the file and not overlapping.
 * llama.cpp itself also insists that tensors are packed in file order; this
 * reader accepts any non-overlapping aligned layout (as the gguf package
 * does), so files edited in place by other tools still load.
 */
#include "core/internal.h"
#include "io/mapped_file.h"
#include "io/gguf_format.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

typedef struct {
    char *key;               /* NUL-terminated copy */
    tlm_gguf_type type, elem_type;
    uint64_t n;
    const unsigned char *data;  /* numbers: into the map */
    int64_t first_str;       /* strings: index of the first in tlm_gguf_file.strs, or -1 */
} kv_entry;

typedef struct {
    char *name;  /* NUL-terminated copy */
    int ndim;
    int64_t ne[TLM_GGUF_MAX_DIMS];
    int type;
    uint64_t offset, nbytes;
} tensor_entry;

struct tlm_gguf_file {
    char *path;
    const unsigned char *map;  /* [map_size] the whole file, read-only */
    size_t map_size;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;      /* where the data section starts */
    kv_entry *kvs;             /* [n_kv] in file order */
    int64_t n_kv;
    int64_t *kv_by_key;        /* [n_kv] indices sorted by key */
    tlm_gguf_str *strs;        /* every string value, arrays' elements in order */
    int64_t n_strs;
    tensor_entry *tensors;     /* [n_tensors] in file order */
    int64_t n_tensors;
    int64_t *tensor_by_name;   /* [n_tensors] indices sorted by name */
};

/* ------------------------------------------------------------ cursor */

typedef struct {
    const tlm_gguf_file *f;
    uint64_t pos;  /* next byte to read; never past map_size */
} cursor;

static uint64_t left(const cursor *c) { return c->f->map_size - c->pos; }

static tlm_status need(const cursor *c, uint64_t n, const char *what) {
    if (n <= left(c)) return TLM_OK;
    return tlm_fail(TLM_EFORMAT, "%s: truncated: %s needs %llu bytes at offset %llu but the file has %llu left",
                    c->f->path, what, (unsigned long long)n, (unsigned long long)c->pos,
                    (unsigned long long)left(c));
}

static uint64_t le(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static tlm_status read_uint(cursor *c, int bytes, const char *what, uint64_t *out) {
    TLM_TRY(need(c, (uint64_t)bytes, what));
    *out = le(c->f->map + c->pos, bytes);
    c->pos += (uint64_t)bytes;
    return TLM_OK;
}

/* A string: u64 length, then that many bytes, which must be UTF-8. */
static tlm_status read_str(cursor *c, const char *what, tlm_gguf_str *out) {
    uint64_t len;
    TLM_TRY(read_uint(c, 8, what, &len));
    TLM_TRY(need(c, len, what));
    out->ptr = (const char *)c->f->map + c->pos;
    out->len = len;
    if (!tlm_utf8_valid_n(out->ptr, len))
        return tlm_fail(TLM_EFORMAT, "%s: %s at offset %llu is not valid UTF-8", c->f->path, what,
                        (unsigned long long)c->pos);
    c->pos += len;
    return TLM_OK;
}

/* A key or tensor name as a C string: non-empty, no NUL inside. */
static tlm_status read_name(cursor *c, const char *what, char **out) {
    tlm_gguf_str s;
    TLM_TRY(read_str(c, what, &s));
    if (s.len == 0 || memchr(s.ptr, '\0', s.len))
        return tlm_fail(TLM_EFORMAT, "%s: %s at offset %llu is %s", c->f->path, what,
                        (unsigned long long)(c->pos - s.len), s.len ? "a string with a NUL byte" : "empty");
    if (!(*out = strndup(s.ptr, s.len))) return tlm_fail(TLM_ENOMEM, "%s: no memory", c->f->path);
    return TLM_OK;
}

/* ------------------------------------------------------------ metadata */

static tlm_status read_type(cursor *c, const char *key, const char *what, tlm_gguf_type *out) {
    uint64_t t;
    TLM_TRY(read_uint(c, 4, what, &t));
    if (t >= TLM_GGUF_TYPE_COUNT)
        return tlm_fail(TLM_EFORMAT, "%s: key \"%s\": %s %llu is not a GGUF value type", c->f->path, key, what,
                        (unsigned long long)t);
    *out = (tlm_gguf_type)t;
    return TLM_OK;
}

/* The strings of one value, recorded in f->strs (grown as needed). */
static tlm_status read_strings(cursor *c, tlm_gguf_file *f, kv_entry *e, int64_t *cap) {
    e->first_str = f->n_strs;
    if ((uint64_t)(*cap - f->n_strs) < e->n) {
        int64_t want = *cap ? *cap : 64;
        while ((uint64_t)(want - f->n_strs) < e->n) want *= 2;
        tlm_gguf_str *grown = realloc(f->strs, (size_t)want * sizeof *grown);
        if (!grown) return tlm_fail(TLM_ENOMEM, "%s: key \"%s\": no memory for %llu strings", f->path, e->key,
                                    (unsigned long long)e->n);
        f->strs = grown;
        *cap = want;
    }
    char what[64];
    for (uint64_t j = 0; j < e->n; j++) {
        snprintf(what, sizeof what, e->type == TLM_GGUF_ARRAY ? "string [%llu]" : "string value",
                 (unsigned long long)j);
        tlm_status st = read_str(c, what, &f->strs[f->n_strs]);
        if (st != TLM_OK) return tlm_fail_context(st, "key \"%s\"", e->key);
        f->n_strs++;
    }
    return TLM_OK;
}

static tlm_status read_value(cursor *c, tlm_gguf_file *f, kv_entry *e, int64_t *str_cap) {
    TLM_TRY(read_type(c, e->key, "value type", &e->type));
    e->elem_type = e->type;
    e->n = 1;
    e->first_str = -1;
    if (e->type == TLM_GGUF_ARRAY) {
        TLM_TRY(read_type(c, e->key, "array element type", &e->elem_type));
        if (e->elem_type == TLM_GGUF_ARRAY)
            return tlm_fail(TLM_EUNSUPPORTED, "%s: key \"%s\": arrays of arrays are not supported (nor by llama.cpp)",
                            f->path, e->key);
        TLM_TRY(read_uint(c, 8, "array length", &e->n));
    }
    if (e->elem_type == TLM_GGUF_STRING) {
        /* each string takes at least its 8-byte length */
        if (e->n > left(c) / 8)
            return tlm_fail(TLM_EFORMAT, "%s: key \"%s\": array of %llu strings cannot fit in the %llu bytes left",
                            f->path, e->key, (unsigned long long)e->n, (unsigned long long)left(c));
        return read_strings(c, f, e, str_cap);
    }
    uint64_t size = tlm_gguf_value_size(e->elem_type);
    if (e->n > left(c) / size)
        return tlm_fail(TLM_EFORMAT, "%s: key \"%s\": %llu values of %llu bytes cannot fit in the %llu bytes left",
                        f->path, e->key, (unsigned long long)e->n, (unsigned long long)size,
                        (unsigned long long)left(c));
    e->data = f->map + c->pos;
    if (e->elem_type == TLM_GGUF_BOOL)
        for (uint64_t j = 0; j < e->n; j++)
            if (e->data[j] > 1)
                return tlm_fail(TLM_EFORMAT, "%s: key \"%s\": bool value %u at element %llu is not 0 or 1", f->path,
                                e->key, e->data[j], (unsigned long long)j);
    c->pos += e->n * size;
    return TLM_OK;
}

static const char *kv_key_of(const void *base, int64_t i) { return ((const kv_entry *)base)[i].key; }
static const char *tensor_name_of(const void *base, int64_t i) { return ((const tensor_entry *)base)[i].name; }

static tlm_status read_metadata(cursor *c, tlm_gguf_file *f, uint64_t n_kv) {
    /* a key/value takes at least 8 (key length) + 1 (key) + 4 (type) + 1 bytes */
    if (n_kv > left(c) / 14)
        return tlm_fail(TLM_EFORMAT, "%s: header claims %llu key/values but only %llu bytes follow", f->path,
                        (unsigned long long)n_kv, (unsigned long long)left(c));
    f->kvs = calloc((size_t)n_kv + 1, sizeof *f->kvs);
    if (!f->kvs) return tlm_fail(TLM_ENOMEM, "%s: no memory for %llu key/values", f->path, (unsigned long long)n_kv);
    int64_t str_cap = 0;
    for (uint64_t i = 0; i < n_kv; i++) {
        kv_entry *e = &f->kvs[i];
        char what[48];
        snprintf(what, sizeof what, "key of key/value %llu", (unsigned long long)i);
        TLM_TRY(read_name(c, what, &e->key));
        f->n_kv++;
        TLM_TRY(read_value(c, f, e, &str_cap));
    }
    const char *dup = NULL;
    TLM_TRY(tlm_gguf_sort_names(f->kvs, f->n_kv, kv_key_of, &f->kv_by_key, &dup, f->path));
    if (dup) return tlm_fail(TLM_EFORMAT, "%s: key \"%s\" appears twice", f->path, dup);
    return TLM_OK;
}

/* general.alignment: a u32 power of two, or the default when absent. */
static tlm_status read_alignment(tlm_gguf_file *f) {
    f->alignment = TLM_GGUF_DEFAULT_ALIGNMENT;
    int64_t i = tlm_gguf_kv_find(f, TLM_GGUF_KEY_ALIGNMENT);
    if (i < 0) return TLM_OK;
    const kv_entry *e = &f->kvs[i];
    if (e->type != TLM_GGUF_UINT32)
        return tlm_fail(TLM_EFORMAT, "%s: key \"%s\" must be a uint32 (got %s)", f->path, TLM_GGUF_KEY_ALIGNMENT,
                        tlm_gguf_type_name(e->type));
    uint64_t a = le(e->data, 4);
    if (a == 0 || (a & (a - 1)))
        return tlm_fail(TLM_EFORMAT, "%s: key \"%s\" = %llu is not a power of two", f->path, TLM_GGUF_KEY_ALIGNMENT,
                        (unsigned long long)a);
    f->alignment = a;
    return TLM_OK;
}

/* ------------------------------------------------------------ tensors */

static tlm_status read_tensor_info(cursor *c, tlm_gguf_file *f, tensor_entry *t) {
    uint64_t ndim, type;
    TLM_TRY(read_uint(c, 4, "tensor ndim", &ndim));
    if (ndim < 1 || ndim > TLM_GGUF_MAX_DIMS)
        return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": %llu dimensions (GGUF allows 1 to %d)", f->path, t->name,
                        (unsigned long long)ndim, TLM_GGUF_MAX_DIMS);
    t->ndim = (int)ndim;
    for (int d = 0; d < TLM_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        uint64_t v;
        TLM_TRY(read_uint(c, 8, "tensor dimension", &v));
        if (v > (uint64_t)INT64_MAX || __builtin_mul_overflow(numel, v, &numel) || numel > (uint64_t)INT64_MAX)
            return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": dimension %d (%llu) makes it too large", f->path,
                            t->name, d, (unsigned long long)v);
        t->ne[d] = (int64_t)v;
    }
    TLM_TRY(read_uint(c, 4, "tensor type", &type));
    TLM_TRY(read_uint(c, 8, "tensor offset", &t->offset));
    int64_t block = type < 1024 ? tlm_ggml_block_elems((int)type) : 0;
    if (block <= 0)
        return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": type %llu is not a ggml type", f->path, t->name,
                        (unsigned long long)type);
    t->type = (int)type;
    if (t->ne[0] % block)
        return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": row length %lld is not a multiple of %s's block of %lld",
                        f->path, t->name, (long long)t->ne[0], tlm_ggml_type_name(t->type), (long long)block);
    uint64_t rows = numel / (uint64_t)(t->ne[0] ? t->ne[0] : 1), row_bytes = 0;
    if (t->ne[0] == 0) rows = 0;
    row_bytes = (uint64_t)(t->ne[0] / block) * (uint64_t)tlm_ggml_block_bytes(t->type);
    if (__builtin_mul_overflow(rows, row_bytes, &t->nbytes))
        return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\" is too large", f->path, t->name);
    return TLM_OK;
}

static tlm_status read_tensor_infos(cursor *c, tlm_gguf_file *f, uint64_t n) {
    /* an info takes at least 8 + 1 (name) + 4 (ndim) + 8 (a dimension) + 4 (type) + 8 (offset) bytes */
    if (n > left(c) / 33)
        return tlm_fail(TLM_EFORMAT, "%s: header claims %llu tensors but only %llu bytes follow", f->path,
                        (unsigned long long)n, (unsigned long long)left(c));
    f->tensors = calloc((size_t)n + 1, sizeof *f->tensors);
    if (!f->tensors) return tlm_fail(TLM_ENOMEM, "%s: no memory for %llu tensors", f->path, (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        tensor_entry *t = &f->tensors[i];
        char what[48];
        snprintf(what, sizeof what, "name of tensor %llu", (unsigned long long)i);
        TLM_TRY(read_name(c, what, &t->name));
        f->n_tensors++;
        TLM_TRY(read_tensor_info(c, f, t));
    }
    const char *dup = NULL;
    TLM_TRY(tlm_gguf_sort_names(f->tensors, f->n_tensors, tensor_name_of, &f->tensor_by_name, &dup, f->path));
    if (dup) return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\" appears twice", f->path, dup);
    return TLM_OK;
}

typedef struct {
    uint64_t offset, nbytes;
    int64_t index;  /* in file order: breaks ties so messages do not depend on qsort */
} extent;

static int cmp_extent(const void *a, const void *b) {
    const extent *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Each tensor aligned, inside the data section, and clear of the next one. */
static tlm_status check_layout(tlm_gguf_file *f) {
    uint64_t data_size = f->map_size - f->data_offset;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const tensor_entry *t = &f->tensors[i];
        if (t->offset % f->alignment)
            return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": offset %llu is not a multiple of the alignment %llu",
                            f->path, t->name, (unsigned long long)t->offset, (unsigned long long)f->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": bytes [%llu, %llu) of the data section run past its "
                            "end (%llu bytes)", f->path, t->name, (unsigned long long)t->offset,
                            (unsigned long long)(t->offset + t->nbytes), (unsigned long long)data_size);
    }
    extent *order = malloc(((size_t)f->n_tensors + 1) * sizeof *order);
    if (!order) return tlm_fail(TLM_ENOMEM, "%s: no memory to check the layout", f->path);
    for (int64_t i = 0; i < f->n_tensors; i++)
        order[i] = (extent){f->tensors[i].offset, f->tensors[i].nbytes, i};
    qsort(order, (size_t)f->n_tensors, sizeof *order, cmp_extent);
    tlm_status st = TLM_OK;
    for (int64_t i = 1; i < f->n_tensors && st == TLM_OK; i++) {
        const tensor_entry *prev = &f->tensors[order[i - 1].index], *t = &f->tensors[order[i].index];
        if (prev->nbytes && t->nbytes && t->offset < prev->offset + prev->nbytes)
            st = tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\" at [%llu, %llu) overlaps tensor \"%s\" at [%llu, %llu)",
                          f->path, t->name, (unsigned long long)t->offset,
                          (unsigned long long)(t->offset + t->nbytes), prev->name,
                          (unsigned long long)prev->offset, (unsigned long long)(prev->offset + prev->nbytes));
    }
    free(order);
    return st;
}

/* ------------------------------------------------------------ open */

static tlm_status map_file(tlm_gguf_file *f) {
    unsigned char *map = NULL;
    TLM_TRY(tlm_map_file(f->path, 24, "for a GGUF header (24)", &map, &f->map_size));
    f->map = map;
    return TLM_OK;
}

static tlm_status read_header(cursor *c, tlm_gguf_file *f, uint64_t *n_tensors, uint64_t *n_kv) {
    if (memcmp(f->map, "GGUF", 4) != 0)
        return tlm_fail(TLM_EFORMAT, "%s: not a GGUF file (magic bytes %02x %02x %02x %02x, expected \"GGUF\")",
                        f->path, f->map[0], f->map[1], f->map[2], f->map[3]);
    c->pos = 4;
    uint64_t version;
    TLM_TRY(read_uint(c, 4, "version", &version));
    if ((version & 0xFFFF) == 0 && version)
        return tlm_fail(TLM_EUNSUPPORTED, "%s: a big-endian GGUF file (version field %llu); tinylm reads "
                        "little-endian files", f->path, (unsigned long long)version);
    if (version == 1)
        return tlm_fail(TLM_EUNSUPPORTED, "%s: GGUF version 1 is not supported (nor by llama.cpp); convert it "
                        "again", f->path);
    if (version < 2 || version > 3)
        return tlm_fail(TLM_EFORMAT, "%s: GGUF version %llu (tinylm reads versions 2 and 3)", f->path,
                        (unsigned long long)version);
    f->version = (uint32_t)version;
    TLM_TRY(read_uint(c, 8, "tensor count", n_tensors));
    return read_uint(c, 8, "key/value count", n_kv);
}

tlm_status tlm_gguf_open(const char *path, tlm_gguf_file **out) {
    *out = NULL;
    tlm_gguf_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return tlm_fail(TLM_ENOMEM, "%s: no memory to open", path);
    }
    cursor c = {f, 0};
    uint64_t n_tensors = 0, n_kv = 0;
    tlm_status st = map_file(f);
    if (st == TLM_OK) st = read_header(&c, f, &n_tensors, &n_kv);
    if (st == TLM_OK) st = read_metadata(&c, f, n_kv);
    if (st == TLM_OK) st = read_alignment(f);
    if (st == TLM_OK) st = read_tensor_infos(&c, f, n_tensors);
    if (st == TLM_OK) {
        /* the data section starts at the next multiple of the alignment; a
         * file without tensors may end before that padding */
        uint64_t pad = (f->alignment - c.pos % f->alignment) % f->alignment;
        f->data_offset = c.pos + (f->n_tensors || pad <= left(&c) ? pad : 0);
        if (f->data_offset > f->map_size)
            st = tlm_fail(TLM_EFORMAT, "%s: truncated: the padding before the data section runs past the end",
                          f->path);
    }
    if (st == TLM_OK) st = check_layout(f);
    if (st != TLM_OK) {
        tlm_gguf_close(f);
        return st;
    }
    *out = f;
    return TLM_OK;
}

void tlm_gguf_close(tlm_gguf_file *f) {
    if (!f) return;
    if (f->map) munmap((void *)f->map, f->map_size);
    for (int64_t i = 0; i < f->n_kv; i++) free(f->kvs[i].key);
    for (int64_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->kvs);
    free(f->kv_by_key);
    free(f->strs);
    free(f->tensors);
    free(f->tensor_by_name);
    free(f->path);
    free(f);
}

/* ------------------------------------------------------------ access */

uint32_t tlm_gguf_version(const tlm_gguf_file *f) { return f->version; }
uint64_t tlm_gguf_alignment(const tlm_gguf_file *f) { return f->alignment; }
uint64_t tlm_gguf_data_offset(const tlm_gguf_file *f) { return f->data_offset; }
int64_t tlm_gguf_kv_count(const tlm_gguf_file *f) { return f->n_kv; }
int64_t tlm_gguf_tensor_count(const tlm_gguf_file *f) { return f->n_tensors; }

tlm_status tlm_gguf_kv_get(const tlm_gguf_file *f, int64_t i, tlm_gguf_kv *out) {
    if (i < 0 || i >= f->n_kv)
        return tlm_fail(TLM_EINVAL, "%s: key/value index %lld out of range [0, %lld)", f->path, (long long)i,
                        (long long)f->n_kv);
    const kv_entry *e = &f->kvs[i];
    out->key = e->key;
    out->type = e->type;
    out->elem_type = e->elem_type;
    out->n = e->n;
    out->data = e->first_str < 0 ? e->data : NULL;
    out->strs = e->first_str < 0 ? NULL : f->strs + e->first_str;
    return TLM_OK;
}

int64_t tlm_gguf_kv_find(const tlm_gguf_file *f, const char *key) {
    return tlm_gguf_lookup(f->kvs, f->kv_by_key, f->n_kv, kv_key_of, key);
}

static void fill_tensor(const tlm_gguf_file *f, const tensor_entry *t, tlm_gguf_tensor *out) {
    out->name = t->name;
    out->ndim = t->ndim;
    memcpy(out->ne, t->ne, sizeof out->ne);
    out->type = t->type;
    out->offset = t->offset;
    out->nbytes = t->nbytes;
    out->data = f->map + f->data_offset + t->offset;
}

tlm_status tlm_gguf_tensor_get(const tlm_gguf_file *f, int64_t i, tlm_gguf_tensor *out) {
    if (i < 0 || i >= f->n_tensors)
        return tlm_fail(TLM_EINVAL, "%s: tensor index %lld out of range [0, %lld)", f->path, (long long)i,
                        (long long)f->n_tensors);
    fill_tensor(f, &f->tensors[i], out);
    return TLM_OK;
}

tlm_status tlm_gguf_tensor_find(const tlm_gguf_file *f, const char *name, tlm_gguf_tensor *out) {
    int64_t i = tlm_gguf_lookup(f->tensors, f->tensor_by_name, f->n_tensors, tensor_name_of, name);
    if (i < 0) return tlm_fail(TLM_EINVAL, "%s: no tensor named \"%s\"", f->path, name);
    fill_tensor(f, &f->tensors[i], out);
    return TLM_OK;
}
