/* py_model.c: tinylm._core.Model, a thin handle on tlm_model.
 * Argument checks and GIL handling only; the math is in csrc/ops. */
#include "py/common.h"

#include <string.h>

typedef struct {
    PyObject_HEAD
    tlm_model *model;
    int busy; /* a call is running with the GIL released */
} ModelObject;

#define CHECK_IDLE(self)                                                                          \
    do {                                                                                          \
        if (!(self)->model) {                                                                     \
            PyErr_SetString(PyExc_RuntimeError, "the model was not initialised");                 \
            return NULL;                                                                          \
        }                                                                                         \
        if ((self)->busy) {                                                                       \
            PyErr_SetString(PyExc_RuntimeError, "the model is busy in another thread");           \
            return NULL;                                                                          \
        }                                                                                         \
    } while (0)

/* Model(**descriptor): the block descriptor tinylm/families/ builds. */
static int model_init(ModelObject *self, PyObject *args, PyObject *kwds) {
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "Model takes keyword arguments only (the model descriptor)");
        return -1;
    }
    tlm_config c;
    if (tlm_py_config_from_dict(kwds, &c) < 0) return -1;
    if (self->model) tlm_model_free(self->model), self->model = NULL;
    tlm_status st = tlm_model_create(&c, &self->model);
    if (st != TLM_OK) { tlm_py_raise(st); return -1; }
    return 0;
}

static void model_dealloc(ModelObject *self) {
    tlm_model_free(self->model);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int get_param(ModelObject *self, PyObject *arg, tlm_param *p) {
    if (!self->model) {
        PyErr_SetString(PyExc_RuntimeError, "the model was not initialised");
        return -1;
    }
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred()) return -1;
    tlm_status st = tlm_model_param(self->model, i, p);
    if (st != TLM_OK) { tlm_py_raise(st); return -1; }
    return 0;
}

static PyObject *model_params(ModelObject *self, PyObject *noargs) {
    (void)noargs;
    CHECK_IDLE(self);
    int64_t n = tlm_model_n_params(self->model);
    PyObject *list = PyList_New(n);
    if (!list) return NULL;
    for (int64_t i = 0; i < n; i++) {
        tlm_param p;
        tlm_model_param(self->model, i, &p);
        PyObject *shape = p.ndim == 2 ? Py_BuildValue("(LL)", p.shape[0], p.shape[1]) : Py_BuildValue("(L)", p.shape[0]);
        PyObject *item = shape ? Py_BuildValue("(sNOOOi)", p.name, shape, p.trainable ? Py_True : Py_False,
                                               p.decay ? Py_True : Py_False, p.quantized ? Py_True : Py_False,
                                               p.ggml_type)
                               : NULL;
        if (!item) { Py_DECREF(list); return NULL; }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *model_param(ModelObject *self, PyObject *arg) {
    tlm_param p;
    if (get_param(self, arg, &p) < 0) return NULL;
    if (p.quantized)
        return PyErr_Format(PyExc_TypeError, "%s is stored quantized: read it with get_weight()", p.name);
    return tlm_py_view((PyObject *)self, p.data, "f", 4, p.ndim, p.shape, 1);
}

/* set_weight(i, src) / get_weight(i, dst): f32 in and out, quantizing or
 * dequantizing parameters stored quantized. */
static PyObject *model_weight_io(ModelObject *self, PyObject *args, int set) {
    Py_ssize_t i;
    PyObject *buf_o;
    if (!PyArg_ParseTuple(args, "nO", &i, &buf_o)) return NULL;
    CHECK_IDLE(self);
    tlm_param p;
    tlm_status st = tlm_model_param(self->model, i, &p);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_buffer buf;
    if (tlm_py_get_buffer(buf_o, 'f', (Py_ssize_t)p.numel, !set, p.name, &buf) < 0) return NULL;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    st = set ? tlm_model_set_weight(self->model, i, buf.buf) : tlm_model_get_weight(self->model, i, buf.buf);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    PyBuffer_Release(&buf);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *model_set_weight(ModelObject *self, PyObject *args) { return model_weight_io(self, args, 1); }

static PyObject *model_get_weight(ModelObject *self, PyObject *args) { return model_weight_io(self, args, 0); }

/* set_weight_blocks(i, ggml_type, buffer): a GGUF-stored weight's rows as blocks. */
static PyObject *model_set_weight_blocks(ModelObject *self, PyObject *args) {
    Py_ssize_t i;
    int type;
    Py_buffer buf;
    CHECK_IDLE(self);
    if (!PyArg_ParseTuple(args, "niy*", &i, &type, &buf)) return NULL;
    tlm_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    st = tlm_model_set_weight_blocks(self->model, i, type, buf.buf, (uint64_t)buf.len);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    PyBuffer_Release(&buf);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

/* weight_blocks(i) -> (ggml_type, bytes): a copy of a GGUF-stored weight's blocks. */
static PyObject *model_weight_blocks(ModelObject *self, PyObject *arg) {
    tlm_param p;
    if (get_param(self, arg, &p) < 0) return NULL;
    CHECK_IDLE(self);
    const void *blocks;
    uint64_t nbytes;
    tlm_status st = tlm_model_weight_blocks(self->model, PyLong_AsSsize_t(arg), &blocks, &nbytes);
    if (st != TLM_OK) return tlm_py_raise(st);
    return Py_BuildValue("(iy#)", p.ggml_type, (const char *)blocks, (Py_ssize_t)nbytes);
}

static PyObject *model_param_bytes(ModelObject *self, PyObject *arg) {
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred()) return NULL;
    CHECK_IDLE(self);
    return PyLong_FromSize_t(tlm_model_param_bytes(self->model, i));
}

static PyObject *model_grad(ModelObject *self, PyObject *arg) {
    tlm_param p;
    if (get_param(self, arg, &p) < 0) return NULL;
    if (!p.grad) Py_RETURN_NONE;
    return tlm_py_view((PyObject *)self, p.grad, "f", 4, p.ndim, p.shape, 1);
}

static PyObject *model_adam_state(ModelObject *self, PyObject *arg) {
    tlm_param p;
    if (get_param(self, arg, &p) < 0) return NULL;
    if (!p.adam_m) Py_RETURN_NONE;
    PyObject *m = tlm_py_view((PyObject *)self, p.adam_m, "f", 4, p.ndim, p.shape, 1);
    PyObject *v = m ? tlm_py_view((PyObject *)self, p.adam_v, "f", 4, p.ndim, p.shape, 1) : NULL;
    if (!v) { Py_XDECREF(m); return NULL; }
    return Py_BuildValue("(NN)", m, v);
}

static PyObject *model_set_flag(ModelObject *self, PyObject *args, tlm_status (*set)(tlm_model *, int64_t, int)) {
    Py_ssize_t i;
    int flag;
    if (!PyArg_ParseTuple(args, "np", &i, &flag)) return NULL;
    CHECK_IDLE(self);
    tlm_status st = set(self->model, i, flag);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *model_set_trainable(ModelObject *self, PyObject *args) {
    return model_set_flag(self, args, tlm_model_set_trainable);
}

static PyObject *model_set_decay(ModelObject *self, PyObject *args) {
    return model_set_flag(self, args, tlm_model_set_decay);
}

/* set_fake_quant(i, scheme or None) */
static PyObject *model_set_fake_quant(ModelObject *self, PyObject *args) {
    Py_ssize_t i;
    PyObject *scheme;
    if (!PyArg_ParseTuple(args, "nO", &i, &scheme)) return NULL;
    CHECK_IDLE(self);
    tlm_fake_quant fq = {0};
    if (scheme != Py_None && tlm_py_fake_quant_from_tuple(scheme, &fq) < 0) return NULL;
    tlm_status st = tlm_model_set_fake_quant(self->model, i, scheme == Py_None ? NULL : &fq);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *model_enable_fake_quant(ModelObject *self, PyObject *arg) {
    CHECK_IDLE(self);
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    tlm_model_enable_fake_quant(self->model, on);
    Py_RETURN_NONE;
}

/* Optional [B,T] int32 buffer argument; Py_None gives NULL. */
static int optional_ids(PyObject *obj, Py_ssize_t n, const char *what, Py_buffer *view, const int32_t **out) {
    *out = NULL;
    if (obj == Py_None) return 0;
    if (tlm_py_get_buffer(obj, 'i', n, 0, what, view) < 0) return -1;
    *out = view->buf;
    return 0;
}

static PyObject *model_forward(ModelObject *self, PyObject *args) {
    PyObject *ids_o, *mask_o, *pos_o, *out_o;
    long long B, T;
    if (!PyArg_ParseTuple(args, "OOOLLO", &ids_o, &mask_o, &pos_o, &B, &T, &out_o)) return NULL;
    CHECK_IDLE(self);
    Py_ssize_t V = (Py_ssize_t)tlm_model_config(self->model)->vocab_size;
    Py_buffer ids = {0}, mask = {0}, pos = {0}, out = {0};
    const int32_t *mask_p, *pos_p;
    PyObject *result = NULL;
    if (tlm_py_get_buffer(ids_o, 'i', B * T, 0, "input_ids", &ids) < 0) return NULL;
    if (optional_ids(mask_o, B * T, "attention_mask", &mask, &mask_p) < 0) goto done;
    if (optional_ids(pos_o, B * T, "position_ids", &pos, &pos_p) < 0) goto done;
    if (tlm_py_get_buffer(out_o, 'f', B * T * V, 1, "logits", &out) < 0) goto done;
    tlm_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    st = tlm_model_forward(self->model, ids.buf, mask_p, pos_p, B, T, out.buf);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    result = st == TLM_OK ? (Py_INCREF(Py_None), Py_None) : tlm_py_raise(st);
done:
    PyBuffer_Release(&ids);
    if (mask.obj) PyBuffer_Release(&mask);
    if (pos.obj) PyBuffer_Release(&pos);
    if (out.obj) PyBuffer_Release(&out);
    return result;
}

static PyObject *model_loss(ModelObject *self, PyObject *args) {
    PyObject *ids_o, *labels_o, *mask_o, *pos_o;
    long long B, T;
    if (!PyArg_ParseTuple(args, "OOOOLL", &ids_o, &labels_o, &mask_o, &pos_o, &B, &T)) return NULL;
    CHECK_IDLE(self);
    Py_buffer ids = {0}, labels = {0}, mask = {0}, pos = {0};
    const int32_t *mask_p, *pos_p;
    PyObject *result = NULL;
    if (tlm_py_get_buffer(ids_o, 'i', B * T, 0, "input_ids", &ids) < 0) return NULL;
    if (tlm_py_get_buffer(labels_o, 'i', B * T, 0, "labels", &labels) < 0) goto done;
    if (optional_ids(mask_o, B * T, "attention_mask", &mask, &mask_p) < 0) goto done;
    if (optional_ids(pos_o, B * T, "position_ids", &pos, &pos_p) < 0) goto done;
    float loss = 0.0f;
    int64_t n = 0;
    tlm_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    st = tlm_model_loss(self->model, ids.buf, labels.buf, mask_p, pos_p, B, T, &loss, &n);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    result = st == TLM_OK ? Py_BuildValue("(dL)", (double)loss, (long long)n) : tlm_py_raise(st);
done:
    PyBuffer_Release(&ids);
    if (labels.obj) PyBuffer_Release(&labels);
    if (mask.obj) PyBuffer_Release(&mask);
    if (pos.obj) PyBuffer_Release(&pos);
    return result;
}

/* loss_distill(teacher or None, topk_ids or None, topk_logp or None, k, topk_temperature,
 *              (loss, beta, temperature, top_k, tail, kd_ratio, scale_by_t2), ids, labels, mask, pos, B, T)
 * -> (loss, n_tokens, ce, kd) */
static PyObject *model_loss_distill(ModelObject *self, PyObject *args) {
    PyObject *teacher_o, *tids_o, *tlogp_o, *ids_o, *labels_o, *mask_o, *pos_o;
    long long k, B, T;
    float topk_temperature;
    tlm_distill_config dc = {0};
    int loss_kind;
    if (!PyArg_ParseTuple(args, "OOOLf(iffLifp)OOOOLL", &teacher_o, &tids_o, &tlogp_o, &k, &topk_temperature,
                          &loss_kind, &dc.beta, &dc.temperature, &dc.top_k, &dc.tail, &dc.kd_ratio, &dc.scale_by_t2,
                          &ids_o, &labels_o, &mask_o, &pos_o, &B, &T))
        return NULL;
    dc.loss = (tlm_kd_loss)loss_kind;
    CHECK_IDLE(self);
    tlm_model *teacher = NULL;
    if (teacher_o != Py_None) {
        if ((PyObject *)self == teacher_o) return PyErr_Format(PyExc_ValueError, "the teacher is the student");
        if (!(teacher = tlm_py_model_acquire(teacher_o))) return NULL;
    }
    Py_buffer ids = {0}, labels = {0}, mask = {0}, pos = {0}, tids = {0}, tlogp = {0};
    const int32_t *mask_p, *pos_p;
    PyObject *result = NULL;
    Py_ssize_t topk_n = tids_o == Py_None ? 0 : (Py_ssize_t)(B * T * k);
    if (tlm_py_get_buffer(ids_o, 'i', B * T, 0, "input_ids", &ids) < 0) goto done;
    if (tlm_py_get_buffer(labels_o, 'i', B * T, 0, "labels", &labels) < 0) goto done;
    if (optional_ids(mask_o, B * T, "attention_mask", &mask, &mask_p) < 0) goto done;
    if (optional_ids(pos_o, B * T, "position_ids", &pos, &pos_p) < 0) goto done;
    if (tlm_py_get_buffer_or_none(tids_o, 'i', topk_n, 0, "teacher top-k ids", &tids) < 0) goto done;
    if (tlm_py_get_buffer_or_none(tlogp_o, 'f', topk_n, 0, "teacher top-k log-probs", &tlogp) < 0) goto done;
    float loss = 0.0f, ce = 0.0f, kd = 0.0f;
    int64_t n = 0;
    tlm_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    st = tlm_model_loss_distill(self->model, &dc, teacher, tids.buf, tlogp.buf, k, topk_temperature, ids.buf,
                                labels.buf, mask_p, pos_p, B, T, &loss, &n, &ce, &kd);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    result = st == TLM_OK ? Py_BuildValue("(dLdd)", (double)loss, (long long)n, (double)ce, (double)kd)
                          : tlm_py_raise(st);
done:
    if (teacher) tlm_py_model_release(teacher_o);
    PyBuffer_Release(&ids);
    PyBuffer_Release(&labels);
    PyBuffer_Release(&mask);
    PyBuffer_Release(&pos);
    PyBuffer_Release(&tids);
    PyBuffer_Release(&tlogp);
    return result;
}

static PyObject *model_backward(ModelObject *self, PyObject *arg) {
    double scale = PyFloat_AsDouble(arg);
    if (scale == -1.0 && PyErr_Occurred()) return NULL;
    CHECK_IDLE(self);
    tlm_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    st = tlm_model_backward(self->model, (float)scale);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *model_zero_grad(ModelObject *self, PyObject *noargs) {
    (void)noargs;
    CHECK_IDLE(self);
    tlm_model_zero_grad(self->model);
    Py_RETURN_NONE;
}

static PyObject *model_adamw_step(ModelObject *self, PyObject *args) {
    tlm_adamw_hparams hp;
    long long step;
    if (!PyArg_ParseTuple(args, "fffffL", &hp.lr, &hp.beta1, &hp.beta2, &hp.eps, &hp.weight_decay, &step))
        return NULL;
    CHECK_IDLE(self);
    tlm_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    st = tlm_adamw_step(self->model, &hp, step);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *model_adamw_prepare(ModelObject *self, PyObject *noargs) {
    (void)noargs;
    CHECK_IDLE(self);
    tlm_status st = tlm_adamw_prepare(self->model);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *model_clip_grad_norm(ModelObject *self, PyObject *arg) {
    double max_norm = PyFloat_AsDouble(arg);
    if (max_norm == -1.0 && PyErr_Occurred()) return NULL;
    CHECK_IDLE(self);
    float norm = 0.0f;
    tlm_status st = tlm_clip_grad_norm(self->model, (float)max_norm, &norm);
    if (st != TLM_OK) return tlm_py_raise(st);
    return PyFloat_FromDouble((double)norm);
}


static PyObject *model_lora_add(ModelObject *self, PyObject *args) {
    const char *name;
    PyObject *ranks_o, *scales_o;
    float dropout;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "sOOfK", &name, &ranks_o, &scales_o, &dropout, &seed)) return NULL;
    CHECK_IDLE(self);
    const tlm_config *c = tlm_model_config(self->model);
    Py_ssize_t n = (Py_ssize_t)(c->n_layers * tlm_model_n_proj(self->model));
    Py_buffer ranks = {0}, scales = {0};
    if (PyObject_GetBuffer(ranks_o, &ranks, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (ranks.itemsize != 8 || ranks.len != n * 8 || !ranks.format || (ranks.format[strlen(ranks.format) - 1] != 'q' &&
                                                                      ranks.format[strlen(ranks.format) - 1] != 'l')) {
        PyBuffer_Release(&ranks);
        return PyErr_Format(PyExc_ValueError, "ranks must be int64 [%zd]", n);
    }
    if (tlm_py_get_buffer(scales_o, 'f', n, 0, "scales", &scales) < 0) {
        PyBuffer_Release(&ranks);
        return NULL;
    }
    int id = -1;
    tlm_status st = tlm_lora_add(self->model, name, ranks.buf, scales.buf, dropout, (uint64_t)seed, &id);
    PyBuffer_Release(&ranks);
    PyBuffer_Release(&scales);
    if (st != TLM_OK) return tlm_py_raise(st);
    return PyLong_FromLong(id);
}

static PyObject *model_lora_set_active(ModelObject *self, PyObject *arg) {
    long id = PyLong_AsLong(arg);
    if (id == -1 && PyErr_Occurred()) return NULL;
    CHECK_IDLE(self);
    tlm_status st = tlm_lora_set_active(self->model, (int)id);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *model_lora_fold(ModelObject *self, tlm_status (*fold)(tlm_model *)) {
    CHECK_IDLE(self);
    tlm_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    st = fold(self->model);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *model_lora_merge(ModelObject *self, PyObject *noargs) {
    (void)noargs;
    return model_lora_fold(self, tlm_lora_merge);
}

static PyObject *model_lora_unmerge(ModelObject *self, PyObject *noargs) {
    (void)noargs;
    return model_lora_fold(self, tlm_lora_unmerge);
}

static PyObject *model_lora_merged_weight(ModelObject *self, PyObject *args) {
    long long layer;
    int proj;
    PyObject *out_o;
    if (!PyArg_ParseTuple(args, "LiO", &layer, &proj, &out_o)) return NULL;
    CHECK_IDLE(self);
    tlm_proj_info info;
    tlm_status st = tlm_model_proj(self->model, proj, &info);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_buffer out;
    if (tlm_py_get_buffer(out_o, 'f', (Py_ssize_t)(info.in * info.out), 1, "out", &out) < 0) return NULL;
    st = tlm_lora_merged_weight(self->model, layer, proj, out.buf);
    PyBuffer_Release(&out);
    if (st != TLM_OK) return tlm_py_raise(st);
    Py_RETURN_NONE;
}

/* [(module, in, out)] of a layer's projections, in the core's per-layer order. */
static PyObject *model_projections(ModelObject *self, PyObject *noargs) {
    (void)noargs;
    CHECK_IDLE(self);
    int n = tlm_model_n_proj(self->model);
    PyObject *list = PyList_New(n);
    for (int p = 0; list && p < n; p++) {
        tlm_proj_info info;
        tlm_model_proj(self->model, p, &info);
        PyObject *item = Py_BuildValue("(sLL)", info.module, (long long)info.in, (long long)info.out);
        if (!item) { Py_CLEAR(list); break; }
        PyList_SET_ITEM(list, p, item);
    }
    return list;
}

static PyObject *model_lora_state(ModelObject *self, PyObject *noargs) {
    (void)noargs;
    CHECK_IDLE(self);
    return Py_BuildValue("(ii)", tlm_lora_active(self->model), tlm_lora_merged(self->model));
}

static PyObject *model_checkpointing(ModelObject *self, PyObject *args) {
    CHECK_IDLE(self);
    int on;
    if (PyTuple_GET_SIZE(args) == 0) return PyBool_FromLong(tlm_model_checkpointing(self->model));
    if (!PyArg_ParseTuple(args, "p", &on)) return NULL;
    tlm_model_set_checkpointing(self->model, on);
    Py_RETURN_NONE;
}

static PyObject *model_training(ModelObject *self, PyObject *args) {
    CHECK_IDLE(self);
    int on;
    if (PyTuple_GET_SIZE(args) == 0) return PyBool_FromLong(tlm_model_training(self->model));
    if (!PyArg_ParseTuple(args, "p", &on)) return NULL;
    tlm_model_set_training(self->model, on);
    Py_RETURN_NONE;
}

static PyObject *model_rng_counter(ModelObject *self, PyObject *args) {
    CHECK_IDLE(self);
    unsigned long long counter;
    if (PyTuple_GET_SIZE(args) == 0) return PyLong_FromUnsignedLongLong(tlm_model_rng_counter(self->model));
    if (!PyArg_ParseTuple(args, "K", &counter)) return NULL;
    tlm_model_set_rng_counter(self->model, (uint64_t)counter);
    Py_RETURN_NONE;
}

static PyMethodDef model_methods[] = {
    {"params", (PyCFunction)model_params, METH_NOARGS,
     "[(name, shape, trainable, decay, quantized, ggml_type)] in table order (ggml_type -1 unless ggml blocks)."},
    {"set_weight_blocks", (PyCFunction)model_set_weight_blocks, METH_VARARGS,
     "set_weight_blocks(i, ggml_type, buffer): the rows of a GGUF-stored weight as ggml blocks"},
    {"weight_blocks", (PyCFunction)model_weight_blocks, METH_O, "weight_blocks(i) -> (ggml_type, bytes)"},
    {"param", (PyCFunction)model_param, METH_O, "A writable float32 view of parameter i."},
    {"set_weight", (PyCFunction)model_set_weight, METH_VARARGS, "set_weight(i, src float32): quantizes if stored so"},
    {"get_weight", (PyCFunction)model_get_weight, METH_VARARGS, "get_weight(i, dst float32): dequantizes if needed"},
    {"param_bytes", (PyCFunction)model_param_bytes, METH_O, "Bytes parameter i takes as stored."},
    {"grad", (PyCFunction)model_grad, METH_O, "A view of parameter i's gradient, or None."},
    {"adam_state", (PyCFunction)model_adam_state, METH_O, "(m, v) views of parameter i's AdamW moments, or None."},
    {"set_trainable", (PyCFunction)model_set_trainable, METH_VARARGS, "set_trainable(i, flag)"},
    {"set_decay", (PyCFunction)model_set_decay, METH_VARARGS, "set_decay(i, flag)"},
    {"set_fake_quant", (PyCFunction)model_set_fake_quant, METH_VARARGS,
     "set_fake_quant(i, scheme): train projection weight i through a fake quantizer (scheme None: off)"},
    {"enable_fake_quant", (PyCFunction)model_enable_fake_quant, METH_O,
     "enable_fake_quant(on): apply (True) or skip (False) every fake quantizer"},
    {"forward", (PyCFunction)model_forward, METH_VARARGS, "forward(ids, mask, pos, B, T, logits_out)"},
    {"loss", (PyCFunction)model_loss, METH_VARARGS, "loss(ids, labels, mask, pos, B, T) -> (loss, n_tokens)"},
    {"loss_distill", (PyCFunction)model_loss_distill, METH_VARARGS,
     "loss_distill(teacher, topk_ids, topk_logp, k, topk_T, (kind, beta, T, top_k, tail, kd_ratio, t2), ids, labels, "
     "mask, pos, B, T) -> (loss, n_tokens, ce, kd)"},
    {"backward", (PyCFunction)model_backward, METH_O, "backward(scale): grads += scale * d(last loss)"},
    {"zero_grad", (PyCFunction)model_zero_grad, METH_NOARGS, "Zero every gradient."},
    {"adamw_step", (PyCFunction)model_adamw_step, METH_VARARGS, "adamw_step(lr, beta1, beta2, eps, wd, step)"},
    {"adamw_prepare", (PyCFunction)model_adamw_prepare, METH_NOARGS,
     "Allocate gradients and zeroed AdamW moments for the trainable set."},
    {"clip_grad_norm", (PyCFunction)model_clip_grad_norm, METH_O, "clip_grad_norm(max_norm) -> total norm"},
    {"lora_add", (PyCFunction)model_lora_add, METH_VARARGS,
     "lora_add(name, ranks int64[L*P], scales float32[L*P], dropout, seed) -> adapter id (P projections per layer)"},
    {"projections", (PyCFunction)model_projections, METH_NOARGS,
     "[(module, in, out)]: a layer's projections in the order of per-projection arrays"},
    {"lora_set_active", (PyCFunction)model_lora_set_active, METH_O, "lora_set_active(id or -1)"},
    {"lora_merge", (PyCFunction)model_lora_merge, METH_NOARGS, "Fold the active adapter into the weights."},
    {"lora_unmerge", (PyCFunction)model_lora_unmerge, METH_NOARGS, "Take the merged adapter out again."},
    {"lora_merged_weight", (PyCFunction)model_lora_merged_weight, METH_VARARGS,
     "lora_merged_weight(layer, proj, out): out = W + scale B A, weights untouched"},
    {"lora_state", (PyCFunction)model_lora_state, METH_NOARGS, "(active id, merged)"},
    {"checkpointing", (PyCFunction)model_checkpointing, METH_VARARGS,
     "checkpointing() -> bool; checkpointing(flag) turns gradient checkpointing on or off"},
    {"training", (PyCFunction)model_training, METH_VARARGS,
     "training() -> bool; training(flag): dropout in loss() on (training) or off (evaluation)"},
    {"rng_counter", (PyCFunction)model_rng_counter, METH_VARARGS, "rng_counter() -> n; rng_counter(n) sets it"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ModelType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tinylm._core.Model",
    .tp_basicsize = sizeof(ModelObject),
    .tp_dealloc = (destructor)model_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A decoder model in the C core (see tinylm.Model for the public API).",
    .tp_methods = model_methods,
    .tp_init = (initproc)model_init,
    .tp_new = PyType_GenericNew,
};

int tlm_py_init_model(PyObject *module) {
    if (PyType_Ready(&ModelType) < 0) return -1;
    return PyModule_AddObjectRef(module, "Model", (PyObject *)&ModelType);
}

tlm_model *tlm_py_model_acquire(PyObject *obj) {
    if (!PyObject_TypeCheck(obj, &ModelType)) {
        PyErr_Format(PyExc_TypeError, "expected a tinylm._core.Model, got %s", Py_TYPE(obj)->tp_name);
        return NULL;
    }
    ModelObject *self = (ModelObject *)obj;
    CHECK_IDLE(self);
    self->busy = 1;
    return self->model;
}

void tlm_py_model_release(PyObject *obj) { ((ModelObject *)obj)->busy = 0; }
