/* py_quant.c: the quantization kernels, for tests that compare them with
 * bitsandbytes. Inputs are float32 buffers; outputs are bytes/float32
 * objects numpy can view (np.frombuffer). */
#include "py/common.h"

#include <string.h>

static PyObject *float_bytes(const float *x, int64_t n) {
    return PyBytes_FromStringAndSize((const char *)x, (Py_ssize_t)(n * (int64_t)sizeof(float)));
}

/* nf4_quantize(x) -> (packed: bytes [(n+1)/2], absmax: bytes of float32 [ceil(n/64)]) */
static PyObject *py_nf4_quantize(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer x;
    if (tlm_py_get_buffer(arg, 'f', -1, 0, "x", &x) < 0) return NULL;
    int64_t n = x.len / 4, blocks = (n + 63) / 64;
    PyObject *packed = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)((n + 1) / 2));
    PyObject *absmax = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(blocks * 4));
    if (packed && absmax)
        tlm_nf4_quantize(x.buf, n, (uint8_t *)PyBytes_AS_STRING(packed), (float *)PyBytes_AS_STRING(absmax));
    PyBuffer_Release(&x);
    if (!packed || !absmax) { Py_XDECREF(packed); Py_XDECREF(absmax); return NULL; }
    return Py_BuildValue("(NN)", packed, absmax);
}

/* nf4_absmax_offset(absmax) -> float */
static PyObject *py_nf4_absmax_offset(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer a;
    if (tlm_py_get_buffer(arg, 'f', -1, 0, "absmax", &a) < 0) return NULL;
    float off = a.len ? tlm_nf4_absmax_offset(a.buf, a.len / 4) : 0.0f;
    PyBuffer_Release(&a);
    return PyFloat_FromDouble((double)off);
}

/* nf4_double_quantize(absmax, offset) -> (codes: bytes [n], scales: bytes of float32 [ceil(n/256)]) */
static PyObject *py_nf4_double_quantize(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *a_o;
    float offset;
    if (!PyArg_ParseTuple(args, "Of", &a_o, &offset)) return NULL;
    Py_buffer a;
    if (tlm_py_get_buffer(a_o, 'f', -1, 0, "absmax", &a) < 0) return NULL;
    int64_t n = a.len / 4;
    PyObject *codes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
    PyObject *scales = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(((n + 255) / 256) * 4));
    float *scratch = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(float));
    if (codes && scales && scratch)
        tlm_nf4_double_quantize(a.buf, n, offset, (uint8_t *)PyBytes_AS_STRING(codes),
                                (float *)PyBytes_AS_STRING(scales), scratch);
    PyMem_Free(scratch);
    PyBuffer_Release(&a);
    if (!codes || !scales || !scratch) {
        Py_XDECREF(codes);
        Py_XDECREF(scales);
        return scratch ? NULL : PyErr_NoMemory();
    }
    return Py_BuildValue("(NN)", codes, scales);
}

static PyObject *py_dynamic_map(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    return float_bytes(tlm_dynamic_map(), 256);
}

/* int8_rows_quantize(x [rows, cols] float32, cols) -> (q: bytes of int8, absmax: bytes of float32 [rows]) */
static PyObject *py_int8_rows_quantize(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x_o;
    long long cols;
    if (!PyArg_ParseTuple(args, "OL", &x_o, &cols)) return NULL;
    Py_buffer x;
    if (tlm_py_get_buffer(x_o, 'f', -1, 0, "x", &x) < 0) return NULL;
    int64_t n = x.len / 4;
    if (cols <= 0 || n % cols) {
        PyBuffer_Release(&x);
        return PyErr_Format(PyExc_ValueError, "x has %lld values, not a multiple of cols=%lld", (long long)n, cols);
    }
    PyObject *q = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
    PyObject *absmax = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n / cols * 4));
    if (q && absmax)
        tlm_int8_rows_quantize(x.buf, n / cols, cols, (int8_t *)PyBytes_AS_STRING(q),
                               (float *)PyBytes_AS_STRING(absmax));
    PyBuffer_Release(&x);
    if (!q || !absmax) { Py_XDECREF(q); Py_XDECREF(absmax); return NULL; }
    return Py_BuildValue("(NN)", q, absmax);
}

static PyMethodDef quant_methods[] = {
    {"nf4_quantize", py_nf4_quantize, METH_O, "nf4_quantize(x) -> (packed, absmax) as bytes"},
    {"nf4_absmax_offset", py_nf4_absmax_offset, METH_O, "Mean of the NF4 block absmax (double-quant offset)."},
    {"nf4_double_quantize", py_nf4_double_quantize, METH_VARARGS,
     "nf4_double_quantize(absmax, offset) -> (codes, scales) as bytes"},
    {"dynamic_map", py_dynamic_map, METH_NOARGS, "bitsandbytes' signed dynamic map as float32 bytes."},
    {"int8_rows_quantize", py_int8_rows_quantize, METH_VARARGS, "int8_rows_quantize(x, cols) -> (q, absmax)"},
    {NULL, NULL, 0, NULL},
};

int tlm_py_init_quant(PyObject *module) { return PyModule_AddFunctions(module, quant_methods); }
