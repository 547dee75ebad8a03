/* hdf5_cache.c: tokenized datasets cached in HDF5 (the tlm_cache_* API in tlm.h).
 *
 * Layout of a cache file (all datasets 1-D, chunked, extendable):
 *   /input_ids  int32 [N]    every example's token ids, back to back
 *   /loss_mask  uint8 [N]    1 where the token is a training target
 *   /offsets    int64 [n+1]  example i is tokens [offsets[i], offsets[i+1])
 *   /lines      int64 [n]    1-based source line of each example
 *   root attributes: fixed-length UTF-8 strings, tinylm_cache_version plus
 *   whatever the caller stores (key, options, counts).
 * A writer fills "<path>.tmp-<pid>-<n>" and renames it onto path only when
 * complete, so a cache file that exists was finished. The name is unique to
 * the writer, so processes building the same cache at once never share a
 * temporary file: each renames a complete one, and the last rename wins.
 * The first SEAL_BYTES are HDF5's user block, holding the seal (cache_seal.c)
 * the reader checks before libhdf5 parses anything.
 */
#include "core/internal.h"
#include "io/cache_seal.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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
    int64_t n_attrs;
    char **keys, **values;             /* reader: [n_attrs] each */
};

/* libhdf5 prints its error stack to stderr unless told not to; the core
 * never prints, so every entry point silences it and reads the stack into
 * the message instead. */
static void quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t innermost(unsigned n, const H5E_error2_t *err, void *data) {
    if (n == 0 && err->desc) snprintf(data, 256, "%s", err->desc);
    return 0;
}

/* Fails with "what (libhdf5: innermost reason)". */
static tlm_status h5_fail(tlm_status st, const char *path, const char *what) {
    char detail[256] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, detail);
    H5Eclear2(H5E_DEFAULT);
    if (detail[0]) return tlm_fail(st, "token cache %s: %s (libhdf5: %s)", path, what, detail);
    return tlm_fail(st, "token cache %s: %s", path, what);
}

static void close_handles(tlm_cache *c) {
    hid_t *ds[] = {&c->ids, &c->mask, &c->offsets, &c->lines};
    for (size_t i = 0; i < sizeof ds / sizeof *ds; i++)
        if (*ds[i] >= 0) { H5Dclose(*ds[i]); *ds[i] = H5I_INVALID_HID; }
    if (c->file >= 0) { H5Fclose(c->file); c->file = H5I_INVALID_HID; }
}

/* Closes an uncommitted writer, whose file is about to be deleted: its
 * descriptor is pointed at /dev/null first, so nothing more need reach the
 * disk. libhdf5 1.10 cannot close a file whose last flush fails (a full
 * disk): H5Fclose fails, and any later close, the library's own at exit
 * included, crashes the process. */
static void abandon(tlm_cache *c) {
    int *fd = NULL;
    if (c->file >= 0 && H5Fget_vfd_handle(c->file, H5P_DEFAULT, (void **)&fd) >= 0 && fd) {
        int sink = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (sink >= 0) {
            dup2(sink, *fd);
            close(sink);
        }
    }
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
    for (int64_t i = 0; i < c->n_attrs; i++) { free(c->keys[i]); free(c->values[i]); }
    free(c->keys);
    free(c->values);
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

static hid_t create_dataset(hid_t file, const char *name, hid_t type, hsize_t chunk) {
    hsize_t zero = 0, unlimited = H5S_UNLIMITED;
    hid_t space = H5Screate_simple(1, &zero, &unlimited);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t ds = H5I_INVALID_HID;
    if (space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, 1, &chunk) >= 0)
        ds = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return ds;
}

/* Writes n elements at the end of a 1-D dataset that holds `old` now. */
static int append_rows(hid_t ds, hid_t type, const void *data, hsize_t old, hsize_t n) {
    if (n == 0) return 0;
    hsize_t size = old + n;
    if (H5Dset_extent(ds, &size) < 0) return -1;
    hid_t fspace = H5Dget_space(ds);
    hid_t mspace = H5Screate_simple(1, &n, NULL);
    int rc = -1;
    if (fspace >= 0 && mspace >= 0 && H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &old, NULL, &n, NULL) >= 0)
        rc = H5Dwrite(ds, type, mspace, fspace, H5P_DEFAULT, data) < 0 ? -1 : 0;
    if (mspace >= 0) H5Sclose(mspace);
    if (fspace >= 0) H5Sclose(fspace);
    return rc;
}

static int write_string_attr(hid_t obj, const char *key, const char *value) {
    hid_t type = H5Tcopy(H5T_C_S1);
    hid_t space = H5Screate(H5S_SCALAR);
    int rc = -1;
    /* size strlen+1: the stored string keeps its terminator (H5T_STR_NULLTERM) */
    if (type >= 0 && space >= 0 && H5Tset_size(type, strlen(value) + 1) >= 0 &&
        H5Tset_cset(type, H5T_CSET_UTF8) >= 0) {
        hid_t attr = H5Acreate2(obj, key, type, space, H5P_DEFAULT, H5P_DEFAULT);
        if (attr >= 0) {
            rc = H5Awrite(attr, type, value) < 0 ? -1 : 0;
            H5Aclose(attr);
        }
    }
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    return rc;
}

tlm_status tlm_cache_create(const char *path, tlm_cache **out) {
    quiet();
    *out = NULL;
    tlm_cache *c = cache_new(path);
    if (!c) return tlm_fail(TLM_ENOMEM, "token cache %s: out of memory", path);
    size_t len = strlen(path) + 32;
    c->tmp_path = malloc(len);
    if (!c->tmp_path) { tlm_cache_close(c); return tlm_fail(TLM_ENOMEM, "token cache %s: out of memory", path); }
    static atomic_uint counter;   /* threads of one process differ here */
    snprintf(c->tmp_path, len, "%s.tmp-%ld-%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));

    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (fcpl >= 0 && H5Pset_userblock(fcpl, SEAL_BYTES) >= 0)
        c->file = H5Fcreate(c->tmp_path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (c->file < 0) {
        tlm_status st = h5_fail(TLM_EIO, path, "cannot create its temporary file");
        free(c->tmp_path);   /* nothing was created, so nothing to unlink */
        c->tmp_path = NULL;
        tlm_cache_close(c);
        return st;
    }
    c->ids = create_dataset(c->file, "input_ids", H5T_STD_I32LE, TOKEN_CHUNK);
    c->mask = create_dataset(c->file, "loss_mask", H5T_STD_U8LE, TOKEN_CHUNK);
    c->offsets = create_dataset(c->file, "offsets", H5T_STD_I64LE, EXAMPLE_CHUNK);
    c->lines = create_dataset(c->file, "lines", H5T_STD_I64LE, EXAMPLE_CHUNK);
    int64_t zero = 0;
    int ok = c->ids >= 0 && c->mask >= 0 && c->offsets >= 0 && c->lines >= 0 &&
             append_rows(c->offsets, H5T_NATIVE_INT64, &zero, 0, 1) == 0 &&
             write_string_attr(c->file, VERSION_KEY, CACHE_VERSION) == 0;
    if (!ok) {
        tlm_status st = h5_fail(TLM_EIO, path, "cannot set up the datasets");
        tlm_cache_close(c);
        return st;
    }
    *out = c;
    return TLM_OK;
}

tlm_status tlm_cache_set_attr(tlm_cache *c, const char *key, const char *value) {
    quiet();
    if (!c->tmp_path || c->file < 0) return tlm_fail(TLM_EINVAL, "token cache %s: not open for writing", c->path);
    if (strcmp(key, VERSION_KEY) == 0)
        return tlm_fail(TLM_EINVAL, "token cache %s: attribute %s is reserved", c->path, VERSION_KEY);
    /* a fixed-length string attribute cannot change size: replace it */
    htri_t exists = H5Aexists(c->file, key);
    if (exists < 0 || (exists > 0 && H5Adelete(c->file, key) < 0) || write_string_attr(c->file, key, value) < 0)
        return h5_fail(TLM_EIO, c->path, "cannot write an attribute");
    return TLM_OK;
}

tlm_status tlm_cache_append(tlm_cache *c, const int32_t *ids, const uint8_t *mask, const int64_t *lengths,
                            const int64_t *lines, int64_t n) {
    quiet();
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
    int rc = append_rows(c->ids, H5T_NATIVE_INT32, ids, (hsize_t)c->n_tokens, (hsize_t)total);
    if (rc == 0) rc = append_rows(c->mask, H5T_NATIVE_UINT8, mask, (hsize_t)c->n_tokens, (hsize_t)total);
    if (rc == 0) rc = append_rows(c->offsets, H5T_NATIVE_INT64, ends, (hsize_t)c->n + 1, (hsize_t)n);
    if (rc == 0) rc = append_rows(c->lines, H5T_NATIVE_INT64, lines, (hsize_t)c->n, (hsize_t)n);
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
    quiet();
    if (!c->tmp_path || c->file < 0) return tlm_fail(TLM_EINVAL, "token cache %s: not open for writing", c->path);
    errno = 0;
    if (H5Fflush(c->file, H5F_SCOPE_GLOBAL) < 0) {
        int err = errno;
        return err ? tlm_fail(TLM_EIO, "token cache %s: cannot flush: %s", c->path, strerror(err))
                   : h5_fail(TLM_EIO, c->path, "cannot flush");
    }
    close_handles(c);
    /* the seal is written and the whole file synced before the name points at it */
    TLM_TRY(tlm_cache_seal(c->tmp_path));
    tlm_test_point("cache:rename");
    if (rename(c->tmp_path, c->path) != 0)
        return tlm_fail(TLM_EIO, "token cache %s: cannot rename %s onto it: %s", c->path, c->tmp_path,
                        strerror(errno));
    free(c->tmp_path);
    c->tmp_path = NULL;
    return TLM_OK;
}

/* ---------------------------------------------------------------- reading */

/* Opens a 1-D dataset of the given class/size and reports its length. */
static tlm_status open_dataset(tlm_cache *c, const char *name, H5T_class_t cls, size_t size, hid_t *ds,
                               int64_t *len) {
    if (H5Lexists(c->file, name, H5P_DEFAULT) <= 0)
        return tlm_fail(TLM_EFORMAT, "token cache %s: no dataset /%s", c->path, name);
    *ds = H5Dopen2(c->file, name, H5P_DEFAULT);
    if (*ds < 0) return h5_fail(TLM_EFORMAT, c->path, "cannot open a dataset");
    hid_t type = H5Dget_type(*ds);
    hid_t space = H5Dget_space(*ds);
    int ok = type >= 0 && space >= 0 && H5Tget_class(type) == cls && H5Tget_size(type) == size &&
             H5Sget_simple_extent_ndims(space) == 1;
    hsize_t n = 0;
    if (ok) H5Sget_simple_extent_dims(space, &n, NULL);
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (!ok)
        return tlm_fail(TLM_EFORMAT, "token cache %s: /%s is not a 1-D dataset of %zu-byte %s", c->path, name,
                        size, cls == H5T_INTEGER ? "integers" : "values");
    *len = (int64_t)n;
    return TLM_OK;
}

static int read_rows(hid_t ds, hid_t type, hsize_t start, hsize_t n, void *out) {
    if (n == 0) return 0;
    hid_t fspace = H5Dget_space(ds);
    hid_t mspace = H5Screate_simple(1, &n, NULL);
    int rc = -1;
    if (fspace >= 0 && mspace >= 0 && H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, NULL, &n, NULL) >= 0)
        rc = H5Dread(ds, type, mspace, fspace, H5P_DEFAULT, out) < 0 ? -1 : 0;
    if (mspace >= 0) H5Sclose(mspace);
    if (fspace >= 0) H5Sclose(fspace);
    return rc;
}

static herr_t collect_attr(hid_t obj, const char *name, const H5A_info_t *info, void *data) {
    (void)info;
    tlm_cache *c = data;
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t type = attr >= 0 ? H5Aget_type(attr) : H5I_INVALID_HID;
    herr_t rc = -1;
    /* only the fixed-length strings tlm_cache_create writes are accepted */
    if (type >= 0 && H5Tget_class(type) == H5T_STRING && !H5Tis_variable_str(type)) {
        size_t size = H5Tget_size(type);
        char *value = calloc(size + 1, 1);
        char *key = strdup(name);
        char **keys = realloc(c->keys, (size_t)(c->n_attrs + 1) * sizeof *keys);
        if (keys) c->keys = keys;
        char **values = realloc(c->values, (size_t)(c->n_attrs + 1) * sizeof *values);
        if (values) c->values = values;
        if (value && key && keys && values && H5Aread(attr, type, value) >= 0) {
            c->keys[c->n_attrs] = key;
            c->values[c->n_attrs] = value;
            c->n_attrs++;
            rc = 0;
        } else {
            free(value);
            free(key);
        }
    }
    if (type >= 0) H5Tclose(type);
    if (attr >= 0) H5Aclose(attr);
    return rc;
}

static tlm_status validate(tlm_cache *c) {
    int64_t n_ids, n_mask, n_offs, n_lines;
    TLM_TRY(open_dataset(c, "input_ids", H5T_INTEGER, 4, &c->ids, &n_ids));
    TLM_TRY(open_dataset(c, "loss_mask", H5T_INTEGER, 1, &c->mask, &n_mask));
    TLM_TRY(open_dataset(c, "offsets", H5T_INTEGER, 8, &c->offsets, &n_offs));
    TLM_TRY(open_dataset(c, "lines", H5T_INTEGER, 8, &c->lines, &n_lines));
    if (H5Aiterate2(c->file, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_attr, c) < 0)
        return h5_fail(TLM_EFORMAT, c->path, "root attributes must be fixed-length strings");
    const char *version = NULL;
    for (int64_t i = 0; i < c->n_attrs; i++)
        if (strcmp(c->keys[i], VERSION_KEY) == 0) version = c->values[i];
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
    if (read_rows(c->offsets, H5T_NATIVE_INT64, 0, (hsize_t)n_offs, c->offs) < 0 ||
        read_rows(c->lines, H5T_NATIVE_INT64, 0, (hsize_t)c->n, c->line_nos) < 0)
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
    quiet();
    *out = NULL;
    tlm_cache *c = cache_new(path);
    if (!c) return tlm_fail(TLM_ENOMEM, "token cache %s: out of memory", path);
    if (access(path, R_OK) != 0) {
        int err = errno;
        tlm_cache_close(c);
        return tlm_fail(TLM_EIO, "token cache %s: %s", path, strerror(err));
    }
    /* a file that exists but is no sealed cache or HDF5 file is a format
     * error: the caller rebuilds it */
    tlm_status st = tlm_cache_check_seal(path);
    if (st == TLM_OK) {
        c->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        st = c->file < 0 ? h5_fail(TLM_EFORMAT, path, "not a readable HDF5 file") : validate(c);
    }
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

int64_t tlm_cache_attr_count(const tlm_cache *c) { return c->n_attrs; }

tlm_status tlm_cache_attr_get(const tlm_cache *c, int64_t i, const char **key, const char **value) {
    if (i < 0 || i >= c->n_attrs)
        return tlm_fail(TLM_EINVAL, "token cache %s: attribute index %ld out of range [0, %ld)", c->path, (long)i,
                        (long)c->n_attrs);
    *key = c->keys[i];
    *value = c->values[i];
    return TLM_OK;
}

tlm_status tlm_cache_read(const tlm_cache *c, int64_t first, int64_t n, int32_t *ids, uint8_t *mask) {
    quiet();
    if (!c->offs) return tlm_fail(TLM_EINVAL, "token cache %s: not open for reading", c->path);
    if (first < 0 || n < 0 || first + n > c->n)
        return tlm_fail(TLM_EINVAL, "token cache %s: examples [%ld, %ld) out of range [0, %ld)", c->path,
                        (long)first, (long)(first + n), (long)c->n);
    hsize_t start = (hsize_t)c->offs[first], count = (hsize_t)(c->offs[first + n] - c->offs[first]);
    if (read_rows(c->ids, H5T_NATIVE_INT32, start, count, ids) < 0 ||
        read_rows(c->mask, H5T_NATIVE_UINT8, start, count, mask) < 0)
        return h5_fail(TLM_EIO, c->path, "cannot read tokens");
    return TLM_OK;
}
