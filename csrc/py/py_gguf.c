/* py_gguf.c: GGUFFile and GGUFWriter, the Python face of csrc/io/gguf.c and
 * gguf_write.c. Values cross as plain Python objects: numbers and bools as
 * int/float/bool, numeric arrays as their little-endian bytes (tinylm.gguf
 * views them with numpy), strings as str. */
#include "py/common.h"

#include <string.h>

/* ------------------------------------------------------------- GGUFFile */

typedef struct {
    PyObject_HEAD
    tlm_gguf_file *file;  /* NULL once released */
    PyObject *path;       /* str */
    int closed;
    int lent;             /* raw() handed out a view into the mapping */
} GgufFileObject;

static PyObject *gf_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"path", NULL};
    PyObject *path = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&:GGUFFile", kwlist, PyUnicode_FSDecoder, &path)) return NULL;
    PyObject *encoded = PyUnicode_EncodeFSDefault(path);
    GgufFileObject *self = encoded ? (GgufFileObject *)type->tp_alloc(type, 0) : NULL;
    if (!self) {
        Py_XDECREF(encoded);
        Py_DECREF(path);
        return NULL;
    }
    self->path = path;
    tlm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = tlm_gguf_open(PyBytes_AS_STRING(encoded), &self->file);
    Py_END_ALLOW_THREADS
    Py_DECREF(encoded);
    if (st != TLM_OK) {
        Py_DECREF(self);
        return tlm_py_raise(st);
    }
    return (PyObject *)self;
}

static void gf_dealloc(GgufFileObject *self) {
    tlm_gguf_close(self->file);
    Py_XDECREF(self->path);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int gf_check_open(GgufFileObject *self) {
    if (!self->closed) return 0;
    PyErr_Format(PyExc_ValueError, "%U: GGUF file is closed", self->path);
    return -1;
}

static PyObject *scalar(tlm_gguf_type t, const unsigned char *p) {
    switch (t) {
    case TLM_GGUF_UINT8: return PyLong_FromUnsignedLong(p[0]);
    case TLM_GGUF_INT8: return PyLong_FromLong((int8_t)p[0]);
    case TLM_GGUF_BOOL: return PyBool_FromLong(p[0]);
    default: break;
    }
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    float f32;
    double f64;
    switch (t) {
    case TLM_GGUF_UINT16: memcpy(&u16, p, 2); return PyLong_FromUnsignedLong(u16);
    case TLM_GGUF_INT16: memcpy(&u16, p, 2); return PyLong_FromLong((int16_t)u16);
    case TLM_GGUF_UINT32: memcpy(&u32, p, 4); return PyLong_FromUnsignedLong(u32);
    case TLM_GGUF_INT32: memcpy(&u32, p, 4); return PyLong_FromLong((int32_t)u32);
    case TLM_GGUF_UINT64: memcpy(&u64, p, 8); return PyLong_FromUnsignedLongLong(u64);
    case TLM_GGUF_INT64: memcpy(&u64, p, 8); return PyLong_FromLongLong((int64_t)u64);
    case TLM_GGUF_FLOAT32: memcpy(&f32, p, 4); return PyFloat_FromDouble(f32);
    case TLM_GGUF_FLOAT64: memcpy(&f64, p, 8); return PyFloat_FromDouble(f64);
    default: break;
    }
    PyErr_SetString(PyExc_SystemError, "not a scalar GGUF type");
    return NULL;
}

static PyObject *string_value(const tlm_gguf_str *s) {
    return PyUnicode_DecodeUTF8(s->ptr, (Py_ssize_t)s->len, "strict"); /* the reader checked UTF-8 */
}

static PyObject *kv_value(const tlm_gguf_kv *kv) {
    if (kv->type != TLM_GGUF_ARRAY)
        return kv->type == TLM_GGUF_STRING ? string_value(&kv->strs[0]) : scalar(kv->type, kv->data);
    if (kv->elem_type != TLM_GGUF_STRING)
        return PyBytes_FromStringAndSize(kv->data, (Py_ssize_t)(kv->n * tlm_gguf_value_size(kv->elem_type)));
    PyObject *list = PyList_New((Py_ssize_t)kv->n);
    for (uint64_t j = 0; list && j < kv->n; j++) {
        PyObject *s = string_value(&kv->strs[j]);
        if (!s) Py_CLEAR(list);
        else PyList_SET_ITEM(list, (Py_ssize_t)j, s);
    }
    return list;
}

static PyObject *gf_metadata(GgufFileObject *self, PyObject *noargs) {
    (void)noargs;
    if (gf_check_open(self) < 0) return NULL;
    int64_t n = tlm_gguf_kv_count(self->file);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (int64_t i = 0; list && i < n; i++) {
        tlm_gguf_kv kv;
        tlm_gguf_kv_get(self->file, i, &kv); /* i is in range */
        PyObject *value = kv_value(&kv);
        PyObject *item = value ? Py_BuildValue("(siiN)", kv.key, (int)kv.type, (int)kv.elem_type, value) : NULL;
        if (!item) Py_CLEAR(list);
        else PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return list;
}

static PyObject *gf_tensors(GgufFileObject *self, PyObject *noargs) {
    (void)noargs;
    if (gf_check_open(self) < 0) return NULL;
    int64_t n = tlm_gguf_tensor_count(self->file);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (int64_t i = 0; list && i < n; i++) {
        tlm_gguf_tensor t;
        tlm_gguf_tensor_get(self->file, i, &t); /* i is in range */
        PyObject *ne = PyTuple_New(t.ndim);
        for (int d = 0; ne && d < t.ndim; d++) {
            PyObject *v = PyLong_FromLongLong(t.ne[d]);
            if (!v) Py_CLEAR(ne);
            else PyTuple_SET_ITEM(ne, d, v);
        }
        PyObject *item = ne ? Py_BuildValue("(siNKK)", t.name, t.type, ne, (unsigned long long)t.offset,
                                            (unsigned long long)t.nbytes)
                            : NULL;
        if (!item) Py_CLEAR(list);
        else PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return list;
}

static PyObject *gf_raw(GgufFileObject *self, PyObject *arg) {
    const char *name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (!name) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "raw() takes a tensor name (str)");
        return NULL;
    }
    if (gf_check_open(self) < 0) return NULL;
    tlm_gguf_tensor t;
    if (tlm_gguf_tensor_find(self->file, name, &t) != TLM_OK) {
        PyErr_SetString(PyExc_KeyError, tlm_last_error());
        return NULL;
    }
    int64_t len = (int64_t)t.nbytes;
    PyObject *view = tlm_py_view((PyObject *)self, (void *)t.data, "B", 1, 1, &len, 0);
    if (view) self->lent = 1;
    return view;
}

/* Releases the mapping now, unless a raw() view still points into it: then
 * the last reference to the file (which every view holds) releases it. */
static PyObject *gf_close(GgufFileObject *self, PyObject *noargs) {
    (void)noargs;
    self->closed = 1;
    if (!self->lent) {
        tlm_gguf_close(self->file);
        self->file = NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *gf_enter(GgufFileObject *self, PyObject *noargs) {
    (void)noargs;
    if (gf_check_open(self) < 0) return NULL;
    return Py_NewRef(self);
}

static PyObject *gf_exit(GgufFileObject *self, PyObject *args) {
    (void)args;
    return gf_close(self, NULL);
}

static PyObject *gf_get_path(GgufFileObject *self, void *closure) {
    (void)closure;
    return Py_NewRef(self->path);
}

static PyObject *gf_get_info(GgufFileObject *self, void *closure) {
    if (gf_check_open(self) < 0) return NULL;
    const char *which = closure;
    if (strcmp(which, "version") == 0) return PyLong_FromUnsignedLong(tlm_gguf_version(self->file));
    if (strcmp(which, "alignment") == 0) return PyLong_FromUnsignedLongLong(tlm_gguf_alignment(self->file));
    return PyLong_FromUnsignedLongLong(tlm_gguf_data_offset(self->file));
}

static PyMethodDef gf_methods[] = {
    {"metadata", (PyCFunction)gf_metadata, METH_NOARGS,
     "[(key, type, elem_type, value)] in file order; a numeric array's value is its little-endian bytes."},
    {"tensors", (PyCFunction)gf_tensors, METH_NOARGS, "[(name, ggml_type, ne, offset, nbytes)] in file order."},
    {"raw", (PyCFunction)gf_raw, METH_O, "raw(name): the tensor's bytes as a read-only view into the mapped file."},
    {"close", (PyCFunction)gf_close, METH_NOARGS, "Closes the file; views from raw() stay valid."},
    {"__enter__", (PyCFunction)gf_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)gf_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef gf_getset[] = {
    {"path", (getter)gf_get_path, NULL, "The path the file was opened from.", NULL},
    {"version", (getter)gf_get_info, NULL, "The GGUF version (2 or 3).", "version"},
    {"alignment", (getter)gf_get_info, NULL, "general.alignment, or the default 32.", "alignment"},
    {"data_offset", (getter)gf_get_info, NULL, "Where the data section starts in the file.", "data_offset"},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject GgufFileType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tinylm._core.GGUFFile",
    .tp_basicsize = sizeof(GgufFileObject),
    .tp_dealloc = (destructor)gf_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "GGUFFile(path): a GGUF file mapped read-only, its header fully validated on open.",
    .tp_methods = gf_methods,
    .tp_getset = gf_getset,
    .tp_new = gf_new,
};

/* ----------------------------------------------------------- GGUFWriter */

typedef struct {
    PyObject_HEAD
    tlm_gguf_writer *w;  /* NULL once committed or abandoned */
} GgufWriterObject;

static PyObject *gw_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"path", "alignment", NULL};
    PyObject *path = NULL;
    unsigned long long alignment = TLM_GGUF_DEFAULT_ALIGNMENT;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|K:GGUFWriter", kwlist, PyUnicode_FSConverter, &path,
                                     &alignment))
        return NULL;
    GgufWriterObject *self = (GgufWriterObject *)type->tp_alloc(type, 0);
    tlm_status st = self ? tlm_gguf_writer_create(PyBytes_AS_STRING(path), alignment, &self->w) : TLM_OK;
    Py_DECREF(path);
    if (!self) return NULL;
    if (st != TLM_OK) {
        Py_DECREF(self);
        return tlm_py_raise(st);
    }
    return (PyObject *)self;
}

static void gw_dealloc(GgufWriterObject *self) {
    tlm_gguf_writer_abandon(self->w); /* never committed: nothing appears at the path */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int gw_check(GgufWriterObject *self) {
    if (self->w) return 0;
    PyErr_SetString(PyExc_ValueError, "GGUFWriter is already committed or abandoned");
    return -1;
}

/* UTF-8 bytes of each str of a list, as tlm_gguf_str (pointers into the strs). */
static tlm_gguf_str *strings_of(PyObject *seq, Py_ssize_t n) {
    tlm_gguf_str *out = PyMem_Calloc((size_t)n + 1, sizeof *out);
    for (Py_ssize_t j = 0; out && j < n; j++) {
        Py_ssize_t len;
        PyObject *s = PySequence_Fast_GET_ITEM(seq, j);
        const char *u = PyUnicode_Check(s) ? PyUnicode_AsUTF8AndSize(s, &len) : NULL;
        if (!u) {
            if (!PyErr_Occurred()) PyErr_Format(PyExc_TypeError, "string value %zd is not a str", j);
            PyMem_Free(out);
            return NULL;
        }
        out[j] = (tlm_gguf_str){u, (uint64_t)len};
    }
    if (!out && !PyErr_Occurred()) PyErr_NoMemory();
    return out;
}

/* add_kv(key, type, elem_type, value): value is a list of str for strings
 * (one for a scalar string), else the values' little-endian bytes. */
static PyObject *gw_add_kv(GgufWriterObject *self, PyObject *args) {
    const char *key;
    int type, elem_type;
    PyObject *value;
    if (!PyArg_ParseTuple(args, "siiO:add_kv", &key, &type, &elem_type, &value) || gw_check(self) < 0) return NULL;
    tlm_gguf_kv kv = {key, (tlm_gguf_type)type, (tlm_gguf_type)(type == TLM_GGUF_ARRAY ? elem_type : type), 1, NULL,
                      NULL};
    tlm_status st;
    if (kv.elem_type == TLM_GGUF_STRING) {
        PyObject *seq = PySequence_Fast(value, "string values must be a list of str");
        if (!seq) return NULL;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        tlm_gguf_str *strs = strings_of(seq, n);
        if (!strs) {
            Py_DECREF(seq);
            return NULL;
        }
        kv.n = (uint64_t)n;
        kv.strs = strs;
        st = tlm_gguf_writer_add_kv(self->w, &kv);
        PyMem_Free(strs);
        Py_DECREF(seq);
    } else {
        Py_buffer view;
        if (PyObject_GetBuffer(value, &view, PyBUF_C_CONTIGUOUS) < 0) return NULL;
        uint64_t size = tlm_gguf_value_size(kv.elem_type);
        if (!size || view.len % (Py_ssize_t)size) {
            PyBuffer_Release(&view);
            return PyErr_Format(PyExc_ValueError, "key \"%s\": %zd bytes do not hold whole values of type %d", key,
                                view.len, kv.elem_type);
        }
        kv.n = (uint64_t)view.len / size;
        kv.data = view.buf;
        st = tlm_gguf_writer_add_kv(self->w, &kv);
        PyBuffer_Release(&view);
    }
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *gw_add_tensor(GgufWriterObject *self, PyObject *args) {
    const char *name;
    PyObject *ne_obj;
    int type;
    if (!PyArg_ParseTuple(args, "sOi:add_tensor", &name, &ne_obj, &type) || gw_check(self) < 0) return NULL;
    PyObject *seq = PySequence_Fast(ne_obj, "ne must be a sequence of ints");
    if (!seq) return NULL;
    Py_ssize_t ndim = PySequence_Fast_GET_SIZE(seq);
    int64_t ne[TLM_GGUF_MAX_DIMS] = {0};
    for (Py_ssize_t d = 0; d < ndim && d < TLM_GGUF_MAX_DIMS; d++) {
        ne[d] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, d));
        if (ne[d] == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    tlm_status st = tlm_gguf_writer_add_tensor(self->w, name, ndim > TLM_GGUF_MAX_DIMS ? TLM_GGUF_MAX_DIMS + 1 : (int)ndim,
                                               ne, type);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *gw_write_tensor(GgufWriterObject *self, PyObject *arg) {
    if (gw_check(self) < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    tlm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = tlm_gguf_writer_write_tensor(self->w, view.buf, (uint64_t)view.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *gw_commit(GgufWriterObject *self, PyObject *noargs) {
    (void)noargs;
    if (gw_check(self) < 0) return NULL;
    tlm_gguf_writer *w = self->w;
    self->w = NULL;
    tlm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = tlm_gguf_writer_commit(w);
    Py_END_ALLOW_THREADS
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *gw_abandon(GgufWriterObject *self, PyObject *noargs) {
    (void)noargs;
    tlm_gguf_writer_abandon(self->w);
    self->w = NULL;
    Py_RETURN_NONE;
}

static PyMethodDef gw_methods[] = {
    {"add_kv", (PyCFunction)gw_add_kv, METH_VARARGS,
     "add_kv(key, type, elem_type, value): value is a list of str for strings, else little-endian bytes."},
    {"add_tensor", (PyCFunction)gw_add_tensor, METH_VARARGS, "add_tensor(name, ne, ggml_type): a tensor info."},
    {"write_tensor", (PyCFunction)gw_write_tensor, METH_O,
     "write_tensor(buffer): the next tensor's data (the first call writes the header)."},
    {"commit", (PyCFunction)gw_commit, METH_NOARGS, "Finishes the file and renames it into place."},
    {"abandon", (PyCFunction)gw_abandon, METH_NOARGS, "Drops the temporary file; nothing appears at the path."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject GgufWriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tinylm._core.GGUFWriter",
    .tp_basicsize = sizeof(GgufWriterObject),
    .tp_dealloc = (destructor)gw_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "GGUFWriter(path, alignment=32): a GGUF v3 file written under a temporary name until commit().",
    .tp_methods = gw_methods,
    .tp_new = gw_new,
};

int tlm_py_init_gguf(PyObject *module) {
    if (PyType_Ready(&GgufFileType) < 0 || PyType_Ready(&GgufWriterType) < 0) return -1;
    if (PyModule_AddObjectRef(module, "GGUFFile", (PyObject *)&GgufFileType) < 0) return -1;
    return PyModule_AddObjectRef(module, "GGUFWriter", (PyObject *)&GgufWriterType);
}
