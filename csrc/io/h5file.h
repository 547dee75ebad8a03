/* h5file.h: what tinylm's HDF5 files share (the token cache, hdf5_cache.c,
 * and the teacher top-k cache, hdf5_topk.c): libhdf5 kept quiet, failures
 * that carry libhdf5's reason, chunked extendable datasets of rows, string
 * attributes, and the sealed, atomic way a file comes into being.
 *
 * Every message starts with the file's kind and path ("token cache
 * out/x.h5: ..."), so a caller passes `kind` along. */
#ifndef TLM_H5FILE_H
#define TLM_H5FILE_H

#include "core/internal.h"

#include <hdf5.h>

/* Root attributes of a file, fixed-length UTF-8 strings, as read. */
typedef struct {
    int64_t n;
    char **keys, **values;
} tlm_h5_attrs;

/* libhdf5 prints its error stack unless told not to; the core never
 * prints, so every entry point calls this first. */
void tlm_h5_quiet(void);
/* Fails with "kind path: what (libhdf5: innermost reason)". */
tlm_status tlm_h5_fail(tlm_status st, const char *kind, const char *path, const char *what);

/* ---- writing */
/* Creates "<path>.tmp-<pid>-<n>" (its name in *tmp_path, the caller's to
 * free) with a user block for the seal; the name is unique to the writer,
 * so writers of the same file at once never share a temporary file. */
tlm_status tlm_h5_create_temp(const char *kind, const char *path, char **tmp_path, hid_t *file);
/* An extendable dataset of rows of `width` elements (width 1: 1-D),
 * chunked by chunk_rows; compress adds the shuffle and deflate filters. */
hid_t tlm_h5_create_rows(hid_t file, const char *name, hid_t type, hsize_t width, hsize_t chunk_rows, int compress);
/* Writes n rows at the end of a dataset that holds `old` rows now. */
int tlm_h5_append_rows(hid_t ds, hid_t type, const void *data, hsize_t old, hsize_t n, hsize_t width);
int tlm_h5_write_string_attr(hid_t obj, const char *key, const char *value);
/* Flushes the file; the caller then closes every handle and calls
 * tlm_h5_seal_rename. */
tlm_status tlm_h5_flush(const char *kind, const char *path, hid_t file);
/* Seals the closed temporary file, syncs it and renames it onto path,
 * passing test point `point` just before the rename. */
tlm_status tlm_h5_seal_rename(const char *kind, const char *tmp_path, const char *path, const char *point);
/* Points an uncommitted writer's descriptor at /dev/null, so closing it
 * writes nothing more: libhdf5 1.10 cannot close a file whose last flush
 * failed (a full disk), and any later close, its own at exit included,
 * crashes the process. The caller then closes its handles. */
void tlm_h5_abandon(hid_t file);

/* ---- reading */
/* Checks the seal, then opens the file read-only (EIO when it cannot be
 * read at all, EFORMAT when it is no finished tinylm file). */
tlm_status tlm_h5_open_sealed(const char *kind, const char *path, hid_t *file);
/* Opens dataset `name`, which must hold rows of `width` integers or floats
 * (cls) of `size` bytes (width 1: a 1-D dataset); its row count in *rows. */
tlm_status tlm_h5_open_rows(hid_t file, const char *kind, const char *path, const char *name, H5T_class_t cls,
                            size_t size, hsize_t width, hid_t *ds, int64_t *rows);
int tlm_h5_read_rows(hid_t ds, hid_t type, hsize_t start, hsize_t n, hsize_t width, void *out);
/* The root attributes, which must all be fixed-length strings. */
tlm_status tlm_h5_read_attrs(hid_t file, const char *kind, const char *path, tlm_h5_attrs *out);
/* The value of key, or NULL. */
const char *tlm_h5_attr(const tlm_h5_attrs *a, const char *key);
void tlm_h5_attrs_free(tlm_h5_attrs *a);

#endif
