/* py_data.c: the HDF5 token cache (tlm_cache_*) as tinylm._core.TokenCache.
 * tinylm.data.cache is its only user; the arrays it passes are numpy's. */
#include "py/common.h"

typedef struct {
    PyObject_HEAD
    tlm_cache *cache;
    int writer;      /* made by cache_create and not yet committed */
} CacheObject;

static PyTypeObject CacheType;

static void cache_dealloc(CacheObject *self) {
    tlm_cache_close(self->cache);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static CacheObject *cache_wrap(tlm_cache *c, int writer) {
    CacheObject *self = PyObject_New(CacheObject, &CacheType);
    if (!self) { tlm_cache_close(c); return NULL; }
    self->cache = c;
    self->writer = writer;
    return self;
}

static int check_open(CacheObject *self, int want_writer) {
    if (!self->cache) { PyErr_SetString(PyExc_ValueError, "token cache is closed"); return -1; }
    if (self->writer != want_writer) {
        PyErr_SetString(PyExc_ValueError, want_writer ? "token cache is not open for writing"
                                                      : "token cache is still being written; commit it first");
        return -1;
    }
    return 0;
}

static PyObject *py_cache_create(PyObject *mod, PyObject *args) {
    (void)mod;
    const char *path;
    if (!PyArg_ParseTuple(args, "s:cache_create", &path)) return NULL;
    tlm_cache *c;
    tlm_status st = tlm_cache_create(path, &c);
    if (st != TLM_OK) return tlm_py_raise(st);
    return (PyObject *)cache_wrap(c, 1);
}

static PyObject *py_cache_open(PyObject *mod, PyObject *args) {
    (void)mod;
    const char *path;
    if (!PyArg_ParseTuple(args, "s:cache_open", &path)) return NULL;
    tlm_cache *c;
    tlm_status st = tlm_cache_open(path, &c);
    if (st != TLM_OK) return tlm_py_raise(st);
    return (PyObject *)cache_wrap(c, 0);
}

static PyObject *cache_append(CacheObject *self, PyObject *args) {
    PyObject *ids_o, *mask_o, *lengths_o, *lines_o;
    if (!PyArg_ParseTuple(args, "OOOO:append", &ids_o, &mask_o, &lengths_o, &lines_o)) return NULL;
    if (check_open(self, 1) < 0) return NULL;
    Py_buffer ids, mask, lengths, lines;
    if (tlm_py_get_i64(lengths_o, -1, "lengths", &lengths) < 0) return NULL;
    Py_ssize_t n = lengths.len / 8, total = 0;
    for (Py_ssize_t i = 0; i < n; i++) total += ((const int64_t *)lengths.buf)[i];
    PyObject *ret = NULL;
    if (tlm_py_get_i64(lines_o, n, "lines", &lines) == 0) {
        if (tlm_py_get_buffer(ids_o, 'i', total, 0, "ids", &ids) == 0) {
            if (tlm_py_get_buffer(mask_o, 'B', total, 0, "mask", &mask) == 0) {
                tlm_status st = tlm_cache_append(self->cache, ids.buf, mask.buf, lengths.buf, lines.buf, n);
                ret = st == TLM_OK ? Py_NewRef(Py_None) : tlm_py_raise(st);
                PyBuffer_Release(&mask);
            }
            PyBuffer_Release(&ids);
        }
        PyBuffer_Release(&lines);
    }
    PyBuffer_Release(&lengths);
    return ret;
}

static PyObject *cache_set_attr(CacheObject *self, PyObject *args) {
    const char *key, *value;
    if (!PyArg_ParseTuple(args, "ss:set_attr", &key, &value)) return NULL;
    if (check_open(self, 1) < 0) return NULL;
    tlm_status st = tlm_cache_set_attr(self->cache, key, value);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *cache_commit(CacheObject *self, PyObject *noargs) {
    (void)noargs;
    if (check_open(self, 1) < 0) return NULL;
    tlm_status st = tlm_cache_commit(self->cache);
    if (st != TLM_OK) return tlm_py_raise(st);
    /* a committed writer has closed its file: what is left is a closed object */
    tlm_cache_close(self->cache);
    self->cache = NULL;
    self->writer = 0;
    Py_RETURN_NONE;
}

static PyObject *cache_close(CacheObject *self, PyObject *noargs) {
    (void)noargs;
    tlm_cache_close(self->cache);
    self->cache = NULL;
    Py_RETURN_NONE;
}

static PyObject *cache_read(CacheObject *self, PyObject *args) {
    long long first, n;
    PyObject *ids_o, *mask_o;
    if (!PyArg_ParseTuple(args, "LLOO:read", &first, &n, &ids_o, &mask_o)) return NULL;
    if (check_open(self, 0) < 0) return NULL;
    int64_t count = tlm_cache_count(self->cache);
    if (first < 0 || n < 0 || first + n > count)
        return PyErr_Format(PyExc_IndexError, "examples [%lld, %lld) out of range [0, %lld)", first, first + n,
                            (long long)count);
    const int64_t *offs = tlm_cache_offsets(self->cache);
    Py_ssize_t total = (Py_ssize_t)(offs[first + n] - offs[first]);
    Py_buffer ids, mask;
    if (tlm_py_get_buffer(ids_o, 'i', total, 1, "ids", &ids) < 0) return NULL;
    if (tlm_py_get_buffer(mask_o, 'B', total, 1, "mask", &mask) < 0) { PyBuffer_Release(&ids); return NULL; }
    tlm_status st = tlm_cache_read(self->cache, first, n, ids.buf, mask.buf);
    PyBuffer_Release(&mask);
    PyBuffer_Release(&ids);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *cache_get_count(CacheObject *self, void *closure) {
    (void)closure;
    if (check_open(self, 0) < 0) return NULL;
    return PyLong_FromLongLong(tlm_cache_count(self->cache));
}

static PyObject *cache_get_n_tokens(CacheObject *self, void *closure) {
    (void)closure;
    if (check_open(self, 0) < 0) return NULL;
    return PyLong_FromLongLong(tlm_cache_n_tokens(self->cache));
}

static PyObject *cache_get_attrs(CacheObject *self, void *closure) {
    (void)closure;
    if (check_open(self, 0) < 0) return NULL;
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (int64_t i = 0; i < tlm_cache_attr_count(self->cache); i++) {
        const char *k, *v;
        if (tlm_cache_attr_get(self->cache, i, &k, &v) != TLM_OK) { Py_DECREF(d); return tlm_py_raise(TLM_EINVAL); }
        PyObject *val = PyUnicode_DecodeUTF8(v, (Py_ssize_t)strlen(v), "strict");
        if (!val || PyDict_SetItemString(d, k, val) < 0) { Py_XDECREF(val); Py_DECREF(d); return NULL; }
        Py_DECREF(val);
    }
    return d;
}

static PyObject *cache_get_offsets(CacheObject *self, void *closure) {
    (void)closure;
    if (check_open(self, 0) < 0) return NULL;
    return tlm_py_i64_copy(tlm_cache_offsets(self->cache), tlm_cache_count(self->cache) + 1);
}

static PyObject *cache_get_lines(CacheObject *self, void *closure) {
    (void)closure;
    if (check_open(self, 0) < 0) return NULL;
    return tlm_py_i64_copy(tlm_cache_lines(self->cache), tlm_cache_count(self->cache));
}

static PyMethodDef cache_methods[] = {
    {"append", (PyCFunction)cache_append, METH_VARARGS,
     "append(ids int32[N], mask uint8[N], lengths int64[n], lines int64[n]): add n examples."},
    {"set_attr", (PyCFunction)cache_set_attr, METH_VARARGS, "set_attr(key, value): a string attribute."},
    {"commit", (PyCFunction)cache_commit, METH_NOARGS, "Finish the file and rename it onto its path."},
    {"close", (PyCFunction)cache_close, METH_NOARGS, "Close; an uncommitted writer's temporary file is removed."},
    {"read", (PyCFunction)cache_read, METH_VARARGS,
     "read(first, n, ids_out int32, mask_out uint8): tokens of examples [first, first+n)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef cache_getset[] = {
    {"count", (getter)cache_get_count, NULL, "Number of examples.", NULL},
    {"n_tokens", (getter)cache_get_n_tokens, NULL, "Number of tokens.", NULL},
    {"attrs", (getter)cache_get_attrs, NULL, "The string attributes, as a dict.", NULL},
    {"offsets", (getter)cache_get_offsets, NULL, "int64 [count+1] token offsets (a read-only copy).", NULL},
    {"lines", (getter)cache_get_lines, NULL, "int64 [count] source lines (a read-only copy).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CacheType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tinylm._core.TokenCache",
    .tp_basicsize = sizeof(CacheObject),
    .tp_dealloc = (destructor)cache_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A tokenized dataset in an HDF5 file (made by cache_create or cache_open).",
    .tp_methods = cache_methods,
    .tp_getset = cache_getset,
};

static PyMethodDef data_functions[] = {
    {"cache_create", py_cache_create, METH_VARARGS,
     "cache_create(path) -> TokenCache being written under a temporary name."},
    {"cache_open", py_cache_open, METH_VARARGS, "cache_open(path) -> validated TokenCache for reading."},
    {NULL, NULL, 0, NULL},
};

int tlm_py_init_data(PyObject *module) {
    if (PyType_Ready(&CacheType) < 0) return -1;
    if (PyModule_AddObjectRef(module, "TokenCache", (PyObject *)&CacheType) < 0) return -1;
    return PyModule_AddFunctions(module, data_functions);
}
