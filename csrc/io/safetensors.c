/* safetensors.c: reader and writer of the safetensors format.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON header, then the
 * data buffer. The reader maps the file and validates the whole header before
 * handing out a pointer into the data, so a caller never reads past the file
 * on account of a malformed header. The rules are those of the `safetensors`
 * package (the reference reader): offsets sorted by (begin, end) must tile the
 * data buffer exactly, zero-byte tensors included.
 */
#include "core/internal.h"
#include "io/atomic_file.h"
#include "io/mapped_file.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define HEADER_LEN_BYTES 8
#define MAX_HEADER_BYTES 100000000ull   /* the reference reader's cap */
#define MAX_EXACT_DOUBLE 9007199254740992.0 /* 2^53: above it cJSON's doubles lose integers */

typedef struct {
    const char *name;             /* key in the parsed header */
    tlm_dtype dtype;
    int ndim;
    int64_t shape[TLM_MAX_DIMS];  /* [ndim] */
    uint64_t begin, end;          /* data_offsets, relative to the data buffer */
} st_entry;

struct tlm_st_file {
    char *path;
    unsigned char *map;            /* [map_size] the whole file, read-only */
    size_t map_size;
    const unsigned char *data;     /* [data_size] the data buffer inside map */
    uint64_t data_size;
    cJSON *json;                   /* parsed header: owns every name, key and value string */
    st_entry *tensors;             /* [n_tensors] in header order */
    st_entry **by_name;            /* [n_tensors] sorted by name, for find */
    int64_t n_tensors;
    const char **meta_keys;        /* [n_meta] in header order */
    const char **meta_values;      /* [n_meta] */
    int64_t n_meta;
};

/* ------------------------------------------------------------ helpers */

static void format_shape(const int64_t *shape, int ndim, char *buf, size_t cap) {
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

/* Elements times item size, or 0 with *overflow set when it does not fit in 64 bits. */
static uint64_t shape_bytes(const int64_t *shape, int ndim, tlm_dtype dt, int *overflow) {
    uint64_t n = 1;
    *overflow = 0;
    for (int i = 0; i < ndim; i++)
        if (__builtin_mul_overflow(n, (uint64_t)shape[i], &n)) { *overflow = 1; return 0; }
    if (__builtin_mul_overflow(n, (uint64_t)tlm_dtype_size(dt), &n)) { *overflow = 1; return 0; }
    return n;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first string that occurs twice in `strs` (sorted in place), or NULL. */
static const char *first_duplicate(const char **strs, int64_t n) {
    qsort(strs, (size_t)n, sizeof *strs, cmp_str_ptr);
    for (int64_t i = 1; i < n; i++)
        if (strcmp(strs[i - 1], strs[i]) == 0) return strs[i];
    return NULL;
}

/* ------------------------------------------------------------- reader */

static tlm_status map_file(tlm_st_file *f) {
    return tlm_map_file(f->path, HEADER_LEN_BYTES, "to hold the 8-byte header length", &f->map, &f->map_size);
}

/* cJSON accepts text that JSON (and the reference reader) does not: invalid
 * UTF-8 and raw control characters. It also turns an escaped NUL into the end
 * of a C string, which would silently shorten a name. This pass rejects all
 * three, and strings cut off by the end of the header. */
static tlm_status check_header_text(const char *path, const unsigned char *s, size_t n) {
    int in_string = 0;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c >= 0x80) {
            size_t len = tlm_utf8_sequence(s + i, n - i);
            if (!len) return tlm_fail(TLM_EFORMAT, "%s: header is not valid UTF-8 (byte %zu)", path, i);
            i += len;
        } else if (c < 0x20 && (in_string || (c != '\t' && c != '\n' && c != '\r'))) {
            return tlm_fail(TLM_EFORMAT, "%s: header has control character 0x%02x at byte %zu", path, c, i);
        } else if (in_string && c == '\\') {
            if (i + 6 <= n && memcmp(s + i + 1, "u0000", 5) == 0)
                return tlm_fail(TLM_EFORMAT, "%s: header has an escaped NUL (\\u0000) at byte %zu, "
                                "which tinylm cannot hold in a name", path, i);
            /* Skip the escaped character so \" does not end the string; a
             * non-ASCII one goes through the checks above on the next turn. */
            i += (i + 1 < n && s[i + 1] >= 0x20 && s[i + 1] < 0x80) ? 2 : 1;
        } else {
            if (c == '"') in_string = !in_string;
            i++;
        }
    }
    if (in_string) return tlm_fail(TLM_EFORMAT, "%s: header is not valid JSON (it ends inside a string)", path);
    return TLM_OK;
}

static tlm_status parse_header(tlm_st_file *f) {
    uint64_t n = 0;
    for (int i = HEADER_LEN_BYTES - 1; i >= 0; i--) n = (n << 8) | f->map[i];
    uint64_t after_len = f->map_size - HEADER_LEN_BYTES;
    if (n > MAX_HEADER_BYTES)
        return tlm_fail(TLM_EFORMAT, "%s: header length %llu exceeds the limit of %llu bytes",
                        f->path, (unsigned long long)n, MAX_HEADER_BYTES);
    if (n > after_len)
        return tlm_fail(TLM_EFORMAT, "%s: header length %llu runs past the end of the file (%llu bytes follow the length)",
                        f->path, (unsigned long long)n, (unsigned long long)after_len);
    const unsigned char *text = f->map + HEADER_LEN_BYTES;
    f->data = text + n;
    f->data_size = after_len - n;
    if (n == 0 || text[0] != '{') return tlm_fail(TLM_EFORMAT, "%s: header does not start with '{'", f->path);
    TLM_TRY(check_header_text(f->path, text, n));

    /* A NUL-terminated copy: older cJSON releases read one byte past a
     * length-limited buffer in some malformed strings (CVE-2023-53154). */
    char *copy = malloc(n + 1);
    if (!copy) return tlm_fail(TLM_ENOMEM, "%s: no memory for a %llu-byte header", f->path, (unsigned long long)n);
    memcpy(copy, text, n);
    copy[n] = '\0';
    const char *end = NULL;
    f->json = cJSON_ParseWithLengthOpts(copy, n, &end, 0);
    size_t stop = end ? (size_t)(end - copy) : 0;
    free(copy);
    if (!f->json) return tlm_fail(TLM_EFORMAT, "%s: header is not valid JSON (error near byte %zu)", f->path, stop);
    /* The first byte is '{', so a successful parse is an object; what follows
     * it may only be whitespace (space padding, as writers add). */
    for (size_t i = stop; i < n; i++)
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\n' && text[i] != '\r')
            return tlm_fail(TLM_EFORMAT, "%s: header has data after the JSON object (byte %zu)", f->path, i);
    return TLM_OK;
}

/* cJSON holds numbers as doubles: accept integral values in [0, 2^53], where
 * every integer is exact. */
static int json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double v = item->valuedouble;
    if (!(v >= 0 && v <= MAX_EXACT_DOUBLE) || v != (double)(uint64_t)v) return 0;
    *out = (uint64_t)v;
    return 1;
}

static tlm_status parse_dtype(const tlm_st_file *f, const char *name, const cJSON *item, st_entry *e) {
    if (!cJSON_IsString(item)) return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": dtype is not a string", f->path, name);
    if (tlm_dtype_from_name(item->valuestring, &e->dtype) != TLM_OK)
        return tlm_fail_context(TLM_EFORMAT, "%s: tensor \"%s\"", f->path, name);
    return TLM_OK;
}

static tlm_status parse_shape(const tlm_st_file *f, const char *name, const cJSON *item, st_entry *e) {
    if (!cJSON_IsArray(item)) return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": shape is not an array", f->path, name);
    e->ndim = 0;
    for (const cJSON *dim = item->child; dim; dim = dim->next) {
        uint64_t v;
        if (e->ndim == TLM_MAX_DIMS)
            return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": shape has more than %d dimensions",
                            f->path, name, TLM_MAX_DIMS);
        if (!json_uint(dim, &v))
            return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": shape[%d] is not a non-negative integer",
                            f->path, name, e->ndim);
        e->shape[e->ndim++] = (int64_t)v;
    }
    return TLM_OK;
}

static tlm_status parse_offsets(const tlm_st_file *f, const char *name, const cJSON *item, st_entry *e) {
    const cJSON *b = cJSON_IsArray(item) ? item->child : NULL;
    const cJSON *en = b ? b->next : NULL;
    if (!en || en->next || !json_uint(b, &e->begin) || !json_uint(en, &e->end))
        return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": data_offsets is not a pair of non-negative integers",
                        f->path, name);
    if (e->begin > e->end)
        return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": data_offsets [%llu, %llu] begin after end", f->path, name,
                        (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end > f->data_size)
        return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": data_offsets [%llu, %llu] end past the data buffer of %llu bytes",
                        f->path, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                        (unsigned long long)f->data_size);
    return TLM_OK;
}

static tlm_status check_size(const tlm_st_file *f, const st_entry *e) {
    char shape[160];
    int overflow;
    uint64_t need = shape_bytes(e->shape, e->ndim, e->dtype, &overflow);
    format_shape(e->shape, e->ndim, shape, sizeof shape);
    if (overflow)
        return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": shape %s of %s is too large", f->path, e->name, shape,
                        tlm_dtype_name(e->dtype));
    if (e->end - e->begin != need)
        return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": data_offsets [%llu, %llu] hold %llu bytes but shape %s of %s needs %llu",
                        f->path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                        (unsigned long long)(e->end - e->begin), shape, tlm_dtype_name(e->dtype),
                        (unsigned long long)need);
    return TLM_OK;
}

static tlm_status parse_entry(const tlm_st_file *f, const cJSON *item, st_entry *e) {
    const char *name = item->string;
    e->name = name;
    if (!cJSON_IsObject(item)) return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": entry is not an object", f->path, name);
    const cJSON *dtype = NULL, *shape = NULL, *offsets = NULL;
    for (const cJSON *field = item->child; field; field = field->next) {
        const cJSON **slot = strcmp(field->string, "dtype") == 0          ? &dtype
                             : strcmp(field->string, "shape") == 0        ? &shape
                             : strcmp(field->string, "data_offsets") == 0 ? &offsets
                                                                          : NULL;
        if (!slot) continue; /* the reference reader ignores other fields */
        if (*slot) return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": field \"%s\" appears twice", f->path, name, field->string);
        *slot = field;
    }
    const char *missing = !dtype ? "dtype" : !shape ? "shape" : !offsets ? "data_offsets" : NULL;
    if (missing) return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": missing \"%s\"", f->path, name, missing);
    TLM_TRY(parse_dtype(f, name, dtype, e));
    TLM_TRY(parse_shape(f, name, shape, e));
    TLM_TRY(parse_offsets(f, name, offsets, e));
    return check_size(f, e);
}

static tlm_status parse_metadata(tlm_st_file *f, const cJSON *item) {
    if (cJSON_IsNull(item)) return TLM_OK; /* the reference reader reads null as no metadata */
    if (!cJSON_IsObject(item)) return tlm_fail(TLM_EFORMAT, "%s: __metadata__ is not an object", f->path);
    int64_t n = cJSON_GetArraySize(item);
    f->meta_keys = calloc((size_t)n + 1, sizeof *f->meta_keys);
    f->meta_values = calloc((size_t)n + 1, sizeof *f->meta_values);
    const char **sorted = calloc((size_t)n + 1, sizeof *sorted);
    tlm_status st = TLM_OK;
    if (!f->meta_keys || !f->meta_values || !sorted) st = tlm_fail(TLM_ENOMEM, "%s: no memory for metadata", f->path);
    for (const cJSON *kv = item->child; kv && st == TLM_OK; kv = kv->next) {
        if (!cJSON_IsString(kv))
            st = tlm_fail(TLM_EFORMAT, "%s: __metadata__ value of \"%s\" is not a string", f->path, kv->string);
        else {
            f->meta_keys[f->n_meta] = sorted[f->n_meta] = kv->string;
            f->meta_values[f->n_meta++] = kv->valuestring;
        }
    }
    /* The reference reader keeps the last of repeated keys; a file that says
     * two things about one key is refused here instead of guessed at. */
    const char *dup = st == TLM_OK ? first_duplicate(sorted, f->n_meta) : NULL;
    if (dup) st = tlm_fail(TLM_EFORMAT, "%s: __metadata__ key \"%s\" appears twice", f->path, dup);
    free(sorted);
    return st;
}

static tlm_status parse_entries(tlm_st_file *f) {
    int64_t n = cJSON_GetArraySize(f->json);
    int seen_metadata = 0;
    f->tensors = calloc((size_t)n + 1, sizeof *f->tensors);
    if (!f->tensors) return tlm_fail(TLM_ENOMEM, "%s: no memory for %lld tensors", f->path, (long long)n);
    for (const cJSON *item = f->json->child; item; item = item->next) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (seen_metadata++) return tlm_fail(TLM_EFORMAT, "%s: __metadata__ appears twice", f->path);
            TLM_TRY(parse_metadata(f, item));
        } else {
            TLM_TRY(parse_entry(f, item, &f->tensors[f->n_tensors]));
            f->n_tensors++;
        }
    }
    return TLM_OK;
}

/* Orders by (begin, end) like the reference reader; ties by header position
 * (entries live in one array) so messages do not depend on qsort. */
static int cmp_offsets(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return (x > y) - (x < y);
}

/* Sorted by offsets, each tensor must start where the previous one ended and
 * the last must end at the end of the file: no overlaps, holes or trailing
 * bytes. Zero-byte tensors may sit at any boundary, as in the reference. */
static tlm_status check_layout(tlm_st_file *f) {
    st_entry **order = malloc(((size_t)f->n_tensors + 1) * sizeof *order);
    if (!order) return tlm_fail(TLM_ENOMEM, "%s: no memory to check the layout", f->path);
    for (int64_t i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
    qsort(order, (size_t)f->n_tensors, sizeof *order, cmp_offsets);
    tlm_status st = TLM_OK;
    uint64_t pos = 0;
    const st_entry *prev = NULL;
    for (int64_t i = 0; i < f->n_tensors && st == TLM_OK; i++) {
        const st_entry *e = order[i];
        if (e->begin < pos)
            st = tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\": data_offsets [%llu, %llu] overlap tensor \"%s\" [%llu, %llu]",
                          f->path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end, prev->name,
                          (unsigned long long)prev->begin, (unsigned long long)prev->end);
        else if (e->begin > pos)
            st = tlm_fail(TLM_EFORMAT, "%s: data buffer bytes [%llu, %llu) belong to no tensor (a hole before tensor \"%s\")",
                          f->path, (unsigned long long)pos, (unsigned long long)e->begin, e->name);
        pos = e->end;
        prev = e;
    }
    if (st == TLM_OK && pos != f->data_size)
        st = tlm_fail(TLM_EFORMAT, "%s: data buffer bytes [%llu, %llu) after the last tensor belong to no tensor",
                      f->path, (unsigned long long)pos, (unsigned long long)f->data_size);
    free(order);
    return st;
}

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp((*(const st_entry *const *)a)->name, (*(const st_entry *const *)b)->name);
}

static tlm_status index_names(tlm_st_file *f) {
    f->by_name = malloc(((size_t)f->n_tensors + 1) * sizeof *f->by_name);
    if (!f->by_name) return tlm_fail(TLM_ENOMEM, "%s: no memory for the tensor index", f->path);
    for (int64_t i = 0; i < f->n_tensors; i++) f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, (size_t)f->n_tensors, sizeof *f->by_name, cmp_entry_name);
    for (int64_t i = 1; i < f->n_tensors; i++)
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0)
            return tlm_fail(TLM_EFORMAT, "%s: tensor \"%s\" appears twice in the header", f->path, f->by_name[i]->name);
    return TLM_OK;
}

tlm_status tlm_st_open(const char *path, tlm_st_file **out) {
    *out = NULL;
    tlm_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return tlm_fail(TLM_ENOMEM, "%s: no memory to open", path);
    }
    tlm_status st = map_file(f);
    if (st == TLM_OK) st = parse_header(f);
    if (st == TLM_OK) st = parse_entries(f);
    if (st == TLM_OK) st = index_names(f);
    if (st == TLM_OK) st = check_layout(f);
    if (st != TLM_OK) {
        tlm_st_close(f);
        return st;
    }
    *out = f;
    return TLM_OK;
}

void tlm_st_close(tlm_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_size);
    cJSON_Delete(f->json);
    free(f->tensors);
    free(f->by_name);
    free(f->meta_keys);
    free(f->meta_values);
    free(f->path);
    free(f);
}

int64_t tlm_st_count(const tlm_st_file *f) { return f->n_tensors; }

static void fill_tensor(const tlm_st_file *f, const st_entry *e, tlm_st_tensor *out) {
    out->name = e->name;
    out->dtype = e->dtype;
    out->ndim = e->ndim;
    memcpy(out->shape, e->shape, sizeof out->shape);
    out->data = f->data + e->begin;
    out->nbytes = e->end - e->begin;
}

tlm_status tlm_st_get(const tlm_st_file *f, int64_t i, tlm_st_tensor *out) {
    if (i < 0 || i >= f->n_tensors)
        return tlm_fail(TLM_EINVAL, "%s: tensor index %lld out of range [0, %lld)", f->path, (long long)i,
                        (long long)f->n_tensors);
    fill_tensor(f, &f->tensors[i], out);
    return TLM_OK;
}

tlm_status tlm_st_find(const tlm_st_file *f, const char *name, tlm_st_tensor *out) {
    st_entry key = {.name = name};
    const st_entry *kp = &key;
    st_entry **hit = bsearch(&kp, f->by_name, (size_t)f->n_tensors, sizeof *f->by_name, cmp_entry_name);
    if (!hit) return tlm_fail(TLM_EINVAL, "%s: no tensor named \"%s\"", f->path, name);
    fill_tensor(f, *hit, out);
    return TLM_OK;
}

int64_t tlm_st_metadata_count(const tlm_st_file *f) { return f->n_meta; }

tlm_status tlm_st_metadata_get(const tlm_st_file *f, int64_t i, const char **key, const char **value) {
    if (i < 0 || i >= f->n_meta)
        return tlm_fail(TLM_EINVAL, "%s: metadata index %lld out of range [0, %lld)", f->path, (long long)i,
                        (long long)f->n_meta);
    *key = f->meta_keys[i];
    *value = f->meta_values[i];
    return TLM_OK;
}

/* ------------------------------------------------------------- writer */

static tlm_status check_tensor_arg(const char *path, const tlm_st_tensor *t) {
    if (!t->name) return tlm_fail(TLM_EINVAL, "%s: a tensor has no name", path);
    if (!tlm_utf8_valid(t->name)) return tlm_fail(TLM_EINVAL, "%s: tensor name \"%s\" is not valid UTF-8", path, t->name);
    if (strcmp(t->name, "__metadata__") == 0)
        return tlm_fail(TLM_EINVAL, "%s: \"__metadata__\" is reserved and cannot name a tensor", path);
    if ((unsigned)t->dtype >= TLM_DTYPE_COUNT)
        return tlm_fail(TLM_EINVAL, "%s: tensor \"%s\": invalid dtype %d", path, t->name, (int)t->dtype);
    if (t->ndim < 0 || t->ndim > TLM_MAX_DIMS)
        return tlm_fail(TLM_EINVAL, "%s: tensor \"%s\": ndim %d is outside [0, %d]", path, t->name, t->ndim, TLM_MAX_DIMS);
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0)
            return tlm_fail(TLM_EINVAL, "%s: tensor \"%s\": shape[%d] is negative (%lld)", path, t->name, i,
                            (long long)t->shape[i]);
    char shape[160];
    int overflow;
    uint64_t need = shape_bytes(t->shape, t->ndim, t->dtype, &overflow);
    format_shape(t->shape, t->ndim, shape, sizeof shape);
    if (overflow || need != t->nbytes)
        return tlm_fail(TLM_EINVAL, "%s: tensor \"%s\": %llu bytes of data but shape %s of %s needs %s%llu", path,
                        t->name, (unsigned long long)t->nbytes, shape, tlm_dtype_name(t->dtype),
                        overflow ? "more than " : "", (unsigned long long)need);
    if (need && !t->data) return tlm_fail(TLM_EINVAL, "%s: tensor \"%s\" has no data", path, t->name);
    return TLM_OK;
}

static tlm_status check_write_args(const char *path, const tlm_st_tensor *tensors, int64_t n,
                                   const char *const *keys, const char *const *values, int64_t n_meta) {
    if (n < 0 || n_meta < 0 || (n && !tensors) || (n_meta && (!keys || !values)))
        return tlm_fail(TLM_EINVAL, "%s: invalid tensor or metadata list", path);
    for (int64_t i = 0; i < n; i++) TLM_TRY(check_tensor_arg(path, &tensors[i]));
    for (int64_t i = 0; i < n_meta; i++) {
        if (!keys[i] || !values[i]) return tlm_fail(TLM_EINVAL, "%s: metadata entry %lld is NULL", path, (long long)i);
        if (!tlm_utf8_valid(keys[i]) || !tlm_utf8_valid(values[i]))
            return tlm_fail(TLM_EINVAL, "%s: metadata \"%s\" is not valid UTF-8", path, keys[i]);
    }
    const char **names = malloc(((size_t)(n > n_meta ? n : n_meta) + 1) * sizeof *names);
    if (!names) return tlm_fail(TLM_ENOMEM, "%s: no memory to check names", path);
    for (int64_t i = 0; i < n; i++) names[i] = tensors[i].name;
    const char *dup = first_duplicate(names, n);
    tlm_status st = dup ? tlm_fail(TLM_EINVAL, "%s: tensor \"%s\" is given twice", path, dup) : TLM_OK;
    if (st == TLM_OK && n_meta) {
        memcpy(names, keys, (size_t)n_meta * sizeof *names);
        dup = first_duplicate(names, n_meta);
        if (dup) st = tlm_fail(TLM_EINVAL, "%s: metadata key \"%s\" is given twice", path, dup);
    }
    free(names);
    return st;
}

/* A growing text buffer; `failed` latches an allocation failure so callers
 * check once at the end. */
typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} text_buf;

static void tb_reserve(text_buf *b, size_t extra) {
    if (b->failed || b->len + extra < b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap <= b->len + extra) cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) { b->failed = 1; return; }
    b->s = s;
    b->cap = cap;
}

static void tb_put(text_buf *b, const char *s, size_t n) {
    tb_reserve(b, n);
    if (b->failed) return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void tb_puts(text_buf *b, const char *s) { tb_put(b, s, strlen(s)); }

static void tb_u64(text_buf *b, uint64_t v) {
    char num[24];
    tb_put(b, num, (size_t)snprintf(num, sizeof num, "%llu", (unsigned long long)v));
}

/* A JSON string: quotes, backslashes and control characters escaped; UTF-8
 * (already validated) passes through. */
static void tb_json_string(text_buf *b, const char *s) {
    tb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            tb_put(b, esc, 2);
        } else if (c < 0x20) {
            tb_put(b, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", c));
        } else {
            tb_put(b, (const char *)&c, 1);
        }
    }
    tb_put(b, "\"", 1);
}

/* The header as the reference writer lays it out: __metadata__ first, tensors
 * in the given order with contiguous offsets, spaces up to a multiple of 8. */
static tlm_status build_header(const char *path, const tlm_st_tensor *tensors, int64_t n, const char *const *keys,
                               const char *const *values, int64_t n_meta, text_buf *b) {
    tb_puts(b, "{");
    if (n_meta) {
        tb_puts(b, "\"__metadata__\":{");
        for (int64_t i = 0; i < n_meta; i++) {
            if (i) tb_puts(b, ",");
            tb_json_string(b, keys[i]);
            tb_puts(b, ":");
            tb_json_string(b, values[i]);
        }
        tb_puts(b, n ? "}," : "}");
    }
    uint64_t offset = 0;
    for (int64_t i = 0; i < n; i++) {
        const tlm_st_tensor *t = &tensors[i];
        if (i) tb_puts(b, ",");
        tb_json_string(b, t->name);
        tb_puts(b, ":{\"dtype\":\"");
        tb_puts(b, tlm_dtype_name(t->dtype));
        tb_puts(b, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d) tb_puts(b, ",");
            tb_u64(b, (uint64_t)t->shape[d]);
        }
        tb_puts(b, "],\"data_offsets\":[");
        tb_u64(b, offset);
        tb_puts(b, ",");
        tb_u64(b, offset += t->nbytes);
        tb_puts(b, "]}");
    }
    tb_puts(b, "}");
    while (b->len % 8) tb_puts(b, " ");
    if (b->failed) return tlm_fail(TLM_ENOMEM, "%s: no memory for the header", path);
    return TLM_OK;
}

/* The file: the 8-byte header length, the header, then each tensor's bytes. */
static tlm_status write_contents(tlm_atomic_file *f, const text_buf *header, const tlm_st_tensor *tensors, int64_t n) {
    unsigned char len[HEADER_LEN_BYTES];
    for (int i = 0; i < HEADER_LEN_BYTES; i++) len[i] = (unsigned char)((uint64_t)header->len >> (8 * i));
    TLM_TRY(tlm_atomic_write(f, len, sizeof len));
    TLM_TRY(tlm_atomic_write(f, header->s, header->len));
    tlm_test_point("safetensors:partial");   /* header on disk, data not */
    for (int64_t i = 0; i < n; i++) TLM_TRY(tlm_atomic_write(f, tensors[i].data, tensors[i].nbytes));
    return TLM_OK;
}

tlm_status tlm_st_write(const char *path, const tlm_st_tensor *tensors, int64_t n,
                        const char *const *meta_keys, const char *const *meta_values, int64_t n_meta) {
    TLM_TRY(check_write_args(path, tensors, n, meta_keys, meta_values, n_meta));
    text_buf header = {0};
    tlm_status st = build_header(path, tensors, n, meta_keys, meta_values, n_meta, &header);
    tlm_atomic_file file;
    if (st == TLM_OK) st = tlm_atomic_create(&file, path);
    if (st == TLM_OK) {
        st = write_contents(&file, &header, tensors, n);
        if (st == TLM_OK)
            st = tlm_atomic_commit(&file, "safetensors:rename");
        else
            tlm_atomic_abandon(&file);
    }
    free(header.s);
    return st;
}
