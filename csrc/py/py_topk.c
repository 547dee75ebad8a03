/* py_topk.c: the teacher top-k cache (tlm_topk_*) as tinylm._core.TopkCache.
 * tinylm.distill.cache is its only user; the arrays it passes are numpy's. */
#include "py/common.h"

typedef struct {
    PyObject_HEAD
    tlm_topk_cache *cache;
    int writer;      /* made by topk_create and not yet committed */
} TopkObject;

static PyTypeObject TopkType;

static void topk_dealloc(TopkObject *self) {
    tlm_topk_close(self->cache);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static TopkObject *topk_wrap(tlm_topk_cache *c, int writer) {
    TopkObject *self = PyObject_New(TopkObject, &TopkType);
    if (!self) { tlm_topk_close(c); return NULL; }
    self->cache = c;
    self->writer = writer;
    return self;
}

static int check_open(TopkObject *self, int want_writer) {
    if (!self->cache) { PyErr_SetString(PyExc_ValueError, "teacher cache is closed"); return -1; }
    if (self->writer != want_writer) {
        PyErr_SetString(PyExc_ValueError, want_writer ? "teacher cache is not open for writing"
                                                      : "teacher cache is still being written; commit it first");
        return -1;
    }
    return 0;
}

static PyObject *py_topk_create(PyObject *mod, PyObject *args) {
    (void)mod;
    const char *path;
    long long k, vocab;
    if (!PyArg_ParseTuple(args, "sLL:topk_create", &path, &k, &vocab)) return NULL;
    tlm_topk_cache *c;
    tlm_status st = tlm_topk_create(path, k, vocab, &c);
    if (st != TLM_OK) return tlm_py_raise(st);
    return (PyObject *)topk_wrap(c, 1);
}

static PyObject *py_topk_open(PyObject *mod, PyObject *args) {
    (void)mod;
    const char *path;
    if (!PyArg_ParseTuple(args, "s:topk_open", &path)) return NULL;
    tlm_topk_cache *c;
    tlm_status st = tlm_topk_open(path, &c);
    if (st != TLM_OK) return tlm_py_raise(st);
    return (PyObject *)topk_wrap(c, 0);
}

static PyObject *topk_append(TopkObject *self, PyObject *args) {
    PyObject *counts_o, *ids_o, *logp_o, *tail_o;
    if (!PyArg_ParseTuple(args, "OOOO:append", &counts_o, &ids_o, &logp_o, &tail_o)) return NULL;
    if (check_open(self, 1) < 0) return NULL;
    Py_buffer counts, ids, logp, tail;
    if (tlm_py_get_i64(counts_o, -1, "counts", &counts) < 0) return NULL;
    Py_ssize_t n = counts.len / 8, total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t c = ((const int64_t *)counts.buf)[i];
        if (c < 0) {
            PyBuffer_Release(&counts);
            return PyErr_Format(PyExc_ValueError, "counts[%zd] is negative", i);
        }
        total += (Py_ssize_t)c;
    }
    Py_ssize_t k = (Py_ssize_t)tlm_topk_k(self->cache);
    PyObject *ret = NULL;
    if (tlm_py_get_buffer(ids_o, 'i', total * k, 0, "ids", &ids) == 0) {
        if (tlm_py_get_buffer(logp_o, 'f', total * k, 0, "logprobs", &logp) == 0) {
            if (tlm_py_get_buffer(tail_o, 'f', total, 0, "tail", &tail) == 0) {
                tlm_status st = tlm_topk_append(self->cache, counts.buf, n, ids.buf, logp.buf, tail.buf);
                ret = st == TLM_OK ? Py_NewRef(Py_None) : tlm_py_raise(st);
                PyBuffer_Release(&tail);
            }
            PyBuffer_Release(&logp);
        }
        PyBuffer_Release(&ids);
    }
    PyBuffer_Release(&counts);
    return ret;
}

static PyObject *topk_set_attr(TopkObject *self, PyObject *args) {
    const char *key, *value;
    if (!PyArg_ParseTuple(args, "ss:set_attr", &key, &value)) return NULL;
    if (check_open(self, 1) < 0) return NULL;
    tlm_status st = tlm_topk_set_attr(self->cache, key, value);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *topk_commit(TopkObject *self, PyObject *noargs) {
    (void)noargs;
    if (check_open(self, 1) < 0) return NULL;
    tlm_status st = tlm_topk_commit(self->cache);
    if (st != TLM_OK) return tlm_py_raise(st);
    tlm_topk_close(self->cache);   /* committed: what is left is a closed object */
    self->cache = NULL;
    self->writer = 0;
    Py_RETURN_NONE;
}

static PyObject *topk_close(TopkObject *self, PyObject *noargs) {
    (void)noargs;
    tlm_topk_close(self->cache);
    self->cache = NULL;
    Py_RETURN_NONE;
}

static PyObject *topk_read(TopkObject *self, PyObject *args) {
    long long row;
    PyObject *ids_o, *logp_o, *tail_o;
    if (!PyArg_ParseTuple(args, "LOOO:read", &row, &ids_o, &logp_o, &tail_o)) return NULL;
    if (check_open(self, 0) < 0) return NULL;
    int64_t rows = tlm_topk_rows(self->cache);
    if (row < 0 || row >= rows) return PyErr_Format(PyExc_IndexError, "row %lld out of range [0, %lld)", row, (long long)rows);
    const int64_t *offs = tlm_topk_row_offsets(self->cache);
    Py_ssize_t n = (Py_ssize_t)(offs[row + 1] - offs[row]), k = (Py_ssize_t)tlm_topk_k(self->cache);
    Py_buffer ids, logp, tail;
    PyObject *ret = NULL;
    if (tlm_py_get_buffer(ids_o, 'i', n * k, 1, "ids", &ids) == 0) {
        if (tlm_py_get_buffer(logp_o, 'f', n * k, 1, "logprobs", &logp) == 0) {
            if (tlm_py_get_buffer(tail_o, 'f', n, 1, "tail", &tail) == 0) {
                tlm_status st = tlm_topk_read(self->cache, row, ids.buf, logp.buf, tail.buf);
                ret = st == TLM_OK ? Py_NewRef(Py_None) : tlm_py_raise(st);
                PyBuffer_Release(&tail);
            }
            PyBuffer_Release(&logp);
        }
        PyBuffer_Release(&ids);
    }
    return ret;
}

static PyObject *topk_get_int(TopkObject *self, void *closure) {
    if (check_open(self, 0) < 0) return NULL;
    int64_t (*get)(const tlm_topk_cache *) = (int64_t (*)(const tlm_topk_cache *))closure;
    return PyLong_FromLongLong(get(self->cache));
}

static PyObject *topk_get_attrs(TopkObject *self, void *closure) {
    (void)closure;
    if (check_open(self, 0) < 0) return NULL;
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (int64_t i = 0; i < tlm_topk_attr_count(self->cache); i++) {
        const char *k, *v;
        if (tlm_topk_attr_get(self->cache, i, &k, &v) != TLM_OK) { Py_DECREF(d); return tlm_py_raise(TLM_EINVAL); }
        PyObject *val = PyUnicode_DecodeUTF8(v, (Py_ssize_t)strlen(v), "replace");
        if (!val || PyDict_SetItemString(d, k, val) < 0) { Py_XDECREF(val); Py_DECREF(d); return NULL; }
        Py_DECREF(val);
    }
    return d;
}

static PyObject *topk_get_offsets(TopkObject *self, void *closure) {
    (void)closure;
    if (check_open(self, 0) < 0) return NULL;
    return tlm_py_i64_copy(tlm_topk_row_offsets(self->cache), tlm_topk_rows(self->cache) + 1);
}

static PyMethodDef topk_methods[] = {
    {"append", (PyCFunction)topk_append, METH_VARARGS,
     "append(counts int64[n], ids int32[P*k], logprobs float32[P*k], tail float32[P]): add n rows, P = sum(counts)."},
    {"set_attr", (PyCFunction)topk_set_attr, METH_VARARGS, "set_attr(key, value): a string attribute."},
    {"commit", (PyCFunction)topk_commit, METH_NOARGS, "Finish the file and rename it onto its path."},
    {"close", (PyCFunction)topk_close, METH_NOARGS, "Close; an uncommitted writer's temporary file is removed."},
    {"read", (PyCFunction)topk_read, METH_VARARGS,
     "read(row, ids_out int32[n*k], logprobs_out float32[n*k], tail_out float32[n]): row's n positions."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef topk_getset[] = {
    {"rows", (getter)topk_get_int, NULL, "Number of rows.", (void *)tlm_topk_rows},
    {"k", (getter)topk_get_int, NULL, "Ids kept per position.", (void *)tlm_topk_k},
    {"vocab_size", (getter)topk_get_int, NULL, "The teacher's vocabulary size.", (void *)tlm_topk_vocab_size},
    {"positions", (getter)topk_get_int, NULL, "Number of positions stored.", (void *)tlm_topk_positions},
    {"attrs", (getter)topk_get_attrs, NULL, "The string attributes, as a dict.", NULL},
    {"row_offsets", (getter)topk_get_offsets, NULL, "int64 [rows+1] position offsets (a read-only copy).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TopkType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tinylm._core.TopkCache",
    .tp_basicsize = sizeof(TopkObject),
    .tp_dealloc = (destructor)topk_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A teacher's top-k log-probabilities in an HDF5 file (made by topk_create or topk_open).",
    .tp_methods = topk_methods,
    .tp_getset = topk_getset,
};

static PyMethodDef topk_functions[] = {
    {"topk_create", py_topk_create, METH_VARARGS,
     "topk_create(path, k, vocab_size) -> TopkCache being written under a temporary name."},
    {"topk_open", py_topk_open, METH_VARARGS, "topk_open(path) -> validated TopkCache for reading."},
    {NULL, NULL, 0, NULL},
};

int tlm_py_init_topk(PyObject *module) {
    if (PyType_Ready(&TopkType) < 0) return -1;
    if (PyModule_AddObjectRef(module, "TopkCache", (PyObject *)&TopkType) < 0) return -1;
    return PyModule_AddFunctions(module, topk_functions);
}
