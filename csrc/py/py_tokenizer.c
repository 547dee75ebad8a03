/* py_tokenizer.c: tinylm._core.Tokenizer, a thin face over tlm_tok. Encoding
 * and decoding run with the GIL released; encode_batch fans out over OpenMP. */
#include "py/common.h"

#include <stdlib.h>

typedef struct {
    PyObject_HEAD
    tlm_tok *tok;
    /* One int object per id below vocab_size, made on first use: building
     * the result lists then costs a reference each, not an allocation. */
    PyObject **ints;
    Py_ssize_t n_ints;
} TokObject;

static void tok_dealloc(TokObject *self) {
    for (Py_ssize_t i = 0; i < self->n_ints; i++) Py_XDECREF(self->ints[i]);
    PyMem_Free(self->ints);
    tlm_tok_free(self->tok);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Wraps a loaded tokenizer (st its load status) in a new object of `type`. */
static PyObject *tok_wrap(PyTypeObject *type, tlm_tok *tok, tlm_status st) {
    if (st != TLM_OK) return tlm_py_raise(st);
    TokObject *self = (TokObject *)type->tp_alloc(type, 0);
    if (!self) { tlm_tok_free(tok); return NULL; }
    self->tok = tok;
    Py_ssize_t n = (Py_ssize_t)tlm_tok_vocab_size(tok);
    if (!(self->ints = PyMem_Calloc((size_t)n + 1, sizeof *self->ints))) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->n_ints = n;
    return (PyObject *)self;
}

static PyObject *tok_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"path", NULL};
    PyObject *path;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&", kwlist, PyUnicode_FSConverter, &path)) return NULL;
    tlm_tok *tok;
    tlm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = tlm_tok_load(PyBytes_AS_STRING(path), &tok);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    return tok_wrap(type, tok, st);
}

static PyObject *tok_from_json(PyObject *cls, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"tokenizer_json", "config_json", "source", NULL};
    const char *json, *config = NULL, *source;
    Py_ssize_t len, config_len = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "s#z#s", kwlist, &json, &len, &config, &config_len, &source))
        return NULL;
    tlm_tok *tok;
    tlm_status st;
    /* The buffers belong to the argument objects, which the call holds. */
    Py_BEGIN_ALLOW_THREADS
    st = tlm_tok_load_json(json, (size_t)len, config, (size_t)config_len, source, &tok);
    Py_END_ALLOW_THREADS
    return tok_wrap((PyTypeObject *)cls, tok, st);
}

static PyObject *id_int(TokObject *self, int32_t id) {
    if (id >= self->n_ints) return PyLong_FromLong(id);
    if (!self->ints[id] && !(self->ints[id] = PyLong_FromLong(id))) return NULL;
    return Py_NewRef(self->ints[id]);
}

static PyObject *ids_to_list(TokObject *self, const tlm_tok_ids *v) {
    PyObject *list = PyList_New((Py_ssize_t)v->n);
    if (!list) return NULL;
    for (int64_t i = 0; i < v->n; i++) {
        PyObject *x = id_int(self, v->ids[i]);
        if (!x) { Py_DECREF(list); return NULL; }
        PyList_SET_ITEM(list, (Py_ssize_t)i, x);
    }
    return list;
}

static PyObject *tok_encode(TokObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"text", "add_special_tokens", NULL};
    PyObject *text;
    int add_special = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "U|p", kwlist, &text, &add_special)) return NULL;
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(text, &len);
    if (!s) return NULL;
    tlm_tok_ids ids = {0};
    tlm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = tlm_tok_encode(self->tok, s, (size_t)len, add_special, &ids);
    Py_END_ALLOW_THREADS
    PyObject *res = st == TLM_OK ? ids_to_list(self, &ids) : tlm_py_raise(st);
    tlm_tok_ids_free(&ids);
    return res;
}

static PyObject *tok_encode_batch(TokObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"texts", "add_special_tokens", NULL};
    PyObject *texts;
    int add_special = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|p", kwlist, &texts, &add_special)) return NULL;
    /* A tuple copy: the caller's list cannot change under the released GIL. */
    PyObject *tuple = PySequence_Tuple(texts);
    if (!tuple) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(tuple);
    const char **ptrs = calloc((size_t)n + 1, sizeof *ptrs);
    size_t *lens = calloc((size_t)n + 1, sizeof *lens);
    tlm_tok_ids *outs = calloc((size_t)n + 1, sizeof *outs);
    PyObject *res = NULL;
    if (!ptrs || !lens || !outs) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyTuple_GET_ITEM(tuple, i);
        if (!PyUnicode_Check(t)) {
            PyErr_Format(PyExc_TypeError, "texts[%zd] must be str, not %.80s", i, Py_TYPE(t)->tp_name);
            goto done;
        }
        Py_ssize_t len;
        if (!(ptrs[i] = PyUnicode_AsUTF8AndSize(t, &len))) goto done;
        lens[i] = (size_t)len;
    }
    tlm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = tlm_tok_encode_batch(self->tok, ptrs, lens, n, add_special, outs);
    Py_END_ALLOW_THREADS
    if (st != TLM_OK) { tlm_py_raise(st); goto done; }
    if (!(res = PyList_New(n))) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *l = ids_to_list(self, &outs[i]);
        if (!l) { Py_CLEAR(res); goto done; }
        PyList_SET_ITEM(res, i, l);
    }
done:
    for (Py_ssize_t i = 0; outs && i < n; i++) tlm_tok_ids_free(&outs[i]);
    free(outs);
    free(lens);
    free(ptrs);
    Py_DECREF(tuple);
    return res;
}

static PyObject *tok_decode(TokObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"ids", "skip_special_tokens", NULL};
    PyObject *obj;
    int skip = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|p", kwlist, &obj, &skip)) return NULL;
    PyObject *seq = PySequence_Fast(obj, "ids must be a sequence of ints");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    if (!ids) { Py_DECREF(seq); return PyErr_NoMemory(); }
    for (Py_ssize_t i = 0; i < n; i++) {
        long long v = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (v == -1 && PyErr_Occurred()) { free(ids); Py_DECREF(seq); return NULL; }
        /* Ids no vocabulary holds are skipped, as tokenizers does. */
        ids[i] = v < 0 || v > INT32_MAX ? -1 : (int32_t)v;
    }
    Py_DECREF(seq);
    char *out;
    size_t len;
    tlm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = tlm_tok_decode(self->tok, ids, n, skip, &out, &len);
    Py_END_ALLOW_THREADS
    free(ids);
    if (st != TLM_OK) return tlm_py_raise(st);
    PyObject *res = PyUnicode_DecodeUTF8(out, (Py_ssize_t)len, "strict");
    free(out);
    return res;
}

static PyObject *tok_token_to_id(TokObject *self, PyObject *arg) {
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &len);
    if (!s) return NULL;
    int32_t id = tlm_tok_token_to_id(self->tok, s, (size_t)len);
    if (id < 0) Py_RETURN_NONE;
    return PyLong_FromLong(id);
}

static PyObject *tok_id_to_token(TokObject *self, PyObject *arg) {
    long long id = PyLong_AsLongLong(arg);
    if (id == -1 && PyErr_Occurred()) return NULL;
    size_t len;
    const char *s = id < 0 || id > INT32_MAX ? NULL : tlm_tok_id_to_token(self->tok, (int32_t)id, &len);
    if (!s) Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "strict");
}

static PyObject *tok_vocab_size(TokObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLongLong(tlm_tok_vocab_size(self->tok));
}

/* {"bos_token": "<s>", ...} for the named special tokens that are set. */
static PyObject *tok_special_tokens(TokObject *self, void *closure) {
    (void)closure;
    static const char *const names[TLM_TOK_NSPECIAL] = {
        "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"};
    PyObject *d = PyDict_New();
    for (int k = 0; d && k < TLM_TOK_NSPECIAL; k++) {
        const char *s = tlm_tok_special_token(self->tok, (tlm_tok_special)k);
        if (!s) continue;
        PyObject *v = PyUnicode_FromString(s);
        if (!v || PyDict_SetItemString(d, names[k], v) < 0) Py_CLEAR(d);
        Py_XDECREF(v);
    }
    return d;
}

static PyMethodDef tok_methods[] = {
    {"from_json", (PyCFunction)(void (*)(void))tok_from_json, METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "from_json(tokenizer_json, config_json, source) -> Tokenizer: from tokenizer.json text and\n"
     "tokenizer_config.json text (or None); errors name `source`."},
    {"encode", (PyCFunction)(void (*)(void))tok_encode, METH_VARARGS | METH_KEYWORDS,
     "encode(text, add_special_tokens=True) -> list[int]"},
    {"encode_batch", (PyCFunction)(void (*)(void))tok_encode_batch, METH_VARARGS | METH_KEYWORDS,
     "encode_batch(texts, add_special_tokens=True) -> list[list[int]], over the OpenMP threads"},
    {"decode", (PyCFunction)(void (*)(void))tok_decode, METH_VARARGS | METH_KEYWORDS,
     "decode(ids, skip_special_tokens=False) -> str"},
    {"token_to_id", (PyCFunction)tok_token_to_id, METH_O, "token_to_id(token) -> int | None"},
    {"id_to_token", (PyCFunction)tok_id_to_token, METH_O, "id_to_token(id) -> str | None"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef tok_getset[] = {
    {"vocab_size", (getter)tok_vocab_size, NULL, "Number of distinct ids, added tokens included.", NULL},
    {"special_tokens", (getter)tok_special_tokens, NULL, "Named special token strings that are set.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TokType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tinylm._core.Tokenizer",
    .tp_basicsize = sizeof(TokObject),
    .tp_dealloc = (destructor)tok_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Tokenizer(path): the BPE tokenizer of path/tokenizer.json (+ tokenizer_config.json).",
    .tp_methods = tok_methods,
    .tp_getset = tok_getset,
    .tp_new = tok_new,
};

int tlm_py_init_tokenizer(PyObject *module) {
    if (PyType_Ready(&TokType) < 0) return -1;
    return PyModule_AddObjectRef(module, "Tokenizer", (PyObject *)&TokType);
}
