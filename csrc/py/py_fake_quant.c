/* py_fake_quant.c: the fake quantization kernels of tlm.h for
 * tinylm.quant (numpy in, caller-allocated numpy out). A scheme crosses as
 * the tuple (kind, ggml_type, group_size, bits, act_int8) of tlm_fake_quant;
 * the weight functions ignore act_int8. */
#include "py/common.h"

int tlm_py_fake_quant_from_tuple(PyObject *o, tlm_fake_quant *fq) {
    int kind, act;
    long long group;
    memset(fq, 0, sizeof *fq);
    if (!PyTuple_Check(o)) {
        PyErr_SetString(PyExc_TypeError, "a fake quantization scheme is a tuple (kind, ggml_type, group_size, bits, "
                        "act_int8)");
        return -1;
    }
    if (!PyArg_ParseTuple(o, "iiLip", &kind, &fq->ggml_type, &group, &fq->bits, &act)) return -1;
    fq->kind = (tlm_fq_kind)kind;
    fq->group_size = group;
    fq->act_int8 = act;
    return 0;
}

/* The 2-D float32 input w and its same-sized outputs. */
static int get_matrix(PyObject *o, const char *what, Py_buffer *view, int64_t *rows, int64_t *cols) {
    if (tlm_py_get_buffer(o, 'f', -1, 0, what, view) < 0) return -1;
    if (view->ndim != 2) {
        PyErr_Format(PyExc_ValueError, "%s must be 2-D [rows, cols], got %d dimensions", what, view->ndim);
        PyBuffer_Release(view);
        return -1;
    }
    *rows = view->shape[0];
    *cols = view->shape[1];
    return 0;
}

static void release_all(Py_buffer *views, int n) {
    for (int i = 0; i < n; i++) PyBuffer_Release(&views[i]);
}

/* fake_quantize(scheme, w, out, clip): out = FQ(w), clip = where the gradient stops */
static PyObject *py_fake_quantize(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *scheme_o, *w_o, *out_o, *clip_o;
    if (!PyArg_ParseTuple(args, "OOOO", &scheme_o, &w_o, &out_o, &clip_o)) return NULL;
    tlm_fake_quant fq;
    if (tlm_py_fake_quant_from_tuple(scheme_o, &fq) < 0) return NULL;
    Py_buffer v[3] = {{0}};
    int64_t rows, cols;
    if (get_matrix(w_o, "w", &v[0], &rows, &cols) < 0) return NULL;
    if (tlm_py_get_buffer(out_o, 'f', rows * cols, 1, "out", &v[1]) < 0 ||
        tlm_py_get_buffer(clip_o, 'B', rows * cols, 1, "clip", &v[2]) < 0) {
        release_all(v, 3);
        return NULL;
    }
    tlm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = tlm_fake_quantize(&fq, v[0].buf, rows, cols, v[1].buf, v[2].buf);
    Py_END_ALLOW_THREADS
    release_all(v, 3);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

/* fake_quantize_backward(scheme, w, clip, gy, out): out = d sum(gy * FQ(w)) / dw */
static PyObject *py_fake_quantize_backward(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *scheme_o, *w_o, *clip_o, *gy_o, *out_o;
    if (!PyArg_ParseTuple(args, "OOOOO", &scheme_o, &w_o, &clip_o, &gy_o, &out_o)) return NULL;
    tlm_fake_quant fq;
    if (tlm_py_fake_quant_from_tuple(scheme_o, &fq) < 0) return NULL;
    Py_buffer v[4] = {{0}};
    int64_t rows, cols;
    if (get_matrix(w_o, "w", &v[0], &rows, &cols) < 0) return NULL;
    if (tlm_py_get_buffer(clip_o, 'B', rows * cols, 0, "clip", &v[1]) < 0 ||
        tlm_py_get_buffer(gy_o, 'f', rows * cols, 0, "grad", &v[2]) < 0 ||
        tlm_py_get_buffer(out_o, 'f', rows * cols, 1, "out", &v[3]) < 0) {
        release_all(v, 4);
        return NULL;
    }
    tlm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = tlm_fake_quantize_backward(&fq, v[0].buf, v[1].buf, v[2].buf, rows, cols, v[3].buf);
    Py_END_ALLOW_THREADS
    release_all(v, 4);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

/* fake_quantize_act(x, out, clip): int8 per-token asymmetric, x [N, in] */
static PyObject *py_fake_quantize_act(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x_o, *out_o, *clip_o;
    if (!PyArg_ParseTuple(args, "OOO", &x_o, &out_o, &clip_o)) return NULL;
    Py_buffer v[3] = {{0}};
    int64_t n, in;
    if (get_matrix(x_o, "x", &v[0], &n, &in) < 0) return NULL;
    if (tlm_py_get_buffer(out_o, 'f', n * in, 1, "out", &v[1]) < 0 ||
        tlm_py_get_buffer(clip_o, 'B', n * in, 1, "clip", &v[2]) < 0) {
        release_all(v, 3);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (in > 0) tlm_fq_act_forward(v[0].buf, n, in, v[1].buf, v[2].buf);
    Py_END_ALLOW_THREADS
    release_all(v, 3);
    Py_RETURN_NONE;
}

/* fake_quantize_act_backward(x, clip, gy, out): out = the gradient wrt x */
static PyObject *py_fake_quantize_act_backward(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x_o, *clip_o, *gy_o, *out_o;
    if (!PyArg_ParseTuple(args, "OOOO", &x_o, &clip_o, &gy_o, &out_o)) return NULL;
    Py_buffer v[4] = {{0}};
    int64_t n, in;
    if (get_matrix(x_o, "x", &v[0], &n, &in) < 0) return NULL;
    if (tlm_py_get_buffer(clip_o, 'B', n * in, 0, "clip", &v[1]) < 0 ||
        tlm_py_get_buffer(gy_o, 'f', n * in, 0, "grad", &v[2]) < 0 ||
        tlm_py_get_buffer(out_o, 'f', n * in, 1, "out", &v[3]) < 0) {
        release_all(v, 4);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (in > 0) tlm_fq_act_backward(v[0].buf, v[1].buf, v[2].buf, n, in, v[3].buf, 0.0f);
    Py_END_ALLOW_THREADS
    release_all(v, 4);
    Py_RETURN_NONE;
}

static PyMethodDef fake_quant_methods[] = {
    {"fake_quantize", py_fake_quantize, METH_VARARGS,
     "fake_quantize(scheme, w, out, clip): out = FQ(w) for float32 w [rows, cols]; clip (uint8) 1 where the\n"
     "gradient stops. scheme = (kind, ggml_type, group_size, bits, act_int8) as tlm_fake_quant."},
    {"fake_quantize_backward", py_fake_quantize_backward, METH_VARARGS,
     "fake_quantize_backward(scheme, w, clip, grad, out): out = d sum(grad * FQ(w)) / dw."},
    {"fake_quantize_act", py_fake_quantize_act, METH_VARARGS,
     "fake_quantize_act(x, out, clip): torchao's int8 per-token asymmetric fake quantization of x [N, in]."},
    {"fake_quantize_act_backward", py_fake_quantize_act_backward, METH_VARARGS,
     "fake_quantize_act_backward(x, clip, grad, out): its straight-through gradient."},
    {NULL, NULL, 0, NULL},
};

int tlm_py_init_fake_quant(PyObject *module) { return PyModule_AddFunctions(module, fake_quant_methods); }
