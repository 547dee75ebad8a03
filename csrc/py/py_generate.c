/* py_generate.c: tinylm._core.Generator (a KV-cache session on a Model) and
 * logprobs(), the evaluation scorer. Argument checks and GIL handling only. */
#include "py/common.h"

typedef struct {
    PyObject_HEAD
    PyObject *model_obj; /* the _core.Model the session borrows (kept alive) */
    tlm_model *model;
    tlm_gen *gen;
    int64_t B, V;
} GeneratorObject;

static int gen_init(GeneratorObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"model", "batch", "max_len", NULL};
    PyObject *model_obj;
    long long B, max_len;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OLL", kwlist, &model_obj, &B, &max_len)) return -1;
    tlm_model *m = tlm_py_model_acquire(model_obj);
    if (!m) return -1;
    tlm_gen *gen = NULL;
    tlm_status st = tlm_gen_create(m, B, max_len, &gen);
    tlm_py_model_release(model_obj);
    if (st != TLM_OK) { tlm_py_raise(st); return -1; }
    tlm_gen_free(self->gen);
    Py_XSETREF(self->model_obj, Py_NewRef(model_obj));
    self->model = m, self->gen = gen, self->B = B, self->V = tlm_model_config(m)->vocab_size;
    return 0;
}

static void gen_dealloc(GeneratorObject *self) {
    tlm_gen_free(self->gen);
    Py_XDECREF(self->model_obj);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define CHECK_INIT(self)                                                                   \
    do {                                                                                   \
        if (!(self)->gen) {                                                                \
            PyErr_SetString(PyExc_RuntimeError, "the generator was not initialised");      \
            return NULL;                                                                   \
        }                                                                                  \
    } while (0)

static PyObject *gen_begin(GeneratorObject *self, PyObject *arg) {
    CHECK_INIT(self);
    Py_buffer pad = {0};
    if (tlm_py_get_buffer(arg, 'i', self->B, 0, "n_pad", &pad) < 0) return NULL;
    tlm_status st = tlm_gen_begin(self->gen, pad.buf);
    PyBuffer_Release(&pad);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *gen_feed(GeneratorObject *self, PyObject *args) {
    PyObject *ids_o, *out_o;
    long long S;
    if (!PyArg_ParseTuple(args, "OLO", &ids_o, &S, &out_o)) return NULL;
    CHECK_INIT(self);
    if (S <= 0) return PyErr_Format(PyExc_ValueError, "feed needs S > 0, got %lld", S);
    Py_buffer ids = {0}, out = {0};
    if (tlm_py_get_buffer(ids_o, 'i', self->B * S, 0, "ids", &ids) < 0) return NULL;
    if (out_o != Py_None && tlm_py_get_buffer(out_o, 'f', self->B * self->V, 1, "logits", &out) < 0) {
        PyBuffer_Release(&ids);
        return NULL;
    }
    PyObject *result = NULL;
    if (tlm_py_model_acquire(self->model_obj)) {
        tlm_status st;
        Py_BEGIN_ALLOW_THREADS
        st = tlm_gen_feed(self->gen, ids.buf, S, out.obj ? out.buf : NULL);
        Py_END_ALLOW_THREADS
        tlm_py_model_release(self->model_obj);
        result = st == TLM_OK ? Py_NewRef(Py_None) : tlm_py_raise(st);
    }
    PyBuffer_Release(&ids);
    if (out.obj) PyBuffer_Release(&out);
    return result;
}

static PyObject *gen_length(GeneratorObject *self, PyObject *noargs) {
    (void)noargs;
    CHECK_INIT(self);
    return PyLong_FromLongLong(tlm_gen_length(self->gen));
}

static PyMethodDef gen_methods[] = {
    {"begin", (PyCFunction)gen_begin, METH_O, "begin(n_pad int32[B]): empty the cache; left padding per row"},
    {"feed", (PyCFunction)gen_feed, METH_VARARGS,
     "feed(ids int32[B*S], S, logits float32[B*V] or None): append S positions per row"},
    {"length", (PyCFunction)gen_length, METH_NOARGS, "Positions fed since begin()."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject GeneratorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tinylm._core.Generator",
    .tp_basicsize = sizeof(GeneratorObject),
    .tp_dealloc = (destructor)gen_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Generator(model, batch, max_len): a KV-cache decoding session (see tinylm.generate).",
    .tp_methods = gen_methods,
    .tp_init = (initproc)gen_init,
    .tp_new = PyType_GenericNew,
};

/* logprobs(model, ids, mask, pos, targets, B, T, out): tlm_model_logprobs. */
static PyObject *py_logprobs(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *model_obj, *ids_o, *mask_o, *pos_o, *targets_o, *out_o;
    long long B, T;
    if (!PyArg_ParseTuple(args, "OOOOOLLO", &model_obj, &ids_o, &mask_o, &pos_o, &targets_o, &B, &T, &out_o))
        return NULL;
    Py_buffer ids = {0}, mask = {0}, pos = {0}, targets = {0}, out = {0};
    PyObject *result = NULL;
    if (tlm_py_get_buffer(ids_o, 'i', B * T, 0, "input_ids", &ids) < 0) return NULL;
    if (mask_o != Py_None && tlm_py_get_buffer(mask_o, 'i', B * T, 0, "attention_mask", &mask) < 0) goto done;
    if (pos_o != Py_None && tlm_py_get_buffer(pos_o, 'i', B * T, 0, "position_ids", &pos) < 0) goto done;
    if (tlm_py_get_buffer(targets_o, 'i', B * T, 0, "targets", &targets) < 0) goto done;
    if (tlm_py_get_buffer(out_o, 'f', B * T, 1, "out", &out) < 0) goto done;
    tlm_model *m = tlm_py_model_acquire(model_obj);
    if (!m) goto done;
    tlm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = tlm_model_logprobs(m, ids.buf, mask.obj ? mask.buf : NULL, pos.obj ? pos.buf : NULL, targets.buf, B, T,
                            out.buf);
    Py_END_ALLOW_THREADS
    tlm_py_model_release(model_obj);
    result = st == TLM_OK ? Py_NewRef(Py_None) : tlm_py_raise(st);
done:
    PyBuffer_Release(&ids);
    if (mask.obj) PyBuffer_Release(&mask);
    if (pos.obj) PyBuffer_Release(&pos);
    if (targets.obj) PyBuffer_Release(&targets);
    if (out.obj) PyBuffer_Release(&out);
    return result;
}

static PyMethodDef functions[] = {
    {"logprobs", py_logprobs, METH_VARARGS,
     "logprobs(model, ids, mask, pos, targets, B, T, out float32[B*T]): log-likelihood of each target"},
    {NULL, NULL, 0, NULL},
};

int tlm_py_init_generate(PyObject *module) {
    if (PyType_Ready(&GeneratorType) < 0) return -1;
    if (PyModule_AddObjectRef(module, "Generator", (PyObject *)&GeneratorType) < 0) return -1;
    return PyModule_AddFunctions(module, functions);
}
