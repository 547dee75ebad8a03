/* h5file.c: the HDF5 plumbing tinylm's files share (h5file.h). */
#include "io/h5file.h"
#include "io/cache_seal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void tlm_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t innermost(unsigned n, const H5E_error2_t *err, void *data) {
    if (n == 0 && err->desc) snprintf(data, 256, "%s", err->desc);
    return 0;
}

tlm_status tlm_h5_fail(tlm_status st, const char *kind, const char *path, const char *what) {
    char detail[256] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, detail);
    H5Eclear2(H5E_DEFAULT);
    if (detail[0]) return tlm_fail(st, "%s %s: %s (libhdf5: %s)", kind, path, what, detail);
    return tlm_fail(st, "%s %s: %s", kind, path, what);
}

/* ---------------------------------------------------------------- writing */

tlm_status tlm_h5_create_temp(const char *kind, const char *path, char **tmp_path, hid_t *file) {
    *file = H5I_INVALID_HID;
    size_t len = strlen(path) + 32;
    *tmp_path = malloc(len);
    if (!*tmp_path) return tlm_fail(TLM_ENOMEM, "%s %s: out of memory", kind, path);
    static atomic_uint counter;   /* threads of one process differ here */
    snprintf(*tmp_path, len, "%s.tmp-%ld-%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (fcpl >= 0 && H5Pset_userblock(fcpl, SEAL_BYTES) >= 0)
        *file = H5Fcreate(*tmp_path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (*file < 0) {
        tlm_status st = tlm_h5_fail(TLM_EIO, kind, path, "cannot create its temporary file");
        free(*tmp_path);   /* nothing was created, so nothing to unlink */
        *tmp_path = NULL;
        return st;
    }
    return TLM_OK;
}

hid_t tlm_h5_create_rows(hid_t file, const char *name, hid_t type, hsize_t width, hsize_t chunk_rows, int compress) {
    int rank = width > 1 ? 2 : 1;
    hsize_t zero[2] = {0, width}, maxdims[2] = {H5S_UNLIMITED, width}, chunk[2] = {chunk_rows, width};
    hid_t space = H5Screate_simple(rank, zero, maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t ds = H5I_INVALID_HID;
    int ok = space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, rank, chunk) >= 0;
    if (ok && compress) ok = H5Pset_shuffle(dcpl) >= 0 && H5Pset_deflate(dcpl, 1) >= 0;
    if (ok) ds = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return ds;
}

/* Selects rows [start, start + n) of ds's file space; the memory space in *mspace. */
static hid_t select_rows(hid_t ds, hsize_t start, hsize_t n, hsize_t width, hid_t *mspace) {
    int rank = width > 1 ? 2 : 1;
    hsize_t offset[2] = {start, 0}, count[2] = {n, width};
    hid_t fspace = H5Dget_space(ds);
    *mspace = H5Screate_simple(rank, count, NULL);
    if (fspace >= 0 && *mspace >= 0 && H5Sselect_hyperslab(fspace, H5S_SELECT_SET, offset, NULL, count, NULL) >= 0)
        return fspace;
    if (fspace >= 0) H5Sclose(fspace);
    return H5I_INVALID_HID;
}

int tlm_h5_append_rows(hid_t ds, hid_t type, const void *data, hsize_t old, hsize_t n, hsize_t width) {
    if (n == 0) return 0;
    hsize_t size[2] = {old + n, width};
    if (H5Dset_extent(ds, size) < 0) return -1;
    hid_t mspace, fspace = select_rows(ds, old, n, width, &mspace);
    int rc = fspace >= 0 && H5Dwrite(ds, type, mspace, fspace, H5P_DEFAULT, data) >= 0 ? 0 : -1;
    if (mspace >= 0) H5Sclose(mspace);
    if (fspace >= 0) H5Sclose(fspace);
    return rc;
}

int tlm_h5_write_string_attr(hid_t obj, const char *key, const char *value) {
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

tlm_status tlm_h5_flush(const char *kind, const char *path, hid_t file) {
    errno = 0;
    if (H5Fflush(file, H5F_SCOPE_GLOBAL) >= 0) return TLM_OK;
    int err = errno;
    return err ? tlm_fail(TLM_EIO, "%s %s: cannot flush: %s", kind, path, strerror(err))
               : tlm_h5_fail(TLM_EIO, kind, path, "cannot flush");
}

tlm_status tlm_h5_seal_rename(const char *kind, const char *tmp_path, const char *path, const char *point) {
    /* the seal is written and the whole file synced before the name points at it */
    TLM_TRY(tlm_cache_seal(kind, tmp_path));
    tlm_test_point(point);
    if (rename(tmp_path, path) != 0)
        return tlm_fail(TLM_EIO, "%s %s: cannot rename %s onto it: %s", kind, path, tmp_path, strerror(errno));
    return TLM_OK;
}

void tlm_h5_abandon(hid_t file) {
    int *fd = NULL;
    if (file >= 0 && H5Fget_vfd_handle(file, H5P_DEFAULT, (void **)&fd) >= 0 && fd) {
        int sink = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (sink >= 0) {
            dup2(sink, *fd);
            close(sink);
        }
    }
}

/* ---------------------------------------------------------------- reading */

tlm_status tlm_h5_open_sealed(const char *kind, const char *path, hid_t *file) {
    *file = H5I_INVALID_HID;
    if (access(path, R_OK) != 0) return tlm_fail(TLM_EIO, "%s %s: %s", kind, path, strerror(errno));
    /* a file that exists but is no sealed tinylm HDF5 file is a format error */
    TLM_TRY(tlm_cache_check_seal(kind, path));
    *file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    return *file < 0 ? tlm_h5_fail(TLM_EFORMAT, kind, path, "not a readable HDF5 file") : TLM_OK;
}

tlm_status tlm_h5_open_rows(hid_t file, const char *kind, const char *path, const char *name, H5T_class_t cls,
                            size_t size, hsize_t width, hid_t *ds, int64_t *rows) {
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0) return tlm_fail(TLM_EFORMAT, "%s %s: no dataset /%s", kind, path, name);
    *ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (*ds < 0) return tlm_h5_fail(TLM_EFORMAT, kind, path, "cannot open a dataset");
    int rank = width > 1 ? 2 : 1;
    hid_t type = H5Dget_type(*ds);
    hid_t space = H5Dget_space(*ds);
    hsize_t dims[2] = {0, 0};
    int ok = type >= 0 && space >= 0 && H5Tget_class(type) == cls && H5Tget_size(type) == size &&
             H5Sget_simple_extent_ndims(space) == rank && H5Sget_simple_extent_dims(space, dims, NULL) == rank &&
             (rank == 1 || dims[1] == width);
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (!ok) {
        const char *what = cls == H5T_INTEGER ? "integers" : cls == H5T_FLOAT ? "floats" : "values";
        if (rank == 1)
            return tlm_fail(TLM_EFORMAT, "%s %s: /%s is not a 1-D dataset of %zu-byte %s", kind, path, name, size, what);
        return tlm_fail(TLM_EFORMAT, "%s %s: /%s is not a dataset of rows of %llu %zu-byte %s", kind, path, name,
                        (unsigned long long)width, size, what);
    }
    *rows = (int64_t)dims[0];
    return TLM_OK;
}

int tlm_h5_read_rows(hid_t ds, hid_t type, hsize_t start, hsize_t n, hsize_t width, void *out) {
    if (n == 0) return 0;
    hid_t mspace, fspace = select_rows(ds, start, n, width, &mspace);
    int rc = fspace >= 0 && H5Dread(ds, type, mspace, fspace, H5P_DEFAULT, out) >= 0 ? 0 : -1;
    if (mspace >= 0) H5Sclose(mspace);
    if (fspace >= 0) H5Sclose(fspace);
    return rc;
}

static herr_t collect_attr(hid_t obj, const char *name, const H5A_info_t *info, void *data) {
    (void)info;
    tlm_h5_attrs *a = data;
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t type = attr >= 0 ? H5Aget_type(attr) : H5I_INVALID_HID;
    herr_t rc = -1;
    /* only the fixed-length strings tlm_h5_write_string_attr writes are accepted */
    if (type >= 0 && H5Tget_class(type) == H5T_STRING && !H5Tis_variable_str(type)) {
        size_t size = H5Tget_size(type);
        char *value = calloc(size + 1, 1);
        char *key = strdup(name);
        char **keys = realloc(a->keys, (size_t)(a->n + 1) * sizeof *keys);
        if (keys) a->keys = keys;
        char **values = realloc(a->values, (size_t)(a->n + 1) * sizeof *values);
        if (values) a->values = values;
        if (value && key && keys && values && H5Aread(attr, type, value) >= 0) {
            a->keys[a->n] = key;
            a->values[a->n] = value;
            a->n++;
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

tlm_status tlm_h5_read_attrs(hid_t file, const char *kind, const char *path, tlm_h5_attrs *out) {
    if (H5Aiterate2(file, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_attr, out) < 0)
        return tlm_h5_fail(TLM_EFORMAT, kind, path, "root attributes must be fixed-length strings");
    return TLM_OK;
}

const char *tlm_h5_attr(const tlm_h5_attrs *a, const char *key) {
    for (int64_t i = 0; i < a->n; i++)
        if (strcmp(a->keys[i], key) == 0) return a->values[i];
    return NULL;
}

void tlm_h5_attrs_free(tlm_h5_attrs *a) {
    for (int64_t i = 0; i < a->n; i++) { free(a->keys[i]); free(a->values[i]); }
    free(a->keys);
    free(a->values);
    a->n = 0;
    a->keys = a->values = NULL;
}
