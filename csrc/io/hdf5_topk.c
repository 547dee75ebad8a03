/* hdf5_topk.c: a teacher's top-k next-token distribution per position,
 * cached in HDF5 for offline distillation (the tlm_topk_* API in tlm.h).
 *
 * Layout (chunked, extendable, shuffle + deflate compressed):
 *   /ids          int32   [P, k]  the teacher's k most likely next ids
 *   /logprobs     float32 [P, k]  their log-probabilities (full softmax)
 *   /tail         float32 [P]     log of the probability outside them
 *   /row_offsets  int64   [R+1]   row r of the dataset owns positions
 *                                 [row_offsets[r], row_offsets[r+1])
 *   root attributes: fixed-length strings, tinylm_topk_version, k,
 *   vocab_size, plus whatever the caller stores (its manifest).
 * Only the positions that carry a label are stored (tinylm.distill.cache
 * decides which); a row's count is what ties the file to the data. Written
 * and sealed like the token cache (h5file.h): a file that exists is whole.
 * Reads check ids against vocab_size and log-probabilities for NaN or
 * positive values, so nothing read reaches a kernel unchecked. */
#include "io/h5file.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define KIND "teacher cache"
#define TOPK_VERSION "1"
#define VERSION_KEY "tinylm_topk_version"
#define POSITION_CHUNK 512   /* positions a chunk: 64 KiB of ids at k = 32 */
#define ROW_CHUNK 4096

struct tlm_topk_cache {
    hid_t file;
    hid_t ids, logprobs, tail, offsets;
    char *path;
    char *tmp_path;            /* writer: the name being filled; NULL for a reader */
    int64_t k, vocab;
    int64_t rows, positions;
    int64_t *offs;             /* reader: [rows+1] */
    tlm_h5_attrs attrs;        /* reader */
};

static void close_handles(tlm_topk_cache *c) {
    hid_t *ds[] = {&c->ids, &c->logprobs, &c->tail, &c->offsets};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++)
        if (*ds[i] >= 0) { H5Dclose(*ds[i]); *ds[i] = H5I_INVALID_HID; }
    if (c->file >= 0) { H5Fclose(c->file); c->file = H5I_INVALID_HID; }
}

void tlm_topk_close(tlm_topk_cache *c) {
    if (!c) return;
    if (c->tmp_path) {   /* an uncommitted writer leaves nothing behind */
        tlm_h5_abandon(c->file);
        close_handles(c);
        unlink(c->tmp_path);
    } else {
        close_handles(c);
    }
    tlm_h5_attrs_free(&c->attrs);
    free(c->offs);
    free(c->tmp_path);
    free(c->path);
    free(c);
}

static tlm_topk_cache *topk_new(const char *path) {
    tlm_topk_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->file = c->ids = c->logprobs = c->tail = c->offsets = H5I_INVALID_HID;
    c->path = strdup(path);
    if (!c->path) { free(c); return NULL; }
    return c;
}

static int write_int_attr(hid_t file, const char *key, int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return tlm_h5_write_string_attr(file, key, buf);
}

/* ---------------------------------------------------------------- writing */

tlm_status tlm_topk_create(const char *path, int64_t k, int64_t vocab_size, tlm_topk_cache **out) {
    tlm_h5_quiet();
    *out = NULL;
    if (k < 1 || vocab_size < 1 || k > vocab_size)
        return tlm_fail(TLM_EINVAL, "teacher cache %s: k = %" PRId64 " must be in [1, vocab_size = %" PRId64 "]", path,
                        k, vocab_size);
    tlm_topk_cache *c = topk_new(path);
    if (!c) return tlm_fail(TLM_ENOMEM, "teacher cache %s: out of memory", path);
    c->k = k;
    c->vocab = vocab_size;
    tlm_status st = tlm_h5_create_temp(KIND, path, &c->tmp_path, &c->file);
    if (st != TLM_OK) {
        tlm_topk_close(c);
        return st;
    }
    c->ids = tlm_h5_create_rows(c->file, "ids", H5T_STD_I32LE, (hsize_t)k, POSITION_CHUNK, 1);
    c->logprobs = tlm_h5_create_rows(c->file, "logprobs", H5T_IEEE_F32LE, (hsize_t)k, POSITION_CHUNK, 1);
    c->tail = tlm_h5_create_rows(c->file, "tail", H5T_IEEE_F32LE, 1, POSITION_CHUNK * 8, 1);
    c->offsets = tlm_h5_create_rows(c->file, "row_offsets", H5T_STD_I64LE, 1, ROW_CHUNK, 0);
    int64_t zero = 0;
    int ok = c->ids >= 0 && c->logprobs >= 0 && c->tail >= 0 && c->offsets >= 0 &&
             tlm_h5_append_rows(c->offsets, H5T_NATIVE_INT64, &zero, 0, 1, 1) == 0 &&
             tlm_h5_write_string_attr(c->file, VERSION_KEY, TOPK_VERSION) == 0 && write_int_attr(c->file, "k", k) == 0 &&
             write_int_attr(c->file, "vocab_size", vocab_size) == 0;
    if (!ok) {
        st = tlm_h5_fail(TLM_EIO, KIND, path, "cannot set up the datasets");
        tlm_topk_close(c);
        return st;
    }
    *out = c;
    return TLM_OK;
}

static int writing(const tlm_topk_cache *c) { return c->tmp_path && c->file >= 0; }

tlm_status tlm_topk_set_attr(tlm_topk_cache *c, const char *key, const char *value) {
    tlm_h5_quiet();
    if (!writing(c)) return tlm_fail(TLM_EINVAL, "teacher cache %s: not open for writing", c->path);
    if (!strcmp(key, VERSION_KEY) || !strcmp(key, "k") || !strcmp(key, "vocab_size"))
        return tlm_fail(TLM_EINVAL, "teacher cache %s: attribute %s is reserved", c->path, key);
    htri_t exists = H5Aexists(c->file, key);
    if (exists < 0 || (exists > 0 && H5Adelete(c->file, key) < 0) || tlm_h5_write_string_attr(c->file, key, value) < 0)
        return tlm_h5_fail(TLM_EIO, KIND, c->path, "cannot write an attribute");
    return TLM_OK;
}

tlm_status tlm_topk_append(tlm_topk_cache *c, const int64_t *counts, int64_t n_rows, const int32_t *ids,
                           const float *logprobs, const float *tail) {
    tlm_h5_quiet();
    if (!writing(c)) return tlm_fail(TLM_EINVAL, "teacher cache %s: not open for writing", c->path);
    if (n_rows < 0) return tlm_fail(TLM_EINVAL, "teacher cache %s: negative row count", c->path);
    int64_t *ends = malloc((size_t)(n_rows ? n_rows : 1) * sizeof *ends);
    if (!ends) return tlm_fail(TLM_ENOMEM, "teacher cache %s: out of memory", c->path);
    int64_t total = 0;
    for (int64_t r = 0; r < n_rows; r++) {
        if (counts[r] < 0) {
            free(ends);
            return tlm_fail(TLM_EINVAL, "teacher cache %s: row %" PRId64 " has a negative count", c->path, r);
        }
        total += counts[r];
        ends[r] = c->positions + total;
    }
    for (int64_t i = 0; i < total * c->k; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab) {
            free(ends);
            return tlm_fail(TLM_EINVAL, "teacher cache %s: id %" PRId32 " outside [0, %" PRId64 ")", c->path, ids[i],
                            c->vocab);
        }
    errno = 0;
    hsize_t old = (hsize_t)c->positions, n = (hsize_t)total, k = (hsize_t)c->k;
    int rc = tlm_h5_append_rows(c->ids, H5T_NATIVE_INT32, ids, old, n, k);
    if (rc == 0) rc = tlm_h5_append_rows(c->logprobs, H5T_NATIVE_FLOAT, logprobs, old, n, k);
    if (rc == 0) rc = tlm_h5_append_rows(c->tail, H5T_NATIVE_FLOAT, tail, old, n, 1);
    if (rc == 0) rc = tlm_h5_append_rows(c->offsets, H5T_NATIVE_INT64, ends, (hsize_t)c->rows + 1, (hsize_t)n_rows, 1);
    int err = errno;
    free(ends);
    if (rc != 0) {
        /* the datasets may now disagree in length: this writer is done */
        tlm_status st = err ? tlm_fail(TLM_EIO, "teacher cache %s: cannot append rows: %s", c->path, strerror(err))
                            : tlm_h5_fail(TLM_EIO, KIND, c->path, "cannot append rows");
        tlm_h5_abandon(c->file);
        close_handles(c);
        return st;
    }
    c->rows += n_rows;
    c->positions += total;
    tlm_test_point("topk:partial");
    return TLM_OK;
}

tlm_status tlm_topk_commit(tlm_topk_cache *c) {
    tlm_h5_quiet();
    if (!writing(c)) return tlm_fail(TLM_EINVAL, "teacher cache %s: not open for writing", c->path);
    TLM_TRY(tlm_h5_flush(KIND, c->path, c->file));
    close_handles(c);
    TLM_TRY(tlm_h5_seal_rename(KIND, c->tmp_path, c->path, "topk:rename"));
    free(c->tmp_path);
    c->tmp_path = NULL;
    return TLM_OK;
}

/* ---------------------------------------------------------------- reading */

/* A decimal attribute in [lo, hi]. */
static tlm_status int_attr(const tlm_topk_cache *c, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    const char *s = tlm_h5_attr(&c->attrs, key);
    char *end = NULL;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi)
        return tlm_fail(TLM_EFORMAT, "teacher cache %s: attribute %s is %s%s%s, expected an integer in [%" PRId64
                        ", %" PRId64 "]", c->path, key, s ? "'" : "missing", s ? s : "", s ? "'" : "", lo, hi);
    *out = v;
    return TLM_OK;
}

static tlm_status validate(tlm_topk_cache *c) {
    TLM_TRY(tlm_h5_read_attrs(c->file, KIND, c->path, &c->attrs));
    const char *version = tlm_h5_attr(&c->attrs, VERSION_KEY);
    if (!version || strcmp(version, TOPK_VERSION) != 0)
        return tlm_fail(TLM_EFORMAT, "teacher cache %s: %s is %s, this tinylm reads %s", c->path, VERSION_KEY,
                        version ? version : "missing (not a teacher cache)", TOPK_VERSION);
    TLM_TRY(int_attr(c, "vocab_size", 1, INT32_MAX, &c->vocab));
    TLM_TRY(int_attr(c, "k", 1, c->vocab, &c->k));
    int64_t n_ids, n_logp, n_tail, n_offs;
    TLM_TRY(tlm_h5_open_rows(c->file, KIND, c->path, "ids", H5T_INTEGER, 4, (hsize_t)c->k, &c->ids, &n_ids));
    TLM_TRY(tlm_h5_open_rows(c->file, KIND, c->path, "logprobs", H5T_FLOAT, 4, (hsize_t)c->k, &c->logprobs, &n_logp));
    TLM_TRY(tlm_h5_open_rows(c->file, KIND, c->path, "tail", H5T_FLOAT, 4, 1, &c->tail, &n_tail));
    TLM_TRY(tlm_h5_open_rows(c->file, KIND, c->path, "row_offsets", H5T_INTEGER, 8, 1, &c->offsets, &n_offs));
    if (n_offs < 1 || n_logp != n_ids || n_tail != n_ids)
        return tlm_fail(TLM_EFORMAT, "teacher cache %s: dataset lengths disagree (ids %" PRId64 ", logprobs %" PRId64
                        ", tail %" PRId64 ", row_offsets %" PRId64 ")", c->path, n_ids, n_logp, n_tail, n_offs);
    c->rows = n_offs - 1;
    c->positions = n_ids;
    c->offs = malloc((size_t)n_offs * sizeof *c->offs);
    if (!c->offs) return tlm_fail(TLM_ENOMEM, "teacher cache %s: out of memory", c->path);
    if (tlm_h5_read_rows(c->offsets, H5T_NATIVE_INT64, 0, (hsize_t)n_offs, 1, c->offs) < 0)
        return tlm_h5_fail(TLM_EFORMAT, KIND, c->path, "cannot read row_offsets");
    if (c->offs[0] != 0 || c->offs[c->rows] != n_ids)
        return tlm_fail(TLM_EFORMAT, "teacher cache %s: row_offsets run from %" PRId64 " to %" PRId64
                        ", expected 0 to %" PRId64, c->path, c->offs[0], c->offs[c->rows], n_ids);
    for (int64_t r = 0; r < c->rows; r++)
        if (c->offs[r + 1] < c->offs[r])
            return tlm_fail(TLM_EFORMAT, "teacher cache %s: row_offsets decrease at row %" PRId64, c->path, r);
    return TLM_OK;
}

tlm_status tlm_topk_open(const char *path, tlm_topk_cache **out) {
    tlm_h5_quiet();
    *out = NULL;
    tlm_topk_cache *c = topk_new(path);
    if (!c) return tlm_fail(TLM_ENOMEM, "teacher cache %s: out of memory", path);
    tlm_status st = tlm_h5_open_sealed(KIND, path, &c->file);
    if (st == TLM_OK) st = validate(c);
    if (st != TLM_OK) {
        tlm_topk_close(c);
        return st;
    }
    *out = c;
    return TLM_OK;
}

int64_t tlm_topk_rows(const tlm_topk_cache *c) { return c->rows; }
int64_t tlm_topk_k(const tlm_topk_cache *c) { return c->k; }
int64_t tlm_topk_vocab_size(const tlm_topk_cache *c) { return c->vocab; }
int64_t tlm_topk_positions(const tlm_topk_cache *c) { return c->positions; }
const int64_t *tlm_topk_row_offsets(const tlm_topk_cache *c) { return c->offs; }
int64_t tlm_topk_attr_count(const tlm_topk_cache *c) { return c->attrs.n; }

tlm_status tlm_topk_attr_get(const tlm_topk_cache *c, int64_t i, const char **key, const char **value) {
    if (i < 0 || i >= c->attrs.n)
        return tlm_fail(TLM_EINVAL, "teacher cache %s: attribute index %" PRId64 " out of range", c->path, i);
    *key = c->attrs.keys[i];
    *value = c->attrs.values[i];
    return TLM_OK;
}

tlm_status tlm_topk_read(const tlm_topk_cache *c, int64_t row, int32_t *ids, float *logprobs, float *tail) {
    tlm_h5_quiet();
    if (!c->offs) return tlm_fail(TLM_EINVAL, "teacher cache %s: not open for reading", c->path);
    if (row < 0 || row >= c->rows)
        return tlm_fail(TLM_EINVAL, "teacher cache %s: row %" PRId64 " out of range [0, %" PRId64 ")", c->path, row,
                        c->rows);
    hsize_t start = (hsize_t)c->offs[row], n = (hsize_t)(c->offs[row + 1] - c->offs[row]), k = (hsize_t)c->k;
    if (tlm_h5_read_rows(c->ids, H5T_NATIVE_INT32, start, n, k, ids) < 0 ||
        tlm_h5_read_rows(c->logprobs, H5T_NATIVE_FLOAT, start, n, k, logprobs) < 0 ||
        tlm_h5_read_rows(c->tail, H5T_NATIVE_FLOAT, start, n, 1, tail) < 0)
        return tlm_h5_fail(TLM_EIO, KIND, c->path, "cannot read a row");
    for (hsize_t i = 0; i < n * k; i++) {
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return tlm_fail(TLM_EFORMAT, "teacher cache %s: row %" PRId64 " holds id %" PRId32 " outside [0, %" PRId64
                            ")", c->path, row, ids[i], c->vocab);
        if (!(logprobs[i] <= 0.0f))   /* NaN fails too */
            return tlm_fail(TLM_EFORMAT, "teacher cache %s: row %" PRId64 " holds log-probability %g (must be <= 0)",
                            c->path, row, (double)logprobs[i]);
    }
    for (hsize_t i = 0; i < n; i++)
        if (!(tail[i] <= 0.0f))
            return tlm_fail(TLM_EFORMAT, "teacher cache %s: row %" PRId64 " holds tail log-mass %g (must be <= 0)",
                            c->path, row, (double)tail[i]);
    return TLM_OK;
}
