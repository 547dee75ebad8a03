/* py_safetensors.c: SafetensorsFile and write_safetensors, the Python face
 * of csrc/io/safetensors.c. */
#include "py/common.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------ SafetensorsFile */

typedef struct {
    PyObject_HEAD
    tlm_st_file *file;  /* NULL once released */
    PyObject *path;     /* str */
    int closed;
    int lent;           /* raw() handed out a view into the mapping */
    int converting;     /* read_into calls running without the GIL */
} StFileObject;

static void st_release(StFileObject *self) {
    tlm_st_close(self->file);
    self->file = NULL;
}

static PyObject *st_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"path", NULL};
    PyObject *path = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&:SafetensorsFile", kwlist, PyUnicode_FSDecoder, &path))
        return NULL;
    PyObject *encoded = PyUnicode_EncodeFSDefault(path);
    StFileObject *self = encoded ? (StFileObject *)type->tp_alloc(type, 0) : NULL;
    if (!self) {
        Py_XDECREF(encoded);
        Py_DECREF(path);
        return NULL;
    }
    self->path = path;
    const char *cpath = PyBytes_AS_STRING(encoded);
    tlm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = tlm_st_open(cpath, &self->file);
    Py_END_ALLOW_THREADS
    Py_DECREF(encoded);
    if (st != TLM_OK) {
        Py_DECREF(self);
        return tlm_py_raise(st);
    }
    return (PyObject *)self;
}

static void st_dealloc(StFileObject *self) {
    st_release(self);
    Py_XDECREF(self->path);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int st_check_open(StFileObject *self) {
    if (!self->closed) return 0;
    PyErr_Format(PyExc_ValueError, "%U: safetensors file is closed", self->path);
    return -1;
}

/* The tensor called `name`, or -1 with KeyError set. */
static int st_lookup(StFileObject *self, const char *name, tlm_st_tensor *t) {
    if (st_check_open(self) < 0) return -1;
    if (tlm_st_find(self->file, name, t) == TLM_OK) return 0;
    PyErr_SetString(PyExc_KeyError, tlm_last_error());
    return -1;
}

static PyObject *shape_tuple(const int64_t *shape, int ndim) {
    PyObject *tuple = PyTuple_New(ndim);
    for (int d = 0; tuple && d < ndim; d++) {
        PyObject *dim = PyLong_FromLongLong(shape[d]);
        if (!dim) Py_CLEAR(tuple);
        else PyTuple_SET_ITEM(tuple, d, dim);
    }
    return tuple;
}

static PyObject *st_tensors(StFileObject *self, PyObject *noargs) {
    (void)noargs;
    if (st_check_open(self) < 0) return NULL;
    int64_t n = tlm_st_count(self->file);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (int64_t i = 0; list && i < n; i++) {
        tlm_st_tensor t;
        tlm_st_get(self->file, i, &t); /* i is in range */
        PyObject *shape = shape_tuple(t.shape, t.ndim);
        PyObject *item = shape ? Py_BuildValue("(ssN)", t.name, tlm_dtype_name(t.dtype), shape) : NULL;
        if (!item) Py_CLEAR(list);
        else PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return list;
}

static PyObject *st_metadata(StFileObject *self, PyObject *noargs) {
    (void)noargs;
    if (st_check_open(self) < 0) return NULL;
    PyObject *dict = PyDict_New();
    for (int64_t i = 0; dict && i < tlm_st_metadata_count(self->file); i++) {
        const char *key, *value;
        tlm_st_metadata_get(self->file, i, &key, &value); /* i is in range */
        PyObject *v = PyUnicode_FromString(value);
        if (!v || PyDict_SetItemString(dict, key, v) < 0) Py_CLEAR(dict);
        Py_XDECREF(v);
    }
    return dict;
}

static int is_float_dtype(tlm_dtype dt) { return dt == TLM_F32 || dt == TLM_F16 || dt == TLM_BF16 || dt == TLM_F64; }

static int64_t tensor_numel(const tlm_st_tensor *t) {
    return (int64_t)(t->nbytes / tlm_dtype_size(t->dtype)); /* the reader checked nbytes == numel * itemsize */
}

static PyObject *st_read_into(StFileObject *self, PyObject *args) {
    const char *name;
    PyObject *out;
    tlm_st_tensor t;
    if (!PyArg_ParseTuple(args, "sO:read_into", &name, &out) || st_lookup(self, name, &t) < 0) return NULL;
    if (!is_float_dtype(t.dtype))
        return PyErr_Format(TlmUnsupportedError, "%U: tensor \"%s\" is %s, not a floating dtype read_into converts",
                            self->path, name, tlm_dtype_name(t.dtype));
    Py_buffer view;
    if (tlm_py_get_buffer(out, 'f', -1, 1, "out", &view) < 0) return NULL;
    int64_t numel = tensor_numel(&t);
    if (view.len / view.itemsize != numel) {
        PyErr_Format(PyExc_ValueError, "%U: tensor \"%s\" has %lld elements but out has %zd", self->path, name,
                     (long long)numel, view.len / view.itemsize);
        PyBuffer_Release(&view);
        return NULL;
    }
    tlm_status st;
    self->converting++; /* a close() from another thread meanwhile leaves the mapping to dealloc */
    Py_BEGIN_ALLOW_THREADS
    st = tlm_to_f32(t.data, t.dtype, numel, view.buf);
    Py_END_ALLOW_THREADS
    self->converting--;
    PyBuffer_Release(&view);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *st_raw(StFileObject *self, PyObject *arg) {
    const char *name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    tlm_st_tensor t;
    if (!name) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "raw() takes a tensor name (str)");
        return NULL;
    }
    if (st_lookup(self, name, &t) < 0) return NULL;
    int64_t len = (int64_t)t.nbytes;
    PyObject *view = tlm_py_view((PyObject *)self, (void *)t.data, "B", 1, 1, &len, 0);
    if (view) self->lent = 1;
    return view;
}

/* Releases the mapping now, unless something still points into it: then the
 * last reference to the file (which every raw() view holds) releases it. */
static PyObject *st_close(StFileObject *self, PyObject *noargs) {
    (void)noargs;
    self->closed = 1;
    if (!self->lent && !self->converting) st_release(self);
    Py_RETURN_NONE;
}

static PyObject *st_enter(StFileObject *self, PyObject *noargs) {
    (void)noargs;
    if (st_check_open(self) < 0) return NULL;
    return Py_NewRef(self);
}

static PyObject *st_exit(StFileObject *self, PyObject *args) {
    (void)args;
    return st_close(self, NULL);
}

static PyObject *st_get_path(StFileObject *self, void *closure) {
    (void)closure;
    return Py_NewRef(self->path);
}

static PyMethodDef st_methods[] = {
    {"tensors", (PyCFunction)st_tensors, METH_NOARGS, "[(name, dtype, shape)] in header order."},
    {"metadata", (PyCFunction)st_metadata, METH_NOARGS, "The __metadata__ strings as a dict ({} if none)."},
    {"read_into", (PyCFunction)st_read_into, METH_VARARGS,
     "read_into(name, out): converts a F32/F16/BF16/F64 tensor into `out`, a writable C-contiguous float32 "
     "buffer of exactly numel elements."},
    {"raw", (PyCFunction)st_raw, METH_O, "raw(name): the tensor's bytes as a read-only view into the mapped file."},
    {"close", (PyCFunction)st_close, METH_NOARGS, "Closes the file; views from raw() stay valid."},
    {"__enter__", (PyCFunction)st_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)st_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef st_getset[] = {
    {"path", (getter)st_get_path, NULL, "The path the file was opened from.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject StFileType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tinylm._core.SafetensorsFile",
    .tp_basicsize = sizeof(StFileObject),
    .tp_dealloc = (destructor)st_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SafetensorsFile(path): a safetensors file mapped read-only, its header fully validated on open.",
    .tp_methods = st_methods,
    .tp_getset = st_getset,
    .tp_new = st_new,
};

/* ---------------------------------------------------- write_safetensors */

/* What one call holds while the core writes without the GIL. */
typedef struct {
    Py_ssize_t n;
    tlm_st_tensor *tensors; /* [n] */
    Py_buffer *views;       /* [n] the entries' buffers; .obj is NULL until acquired */
    void **converted;       /* [n] F16/BF16 blocks converted from float32, else NULL */
    const char **meta_keys, **meta_values;
    Py_ssize_t n_meta;
    PyObject *keep;         /* the str objects whose UTF-8 the pointers above use */
} write_job;

static void job_free(write_job *job) {
    for (Py_ssize_t i = 0; i < job->n; i++) {
        if (job->views && job->views[i].obj) PyBuffer_Release(&job->views[i]);
        if (job->converted) free(job->converted[i]);
    }
    PyMem_Free(job->tensors);
    PyMem_Free(job->views);
    PyMem_Free(job->converted);
    PyMem_Free(job->meta_keys);
    PyMem_Free(job->meta_values);
    Py_XDECREF(job->keep);
}

/* UTF-8 of a str without NUL characters, kept alive by job->keep. */
static const char *job_string(write_job *job, PyObject *s, const char *what) {
    Py_ssize_t len;
    const char *u = PyUnicode_Check(s) ? PyUnicode_AsUTF8AndSize(s, &len) : NULL;
    if (!u) {
        if (!PyErr_Occurred()) PyErr_Format(PyExc_TypeError, "%s must be a str", what);
        return NULL;
    }
    if ((size_t)len != strlen(u)) {
        PyErr_Format(PyExc_ValueError, "%s contains a NUL character", what);
        return NULL;
    }
    return PyList_Append(job->keep, s) < 0 ? NULL : u;
}

static int parse_shape(PyObject *obj, const char *path, const char *name, tlm_st_tensor *t) {
    PyObject *seq = PySequence_Fast(obj, "shape must be a sequence of ints");
    if (!seq) return -1;
    Py_ssize_t ndim = PySequence_Fast_GET_SIZE(seq);
    int rc = 0;
    if (ndim > TLM_MAX_DIMS) {
        PyErr_Format(PyExc_ValueError, "%s: tensor \"%s\": shape has %zd dimensions, more than %d", path, name, ndim,
                     TLM_MAX_DIMS);
        rc = -1;
    }
    for (Py_ssize_t d = 0; rc == 0 && d < ndim; d++) {
        t->shape[d] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, d));
        if (t->shape[d] == -1 && PyErr_Occurred()) rc = -1;
    }
    t->ndim = (int)ndim;
    Py_DECREF(seq);
    return rc;
}

/* Elements of t's shape, or -1 if a dimension is negative or the count overflows. */
static int64_t shape_numel(const tlm_st_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0 || __builtin_mul_overflow(n, t->shape[d], &n)) return -1;
    return n;
}

/* float32 in native (little-endian) order, as numpy and torch export it. */
static int holds_float32(const Py_buffer *view) {
    const char *fmt = view->format ? view->format : "B";
    if (*fmt == '<' || *fmt == '=' || *fmt == '@') fmt++;
    return view->itemsize == 4 && strcmp(fmt, "f") == 0;
}

/* Fills job->tensors[i] from (name, dtype_name, shape, buffer): a float32
 * buffer is converted to F16/BF16 when asked for; anything else is written as
 * its raw bytes (the core checks their count against the shape). */
static int parse_entry(write_job *job, Py_ssize_t i, PyObject *item, const char *path) {
    tlm_st_tensor *t = &job->tensors[i];
    Py_buffer *view = &job->views[i];
    PyObject *seq = PySequence_Fast(item, "each entry must be (name, dtype, shape, buffer)");
    if (!seq) return -1;
    int rc = -1;
    const char *dtype_name = NULL;
    if (PySequence_Fast_GET_SIZE(seq) != 4) {
        PyErr_Format(PyExc_ValueError, "entry %zd must be (name, dtype, shape, buffer)", i);
    } else if ((t->name = job_string(job, PySequence_Fast_GET_ITEM(seq, 0), "tensor name")) &&
               (dtype_name = job_string(job, PySequence_Fast_GET_ITEM(seq, 1), "dtype")) &&
               parse_shape(PySequence_Fast_GET_ITEM(seq, 2), path, t->name, t) == 0) {
        if (tlm_dtype_from_name(dtype_name, &t->dtype) != TLM_OK)
            PyErr_Format(PyExc_ValueError, "%s: tensor \"%s\": unknown dtype \"%s\"", path, t->name, dtype_name);
        else if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, 3), view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
            PyErr_Format(PyExc_TypeError, "%s: tensor \"%s\": data must be a C-contiguous buffer", path, t->name);
        else if (view->format && (view->format[0] == '>' || view->format[0] == '!'))
            PyErr_Format(PyExc_ValueError, "%s: tensor \"%s\": big-endian data; safetensors is little-endian", path,
                         t->name);
        else
            rc = 0;
    }
    Py_DECREF(seq);
    if (rc < 0) return -1;

    t->data = view->buf;
    t->nbytes = (uint64_t)view->len;
    if (!holds_float32(view) || (t->dtype != TLM_F16 && t->dtype != TLM_BF16)) return 0;
    int64_t numel = shape_numel(t);
    if (numel < 0 || view->len / 4 != numel) {
        PyErr_Format(PyExc_ValueError, "%s: tensor \"%s\": %zd float32 values do not fill the shape", path, t->name,
                     view->len / 4);
        return -1;
    }
    t->nbytes = (uint64_t)numel * 2;
    if (!(job->converted[i] = malloc(t->nbytes ? t->nbytes : 1))) {
        PyErr_NoMemory();
        return -1;
    }
    t->data = job->converted[i];
    return 0;
}

static int parse_metadata(write_job *job, PyObject *metadata) {
    if (metadata == Py_None) return 0;
    if (!PyDict_Check(metadata)) {
        PyErr_SetString(PyExc_TypeError, "metadata must be a dict of str to str, or None");
        return -1;
    }
    Py_ssize_t n = PyDict_Size(metadata), pos = 0;
    PyObject *key, *value;
    job->meta_keys = PyMem_Calloc((size_t)n + 1, sizeof *job->meta_keys);
    job->meta_values = PyMem_Calloc((size_t)n + 1, sizeof *job->meta_values);
    if (!job->meta_keys || !job->meta_values) {
        PyErr_NoMemory();
        return -1;
    }
    while (PyDict_Next(metadata, &pos, &key, &value)) {
        if (!(job->meta_keys[job->n_meta] = job_string(job, key, "metadata key")) ||
            !(job->meta_values[job->n_meta] = job_string(job, value, "metadata value")))
            return -1;
        job->n_meta++;
    }
    return 0;
}

/* Converts the float32 entries bound for F16/BF16, then writes; no GIL needed. */
static tlm_status job_run(write_job *job, const char *path) {
    for (Py_ssize_t i = 0; i < job->n; i++) {
        if (!job->converted[i]) continue;
        tlm_st_tensor *t = &job->tensors[i];
        tlm_status st = tlm_from_f32(job->views[i].buf, (int64_t)(t->nbytes / 2), t->dtype, job->converted[i]);
        if (st != TLM_OK) return st;
    }
    return tlm_st_write(path, job->tensors, job->n, job->meta_keys, job->meta_values, job->n_meta);
}

static PyObject *py_write_safetensors(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)self;
    static char *kwlist[] = {"path", "entries", "metadata", NULL};
    PyObject *path = NULL, *entries, *metadata = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O|O:write_safetensors", kwlist, PyUnicode_FSConverter, &path,
                                     &entries, &metadata))
        return NULL;
    const char *cpath = PyBytes_AS_STRING(path);
    write_job job = {0};
    PyObject *seq = PySequence_Fast(entries, "entries must be a list of (name, dtype, shape, buffer)");
    int ok = seq != NULL;
    if (ok) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        job.keep = PyList_New(0);
        job.tensors = PyMem_Calloc((size_t)n + 1, sizeof *job.tensors);
        job.views = PyMem_Calloc((size_t)n + 1, sizeof *job.views);
        job.converted = PyMem_Calloc((size_t)n + 1, sizeof *job.converted);
        ok = job.keep && job.tensors && job.views && job.converted;
        if (ok) job.n = n; /* entries not reached stay zeroed, which job_free skips */
        else PyErr_NoMemory();
        for (Py_ssize_t i = 0; ok && i < n; i++)
            ok = parse_entry(&job, i, PySequence_Fast_GET_ITEM(seq, i), cpath) == 0;
        ok = ok && parse_metadata(&job, metadata) == 0;
    }
    tlm_status st = TLM_OK;
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        st = job_run(&job, cpath);
        Py_END_ALLOW_THREADS
    }
    job_free(&job);
    Py_XDECREF(seq);
    Py_DECREF(path);
    if (!ok) return NULL;
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

static PyMethodDef functions[] = {
    {"write_safetensors", (PyCFunction)(void (*)(void))py_write_safetensors, METH_VARARGS | METH_KEYWORDS,
     "write_safetensors(path, entries, metadata=None): writes [(name, dtype, shape, buffer)] atomically. A float32 "
     "buffer is converted to F16/BF16 when that dtype is asked for; any other buffer is written as its raw bytes."},
    {NULL, NULL, 0, NULL},
};

int tlm_py_init_safetensors(PyObject *module) {
    if (PyType_Ready(&StFileType) < 0) return -1;
    if (PyModule_AddObjectRef(module, "SafetensorsFile", (PyObject *)&StFileType) < 0) return -1;
    return PyModule_AddFunctions(module, functions);
}
