/* common.c: exceptions, buffer arguments and the View type. */
#include "py/common.h"

PyObject *TlmFormatError, *TlmUnsupportedError, *TlmNumericError;

PyObject *tlm_py_raise(tlm_status st) {
    const char *msg = tlm_last_error();
    PyObject *type;
    switch (st) {
    case TLM_EIO: type = PyExc_OSError; break;
    case TLM_EFORMAT: type = TlmFormatError; break;
    case TLM_EUNSUPPORTED: type = TlmUnsupportedError; break;
    case TLM_ENOMEM: type = PyExc_MemoryError; break;
    case TLM_ENUMERIC: type = TlmNumericError; break;
    default: type = PyExc_ValueError; break;
    }
    /* Messages quote file content, which may not be UTF-8: undecodable
     * bytes become \xNN escapes instead of a UnicodeDecodeError. */
    if (!msg[0]) msg = "tinylm core error";
    PyObject *text = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "backslashreplace");
    if (text) {
        PyErr_SetObject(type, text);
        Py_DECREF(text);
    }
    return NULL;
}

int tlm_py_get_buffer(PyObject *obj, char kind, Py_ssize_t numel, int writable, const char *what, Py_buffer *view) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous%s array", what, writable ? " writable" : "");
        return -1;
    }
    const char *fmt = view->format ? view->format : "B";
    if (*fmt == '<' || *fmt == '=' || *fmt == '@') fmt++;
    int ok;
    switch (kind) {
    case 'f': ok = view->itemsize == 4 && *fmt == 'f'; break;
    case 'i': ok = view->itemsize == 4 && (*fmt == 'i' || *fmt == 'l'); break;
    default: ok = view->itemsize == 1; break;
    }
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s must hold %s (got format '%s')", what,
                     kind == 'f' ? "float32" : kind == 'i' ? "int32" : "bytes", view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    Py_ssize_t n = view->len / view->itemsize;
    if (numel >= 0 && n != numel) {
        PyErr_Format(PyExc_ValueError, "%s has %zd elements, expected %zd", what, n, numel);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

int tlm_py_get_buffer_or_none(PyObject *obj, char kind, Py_ssize_t numel, int writable, const char *what,
                              Py_buffer *view) {
    if (obj != Py_None) return tlm_py_get_buffer(obj, kind, numel, writable, what, view);
    memset(view, 0, sizeof *view);
    return 0;
}

typedef struct {
    PyObject_HEAD
    PyObject *owner;
    void *ptr;
    char format[4];
    Py_ssize_t itemsize;
    int ndim;
    Py_ssize_t shape[TLM_MAX_DIMS];
    Py_ssize_t strides[TLM_MAX_DIMS];
    int writable;
} ViewObject;

static void view_dealloc(ViewObject *self) {
    Py_XDECREF(self->owner);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int view_getbuffer(ViewObject *self, Py_buffer *view, int flags) {
    if ((flags & PyBUF_WRITABLE) && !self->writable) {
        PyErr_SetString(PyExc_BufferError, "tinylm view is read-only");
        return -1;
    }
    Py_ssize_t len = self->itemsize;
    for (int i = 0; i < self->ndim; i++) len *= self->shape[i];
    view->buf = self->ptr;
    view->obj = (PyObject *)self;
    Py_INCREF(self);
    view->len = len;
    view->readonly = !self->writable;
    view->itemsize = self->itemsize;
    view->format = (flags & PyBUF_FORMAT) ? self->format : NULL;
    view->ndim = self->ndim;
    view->shape = (flags & PyBUF_ND) ? self->shape : NULL;
    view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? self->strides : NULL;
    view->suboffsets = NULL;
    view->internal = NULL;
    return 0;
}

static PyBufferProcs view_as_buffer = {(getbufferproc)view_getbuffer, NULL};

static PyTypeObject ViewType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tinylm._core.View",
    .tp_basicsize = sizeof(ViewObject),
    .tp_dealloc = (destructor)view_dealloc,
    .tp_as_buffer = &view_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Memory owned by a tinylm core object, exposed through the buffer protocol.",
};

PyObject *tlm_py_view(PyObject *owner, void *ptr, const char *format, Py_ssize_t itemsize,
                      int ndim, const int64_t *shape, int writable) {
    if (ndim < 0 || ndim > TLM_MAX_DIMS) {
        PyErr_SetString(PyExc_ValueError, "too many dimensions for a view");
        return NULL;
    }
    ViewObject *v = PyObject_New(ViewObject, &ViewType);
    if (!v) return NULL;
    Py_INCREF(owner);
    v->owner = owner;
    v->ptr = ptr;
    snprintf(v->format, sizeof v->format, "%s", format);
    v->itemsize = itemsize;
    v->ndim = ndim;
    v->writable = writable;
    Py_ssize_t stride = itemsize;
    for (int i = ndim - 1; i >= 0; i--) {
        v->shape[i] = (Py_ssize_t)shape[i];
        v->strides[i] = stride;
        stride *= v->shape[i];
    }
    return (PyObject *)v;
}

int tlm_py_init_common(PyObject *module) {
    if (PyType_Ready(&ViewType) < 0) return -1;
    TlmFormatError = PyErr_NewExceptionWithDoc("tinylm._core.FormatError",
        "A file's content is malformed (the message names the file and the field).", PyExc_ValueError, NULL);
    TlmUnsupportedError = PyErr_NewExceptionWithDoc("tinylm._core.UnsupportedError",
        "Well-formed input that asks for something tinylm does not implement.", PyExc_ValueError, NULL);
    TlmNumericError = PyErr_NewExceptionWithDoc("tinylm._core.NumericError",
        "A NaN or infinite value where a finite one is required.", PyExc_ArithmeticError, NULL);
    if (!TlmFormatError || !TlmUnsupportedError || !TlmNumericError) return -1;
    if (PyModule_AddObjectRef(module, "FormatError", TlmFormatError) < 0 ||
        PyModule_AddObjectRef(module, "UnsupportedError", TlmUnsupportedError) < 0 ||
        PyModule_AddObjectRef(module, "NumericError", TlmNumericError) < 0 ||
        PyModule_AddObjectRef(module, "View", (PyObject *)&ViewType) < 0)
        return -1;
    return 0;
}

int tlm_py_get_i64(PyObject *obj, Py_ssize_t numel, const char *what, Py_buffer *view) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous array", what);
        return -1;
    }
    const char *fmt = view->format ? view->format : "B";
    if (*fmt == '<' || *fmt == '=' || *fmt == '@') fmt++;
    if (view->itemsize != 8 || (*fmt != 'q' && *fmt != 'l')) {
        PyErr_Format(PyExc_TypeError, "%s must hold int64 (got format '%s')", what, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    if (numel >= 0 && view->len / 8 != numel) {
        PyErr_Format(PyExc_ValueError, "%s has %zd elements, expected %zd", what, view->len / 8, numel);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyObject *tlm_py_i64_copy(const int64_t *src, int64_t n) {
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)src, (Py_ssize_t)(n * 8));
    if (!bytes) return NULL;
    int64_t shape[1] = {n};
    PyObject *view = tlm_py_view(bytes, PyBytes_AS_STRING(bytes), "q", 8, 1, shape, 0);
    Py_DECREF(bytes);
    return view;
}
