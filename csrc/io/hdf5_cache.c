/* hdf5_cache.c: tokenized datasets cached in HDF5 (the tlm_cache_* API in tlm.h).
 *
 * Layout of a cache file (all datasets 1-D, chunked, extendable):
 *   /input_ids  int32 [N]    every example's token ids, back to back
 *   /loss_mask  uint8 [N]    1 where the token is a training target
 *   /offsets    int64 [n+1]  example i is tokens [offsets[i], offsets[i+1])
 *   /lines      int64 [n]    1-based source line of each example
 *   root attributes: fixed-length UTF-8 strings, tinylm_cache_version plus
 *   whatever the caller stores (key, options, counts).
 * A writer fills a temporary file and renames it onto path only when
 * complete and sealed (h5file.h), so a cache file that exists was finished;
 * processes building the same cache at once each rename a complete one, and
 * the last rename wins.
 */
#include "io/h5file.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define KIND "token cache"
#define CACHE_VERSION "1"
#define VERSION_KEY "tinylm_cache_version"
/* Chunks of 64 KiB of tokens: small enough that reading one example at a
 * random index touches little more than it needs. */
#define TOKEN_CHUNK 16384
#define EXAMPLE_CHUNK 4096

struct tlm_cache {
    hid_t file;
    hid_t ids, mask, offsets, lines;   /* the four datasets */
    char *path;                        /* the final name */
    char *tmp_path;                    /* writer: the name being filled; NULL for a reader */
    int64_t n;                         /* examples */
    int64_t n_tokens;                  /* N */
    int64_t *offs;                     /* reader: [n+1] */
    int64_t *line_nos;                 /* reader: [n] */
    tlm_h5_attrs attrs;                /* reader */
};

static tlm_status h5_fail(tlm_status st, const char *path, const char *what) {
    return tlm_h5_fail(st, KIND, path, what);
}

static void close_handles(tlm_cache *c) {
    hid_t *ds[] = {&c->ids, &c->mask, &c->offsets, &c->lines};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++)
        if (*ds[i] >= 0) { H5Dclose(*ds[i]); *ds[i] = H5I_INVALID_HID; }
    if (c->file >= 0) { H5Fclose(c->file); c->file = H5I_INVALID_HID; }
}

/* Closes an uncommitted writer, whose file is about to be deleted. */
static void abandon(tlm_cache *c) {
    tlm_h5_abandon(c->file);
    close_handles(c);
}

void tlm_cache_close(tlm_cache *c) {
    if (!c) return;
    if (c->tmp_path) {   /* an uncommitted writer leaves nothing behind */
        abandon(c);
        unlink(c->tmp_path);
    } else {
        close_handles(c);
    }
    tlm_h5_attrs_free(&c->attrs);
    free(c->offs);
    free(c->line_nos);
    free(c->tmp_path);
    free(c->path);
    free(c);
}

static tlm_cache *cache_new(const char *path) {
    tlm_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->file = c->ids = c->mask = c->offsets = c->lines = H5I_INVALID_HID;
    c->path = strdup(path);
    if (!c->path) { free(c); return NULL; }
    return c;
}

/* ---------------------------------------------------------------- writing */

tlm_status tlm_cache_create(const char *path, tlm_cache **out) {
    tlm_h5_quiet();
    *out = NULL;
    tlm_cache *c = cache_new(path);
    if (!c) return tlm_fail(TLM_ENOMEM, "token cache %s: out of memory", path);
    tlm_status st = tlm_h5_create_temp(KIND, path, &c->tmp_path, &c->file);
    if (st != TLM_OK) {
        tlm_cache_close(c);
        return st;
    }
    c->ids = tlm_h5_create_rows(c->file, "input_ids", H5T_STD_I32LE, 1, TOKEN_CHUNK, 0);
    c->mask = tlm_h5_create_rows(c->file, "loss_mask", H5T_STD_U8LE, 1, TOKEN_CHUNK, 0);
    c->offsets = tlm_h5_create_rows(c->file, "offsets", H5T_STD_I64LE, 1, EXAMPLE_CHUNK, 0);
    c->lines = tlm_h5_create_rows(c->file, "lines", H5T_STD_I64LE, 1, EXAMPLE_CHUNK, 0);
    int64_t zero = 0;
    int ok = c->ids >= 0 && c->mask >= 0 && c->offsets >= 0 && c->lines >= 0 &&
             tlm_h5_append_rows(c->offsets, H5T_NATIVE_INT64, &zero, 0, 1, 1) == 0 &&
             tlm_h5_write_string_attr(c->file, VERSION_KEY, CACHE_VERSION) == 0;
    if (!ok) {
        st = h5_fail(TLM_EIO, path, "cannot set up the datasets");
        tlm_cache_close(c);
        return st;
    }
    *out = c;
    return TLM_OK;
}

tlm_status tlm_cache_set_attr(tlm_cache *c, const char *key, const char *value) {
    tlm_h5_quiet();
    if (!c->tmp_path || c->file < 0) return tlm_fail(TLM_EINVAL, "token cache %s: not open for writing", c->path);
    if (strcmp(key, VERSION_KEY) == 0)
        return tlm_fail(TLM_EINVAL, "token cache %s: attribute %s is reserved", c->path, VERSION_KEY);
    /* a fixed-length string attribute cannot change size: replace it */
    htri_t exists = H5Aexists(c->file, key);
    if (exists < 0 || (exists > 0 && H5Adelete(c->file, key) < 0) || tlm_h5_write_string_attr(c->file, key, value) < 0)
        return h5_fail(TLM_EIO, c->path, "cannot write an attribute");
    return TLM_OK;
}

tlm_status tlm_cache_append(tlm_cache *c, const int32_t *ids, const uint8_t *mask, const int64_t *lengths,
                            const int64_t *lines, int64_t n) {
    tlm_h5_quiet();
    if (!c->tmp_path || c->file < 0) return tlm_fail(TLM_EINVAL, "token cache %s: not open for writing", c->path);
    if (n < 0) return tlm_fail(TLM_EINVAL, "token cache %s: negative example count %ld", c->path, (long)n);
    int64_t *ends = malloc((size_t)(n ? n : 1) * sizeof *ends);
    if (!ends) return tlm_fail(TLM_ENOMEM, "token cache %s: out of memory", c->path);
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (lengths[i] < 0) {
            free(ends);
            return tlm_fail(TLM_EINVAL, "token cache %s: example %ld has negative length", c->path, (long)i);
        }
        total += lengths[i];
        ends[i] = c->n_tokens + total;
    }
    errno = 0;   /* what a failed write leaves here is the reason to report */
    int rc = tlm_h5_append_rows(c->ids, H5T_NATIVE_INT32, ids, (hsize_t)c->n_tokens, (hsize_t)total, 1);
    if (rc == 0) rc = tlm_h5_append_rows(c->mask, H5T_NATIVE_UINT8, mask, (hsize_t)c->n_tokens, (hsize_t)total, 1);
    if (rc == 0) rc = tlm_h5_append_rows(c->offsets, H5T_NATIVE_INT64, ends, (hsize_t)c->n + 1, (hsize_t)n, 1);
    if (rc == 0) rc = tlm_h5_append_rows(c->lines, H5T_NATIVE_INT64, lines, (hsize_t)c->n, (hsize_t)n, 1);
    int err = errno;
    free(ends);
    if (rc != 0) {
        /* the datasets may now disagree in length: this writer is done */
        tlm_status st = err ? tlm_fail(TLM_EIO, "token cache %s: cannot append examples: %s", c->path, strerror(err))
                            : h5_fail(TLM_EIO, c->path, "cannot append examples");
        abandon(c);
        return st;
    }
    c->n += n;
    c->n_tokens += total;
    tlm_test_point("cache:partial");
    return TLM_OK;
}

tlm_status tlm_cache_commit(tlm_cache *c) {
    tlm_h5_quiet();
    if (!c->tmp_path || c->file < 0) return tlm_fail(TLM_EINVAL, "token cache %s: not open for writing", c->path);
    TLM_TRY(tlm_h5_flush(KIND, c->path, c->file));
    close_handles(c);
    TLM_TRY(tlm_h5_seal_rename(KIND, c->tmp_path, c->path, "cache:rename"));
    free(c->tmp_path);
    c->tmp_path = NULL;
    return TLM_OK;
}

/* ---------------------------------------------------------------- reading */

static tlm_status validate(tlm_cache *c) {
    int64_t n_ids, n_mask, n_offs, n_lines;
    TLM_TRY(tlm_h5_open_rows(c->file, KIND, c->path, "input_ids", H5T_INTEGER, 4, 1, &c->ids, &n_ids));
    TLM_TRY(tlm_h5_open_rows(c->file, KIND, c->path, "loss_mask", H5T_INTEGER, 1, 1, &c->mask, &n_mask));
    TLM_TRY(tlm_h5_open_rows(c->file, KIND, c->path, "offsets", H5T_INTEGER, 8, 1, &c->offsets, &n_offs));
    TLM_TRY(tlm_h5_open_rows(c->file, KIND, c->path, "lines", H5T_INTEGER, 8, 1, &c->lines, &n_lines));
    TLM_TRY(tlm_h5_read_attrs(c->file, KIND, c->path, &c->attrs));
    const char *version = tlm_h5_attr(&c->attrs, VERSION_KEY);
    if (!version || strcmp(version, CACHE_VERSION) != 0)
        return tlm_fail(TLM_EFORMAT, "token cache %s: %s is %s, this tinylm reads %s", c->path, VERSION_KEY,
                        version ? version : "missing", CACHE_VERSION);
    if (n_offs < 1 || n_lines != n_offs - 1 || n_mask != n_ids)
        return tlm_fail(TLM_EFORMAT,
                        "token cache %s: dataset lengths disagree (input_ids %ld, loss_mask %ld, offsets %ld, lines %ld)",
                        c->path, (long)n_ids, (long)n_mask, (long)n_offs, (long)n_lines);
    c->n = n_offs - 1;
    c->n_tokens = n_ids;
    c->offs = malloc((size_t)n_offs * sizeof *c->offs);
    c->line_nos = malloc((size_t)(c->n ? c->n : 1) * sizeof *c->line_nos);
    if (!c->offs || !c->line_nos) return tlm_fail(TLM_ENOMEM, "token cache %s: out of memory", c->path);
    if (tlm_h5_read_rows(c->offsets, H5T_NATIVE_INT64, 0, (hsize_t)n_offs, 1, c->offs) < 0 ||
        tlm_h5_read_rows(c->lines, H5T_NATIVE_INT64, 0, (hsize_t)c->n, 1, c->line_nos) < 0)
        return h5_fail(TLM_EFORMAT, c->path, "cannot read offsets and lines");
    if (c->offs[0] != 0 || c->offs[c->n] != n_ids)
        return tlm_fail(TLM_EFORMAT, "token cache %s: offsets run from %ld to %ld, expected 0 to %ld", c->path,
                        (long)c->offs[0], (long)c->offs[c->n], (long)n_ids);
    for (int64_t i = 0; i < c->n; i++)
        if (c->offs[i + 1] < c->offs[i])
            return tlm_fail(TLM_EFORMAT, "token cache %s: offsets decrease at example %ld", c->path, (long)i);
    return TLM_OK;
}

tlm_status tlm_cache_open(const char *path, tlm_cache **out) {
    tlm_h5_quiet();
    *out = NULL;
    tlm_cache *c = cache_new(path);
    if (!c) return tlm_fail(TLM_ENOMEM, "token cache %s: out of memory", path);
    /* a file that exists but is no sealed cache or HDF5 file is a format
     * error: the caller rebuilds it */
    tlm_status st = tlm_h5_open_sealed(KIND, path, &c->file);
    if (st == TLM_OK) st = validate(c);
    if (st != TLM_OK) {
        tlm_cache_close(c);
        return st;
    }
    *out = c;
    return TLM_OK;
}

int64_t tlm_cache_count(const tlm_cache *c) { return c->n; }

int64_t tlm_cache_n_tokens(const tlm_cache *c) { return c->n_tokens; }

const int64_t *tlm_cache_offsets(const tlm_cache *c) { return c->offs; }

const int64_t *tlm_cache_lines(const tlm_cache *c) { return c->line_nos; }

int64_t tlm_cache_attr_count(const tlm_cache *c) { return c->attrs.n; }

tlm_status tlm_cache_attr_get(const tlm_cache *c, int64_t i, const char **key, const char **value) {
    if (i < 0 || i >= c->attrs.n)
        return tlm_fail(TLM_EINVAL, "token cache %s: attribute index %ld out of range [0, %ld)", c->path, (long)i,
                        (long)c->attrs.n);
    *key = c->attrs.keys[i];
    *value = c->attrs.values[i];
    return TLM_OK;
}

tlm_status tlm_cache_read(const tlm_cache *c, int64_t first, int64_t n, int32_t *ids, uint8_t *mask) {
    tlm_h5_quiet();
    if (!c->offs) return tlm_fail(TLM_EINVAL, "token cache %s: not open for reading", c->path);
    if (first < 0 || n < 0 || first + n > c->n)
        return tlm_fail(TLM_EINVAL, "token cache %s: examples [%ld, %ld) out of range [0, %ld)", c->path,
                        (long)first, (long)(first + n), (long)c->n);
    hsize_t start = (hsize_t)c->offs[first], count = (hsize_t)(c->offs[first + n] - c->offs[first]);
    if (tlm_h5_read_rows(c->ids, H5T_NATIVE_INT32, start, count, 1, ids) < 0 ||
        tlm_h5_read_rows(c->mask, H5T_NATIVE_UINT8, start, count, 1, mask) < 0)
        return h5_fail(TLM_EIO, c->path, "cannot read tokens");
    return TLM_OK;
}
