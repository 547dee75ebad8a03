/* py_ggml.c: ggml's block types (tlm.h, "ggml block types") for Python:
 * the type table, and the codecs from and to numpy arrays. */
#include "py/common.h"

/* A new 1-D numpy array of n elements of dtype (numpy.empty; the core's
 * binding has no numpy headers), or NULL with an exception set. */
static PyObject *numpy_empty(int64_t n, const char *dtype) {
    PyObject *np = PyImport_ImportModule("numpy");
    if (!np) return NULL;
    PyObject *arr = PyObject_CallMethod(np, "empty", "(L)s", (long long)n, dtype);
    Py_DECREF(np);
    return arr;
}

/* ggml_types() -> [(id, name, block_elems, block_bytes, can_dequantize, can_quantize)] */
static PyObject *py_ggml_types(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    PyObject *list = PyList_New(0);
    if (!list) return NULL;
    for (int t = 0; t < TLM_GGML_TYPE_COUNT; t++) {
        const char *name = tlm_ggml_type_name(t);
        if (!name) continue;
        PyObject *row = Py_BuildValue("(isLLNN)", t, name, (long long)tlm_ggml_block_elems(t),
                                      (long long)tlm_ggml_block_bytes(t), PyBool_FromLong(tlm_ggml_can_dequantize(t)),
                                      PyBool_FromLong(tlm_ggml_can_quantize(t)));
        if (!row || PyList_Append(list, row) < 0) {
            Py_XDECREF(row);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(row);
    }
    return list;
}

/* ggml_dequantize(type, data, n) -> float32 [n]; data: bytes-like, exactly n values of type */
static PyObject *py_ggml_dequantize(PyObject *self, PyObject *args) {
    (void)self;
    int type;
    PyObject *data_o;
    long long n;
    if (!PyArg_ParseTuple(args, "iOL", &type, &data_o, &n)) return NULL;
    int64_t bytes;
    tlm_status st = tlm_ggml_row_bytes(type, n, &bytes);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_buffer data, view;
    if (tlm_py_get_buffer(data_o, 'B', -1, 0, "data", &data) < 0) return NULL;
    if (data.len != bytes) {
        PyErr_Format(PyExc_ValueError, "data has %zd bytes; %lld values of ggml type %s take %lld", data.len, n,
                     tlm_ggml_type_name(type), (long long)bytes);
        PyBuffer_Release(&data);
        return NULL;
    }
    PyObject *out = numpy_empty(n, "float32");
    if (!out || tlm_py_get_buffer(out, 'f', n, 1, "output", &view) < 0) {
        Py_XDECREF(out);
        PyBuffer_Release(&data);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    st = tlm_ggml_dequantize(type, data.buf, n, view.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    PyBuffer_Release(&data);
    if (st != TLM_OK) {
        Py_DECREF(out);
        return tlm_py_raise(st);
    }
    return out;
}

/* ggml_quantize(type, x) -> uint8 [rows * row bytes]; x: C-contiguous float32 [rows, n_per_row] */
static PyObject *py_ggml_quantize(PyObject *self, PyObject *args) {
    (void)self;
    int type;
    PyObject *x_o;
    if (!PyArg_ParseTuple(args, "iO", &type, &x_o)) return NULL;
    Py_buffer x, view;
    if (tlm_py_get_buffer(x_o, 'f', -1, 0, "x", &x) < 0) return NULL;
    if (x.ndim != 2) {
        PyErr_Format(PyExc_ValueError, "x must be 2-D [rows, n_per_row], got %d dimensions", x.ndim);
        PyBuffer_Release(&x);
        return NULL;
    }
    const int64_t rows = x.shape[0], n_per_row = x.shape[1];
    int64_t row_bytes;
    tlm_status st = tlm_ggml_row_bytes(type, n_per_row, &row_bytes);
    if (st != TLM_OK) {
        PyBuffer_Release(&x);
        return tlm_py_raise(st);
    }
    PyObject *out = numpy_empty(rows * row_bytes, "uint8");
    if (!out || tlm_py_get_buffer(out, 'B', rows * row_bytes, 1, "output", &view) < 0) {
        Py_XDECREF(out);
        PyBuffer_Release(&x);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    st = tlm_ggml_quantize(type, x.buf, rows, n_per_row, view.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    PyBuffer_Release(&x);
    if (st != TLM_OK) {
        Py_DECREF(out);
        return tlm_py_raise(st);
    }
    return out;
}

static PyMethodDef ggml_methods[] = {
    {"ggml_types", py_ggml_types, METH_NOARGS,
     "ggml_types() -> [(id, name, block_elems, block_bytes, can_dequantize, can_quantize)] for every ggml type id."},
    {"ggml_dequantize", py_ggml_dequantize, METH_VARARGS,
     "ggml_dequantize(type, data, n) -> float32 [n]: n values of ggml type `type` decoded from the bytes `data`."},
    {"ggml_quantize", py_ggml_quantize, METH_VARARGS,
     "ggml_quantize(type, x) -> uint8 [rows * row bytes]: float32 x [rows, n_per_row] encoded as llama.cpp's\n"
     "reference quantizer (no importance matrix) encodes it."},
    {NULL, NULL, 0, NULL},
};

int tlm_py_init_ggml(PyObject *module) { return PyModule_AddFunctions(module, ggml_methods); }
