/* py_distill.c: the knowledge-distillation kernels (objectives/objectives.h)
 * for tinylm.distill: kd_rows, kd_topk_rows, kd_topk on C-contiguous numpy
 * arrays the caller allocates. Argument checks, scratch and the GIL only;
 * the math is in csrc/objectives. Messages name tinylm.distill.kd_loss's
 * arguments, the only caller. */
#include "py/common.h"

#include "objectives/objectives.h"

#include <math.h>

/* A kd descriptor tuple (loss, beta, temperature, top_k, tail) in range;
 * -1 with ValueError naming the argument. */
static int desc_from_tuple(PyObject *o, int64_t V, tlm_kd_desc *kd) {
    int loss, tail;
    long long top_k;
    if (!PyArg_ParseTuple(o, "iffLp", &loss, &kd->beta, &kd->temperature, &top_k, &tail)) return -1;
    kd->loss = (tlm_kd_loss)loss, kd->top_k = top_k, kd->tail = tail;
    if (loss != TLM_KD_FORWARD_KL && loss != TLM_KD_REVERSE_KL && loss != TLM_KD_JSD)
        PyErr_Format(PyExc_ValueError, "loss must be TLM_KD_FORWARD_KL, _REVERSE_KL or _JSD (0, 1, 2), got %d", loss);
    else if (!(kd->beta >= 0.0f && kd->beta <= 1.0f))
        PyErr_Format(PyExc_ValueError, "beta must be in [0, 1], got %g", (double)kd->beta);
    else if (!(kd->temperature > 0.0f && isfinite(kd->temperature)))
        PyErr_Format(PyExc_ValueError, "temperature must be a finite number > 0, got %g", (double)kd->temperature);
    else if (top_k < 0 || top_k > V)
        PyErr_Format(PyExc_ValueError, "top_k must be in [1, V] (V=%lld), got %lld", (long long)V, top_k);
    else
        return 0;
    return -1;
}

/* The float32 arrays s [N*V] and ds [N*V] (None: loss only; may be s). */
static int student_buffers(PyObject *s_o, PyObject *ds_o, int64_t N, int64_t V, Py_buffer *s, Py_buffer *ds) {
    if (tlm_py_get_buffer(s_o, 'f', N * V, 0, "student_logits", s) < 0) return -1;
    if (tlm_py_get_buffer_or_none(ds_o, 'f', N * V, 1, "grad", ds) < 0) {
        PyBuffer_Release(s);
        return -1;
    }
    return 0;
}

/* nthreads * tlm_kd_scratch_floats(k) floats, or NULL with MemoryError. */
static float *kd_scratch(int64_t k) {
    float *p = PyMem_Malloc((size_t)(tlm_get_num_threads() * tlm_kd_scratch_floats(k)) * sizeof(float));
    if (!p) PyErr_NoMemory();
    return p;
}

/* kd_rows((loss, beta, T, top_k, tail), s, t, N, V, ds, grad_scale) -> summed divergence */
static PyObject *py_kd_rows(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *desc_o, *s_o, *t_o, *ds_o;
    long long N, V;
    float grad_scale;
    if (!PyArg_ParseTuple(args, "O!OOLLOf", &PyTuple_Type, &desc_o, &s_o, &t_o, &N, &V, &ds_o, &grad_scale))
        return NULL;
    tlm_kd_desc kd;
    if (N < 0 || V <= 0) return PyErr_Format(PyExc_ValueError, "need N >= 0 and V > 0, got N=%lld V=%lld", N, V);
    if (desc_from_tuple(desc_o, V, &kd) < 0) return NULL;
    Py_buffer s, t, ds;
    if (student_buffers(s_o, ds_o, N, V, &s, &ds) < 0) return NULL;
    PyObject *result = NULL;
    float *scratch = NULL;
    if (tlm_py_get_buffer(t_o, 'f', N * V, 0, "teacher_logits", &t) < 0) goto done;
    if ((scratch = kd_scratch(kd.top_k))) {
        double loss;
        Py_BEGIN_ALLOW_THREADS
        loss = tlm_kd_rows(&kd, s.buf, t.buf, N, V, ds.buf, grad_scale, scratch);
        Py_END_ALLOW_THREADS
        result = PyFloat_FromDouble(loss);
    }
    PyBuffer_Release(&t);
done:
    PyMem_Free(scratch);
    PyBuffer_Release(&s);
    PyBuffer_Release(&ds);
    return result;
}

/* Every id of a row of a stored top-k within [0, V). */
static int ids_in_range(const Py_buffer *ids, int64_t V) {
    const int32_t *v = ids->buf;
    for (Py_ssize_t i = 0; i < ids->len / 4; i++)
        if (v[i] < 0 || v[i] >= V) {
            PyErr_Format(PyExc_ValueError, "teacher_topk ids must be in [0, V) (V=%lld), got %d", (long long)V,
                         (int)v[i]);
            return -1;
        }
    return 0;
}

/* kd_topk_rows((loss, beta, T, top_k, tail), s, ids, logp, tail_logp, logp_temperature, N, V, k, ds, grad_scale) */
static PyObject *py_kd_topk_rows(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *desc_o, *s_o, *ids_o, *logp_o, *tail_o, *ds_o;
    long long N, V, k;
    float logp_temperature, grad_scale;
    if (!PyArg_ParseTuple(args, "O!OOOOfLLLOf", &PyTuple_Type, &desc_o, &s_o, &ids_o, &logp_o, &tail_o,
                          &logp_temperature, &N, &V, &k, &ds_o, &grad_scale))
        return NULL;
    tlm_kd_desc kd;
    if (N < 0 || V <= 0) return PyErr_Format(PyExc_ValueError, "need N >= 0 and V > 0, got N=%lld V=%lld", N, V);
    if (k < 1 || k > V)
        return PyErr_Format(PyExc_ValueError, "teacher_topk must hold 1 to V (V=%lld) ids per row, got %lld", V, k);
    if (!(logp_temperature > 0.0f && isfinite(logp_temperature)))
        return PyErr_Format(PyExc_ValueError, "teacher_temperature must be a finite number > 0, got %g",
                            (double)logp_temperature);
    if (desc_from_tuple(desc_o, V, &kd) < 0) return NULL;
    Py_buffer s, ds, ids = {0}, logp = {0}, tail = {0};
    if (student_buffers(s_o, ds_o, N, V, &s, &ds) < 0) return NULL;
    PyObject *result = NULL;
    float *scratch = NULL;
    if (tlm_py_get_buffer(ids_o, 'i', N * k, 0, "teacher_topk ids", &ids) < 0 || ids_in_range(&ids, V) < 0 ||
        tlm_py_get_buffer(logp_o, 'f', N * k, 0, "teacher_topk logprobs", &logp) < 0 ||
        tlm_py_get_buffer_or_none(tail_o, 'f', N, 0, "teacher_topk tail_logprobs", &tail) < 0 ||
        !(scratch = kd_scratch(k)))
        goto done;
    double loss;
    Py_BEGIN_ALLOW_THREADS
    loss = tlm_kd_topk_rows(&kd, s.buf, ids.buf, logp.buf, tail.buf, logp_temperature, N, V, k, ds.buf, grad_scale,
                            scratch);
    Py_END_ALLOW_THREADS
    result = PyFloat_FromDouble(loss);
done:
    PyMem_Free(scratch);
    PyBuffer_Release(&s);
    PyBuffer_Release(&ds);
    PyBuffer_Release(&ids);
    PyBuffer_Release(&logp);
    PyBuffer_Release(&tail);
    return result;
}

/* kd_topk(t, N, V, k, temperature, ids, logp, tail_logp) */
static PyObject *py_kd_topk(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *t_o, *ids_o, *logp_o, *tail_o;
    long long N, V, k;
    float temperature;
    if (!PyArg_ParseTuple(args, "OLLLfOOO", &t_o, &N, &V, &k, &temperature, &ids_o, &logp_o, &tail_o)) return NULL;
    if (N < 0 || V <= 0) return PyErr_Format(PyExc_ValueError, "need N >= 0 and V > 0, got N=%lld V=%lld", N, V);
    if (k < 1 || k > V) return PyErr_Format(PyExc_ValueError, "k must be in [1, V] (V=%lld), got %lld", V, k);
    if (!(temperature > 0.0f && isfinite(temperature)))
        return PyErr_Format(PyExc_ValueError, "temperature must be a finite number > 0, got %g", (double)temperature);
    Py_buffer t, ids = {0}, logp = {0}, tail = {0};
    if (tlm_py_get_buffer(t_o, 'f', N * V, 0, "teacher_logits", &t) < 0) return NULL;
    PyObject *result = NULL;
    if (tlm_py_get_buffer(ids_o, 'i', N * k, 1, "ids", &ids) < 0 ||
        tlm_py_get_buffer(logp_o, 'f', N * k, 1, "logprobs", &logp) < 0 ||
        tlm_py_get_buffer_or_none(tail_o, 'f', N, 1, "tail_logprobs", &tail) < 0)
        goto done;
    Py_BEGIN_ALLOW_THREADS
    tlm_kd_topk(t.buf, N, V, k, temperature, ids.buf, logp.buf, tail.buf);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&t);
    PyBuffer_Release(&ids);
    PyBuffer_Release(&logp);
    PyBuffer_Release(&tail);
    return result;
}

static PyMethodDef functions[] = {
    {"kd_rows", py_kd_rows, METH_VARARGS,
     "kd_rows((loss, beta, temperature, top_k, tail), s, t, N, V, ds, grad_scale) -> summed divergence "
     "(tlm_kd_rows; ds float32[N*V] or None, may be s)"},
    {"kd_topk_rows", py_kd_topk_rows, METH_VARARGS,
     "kd_topk_rows((loss, beta, temperature, top_k, tail), s, ids, logp, tail_logp, logp_temperature, N, V, k, ds, "
     "grad_scale) -> summed divergence (tlm_kd_topk_rows; tail_logp and ds may be None)"},
    {"kd_topk", py_kd_topk, METH_VARARGS,
     "kd_topk(t, N, V, k, temperature, ids int32[N*k], logp float32[N*k], tail_logp float32[N] or None) "
     "(tlm_kd_topk)"},
    {NULL, NULL, 0, NULL},
};

int tlm_py_init_distill(PyObject *module) {
    if (PyModule_AddIntConstant(module, "KD_FORWARD_KL", TLM_KD_FORWARD_KL) < 0 ||
        PyModule_AddIntConstant(module, "KD_REVERSE_KL", TLM_KD_REVERSE_KL) < 0 ||
        PyModule_AddIntConstant(module, "KD_JSD", TLM_KD_JSD) < 0)
        return -1;
    return PyModule_AddFunctions(module, functions);
}
