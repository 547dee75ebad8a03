/* py_config.c: a tlm_config from the block descriptor dict that
 * tinylm/families/ builds from config.json. The keys are tlm_config's field
 * names; every field must be given (the families set each one), and an
 * unknown key is an error, so the two sides cannot drift apart silently. */
#include "py/common.h"

#include <stddef.h>
#include <string.h>

typedef enum { F_I64, F_INT, F_FLOAT } field_kind;
typedef struct {
    const char *name;
    field_kind kind;
    size_t offset;
} field;

#define FIELD(name, kind) {#name, kind, offsetof(tlm_config, name)}
static const field FIELDS[] = {
    FIELD(names, F_INT), FIELD(vocab_size, F_I64), FIELD(hidden_size, F_I64), FIELD(intermediate_size, F_I64),
    FIELD(n_layers, F_I64), FIELD(n_heads, F_I64), FIELD(n_kv_heads, F_I64), FIELD(head_dim, F_I64),
    FIELD(rotary_dim, F_I64), FIELD(norm_kind, F_INT), FIELD(norm_eps, F_FLOAT), FIELD(norm_offset, F_FLOAT),
    FIELD(norm_bias, F_INT), FIELD(sandwich_norms, F_INT), FIELD(parallel_residual, F_INT), FIELD(resid_dropout, F_FLOAT), FIELD(qk_norm, F_INT),
    FIELD(qk_norm_bias, F_INT), FIELD(act, F_INT), FIELD(gated, F_INT), FIELD(attn_scale, F_FLOAT),
    FIELD(attn_softcap, F_FLOAT), FIELD(sliding_window, F_I64), FIELD(embed_scale, F_FLOAT), FIELD(padding_idx, F_I64),
    FIELD(final_softcap, F_FLOAT), FIELD(tie_word_embeddings, F_INT), FIELD(lm_head_bias, F_INT),
    FIELD(qkv_bias, F_INT), FIELD(o_bias, F_INT), FIELD(mlp_bias, F_INT), FIELD(fused_qkv, F_INT),
    FIELD(fused_gate_up, F_INT), FIELD(weights, F_INT),
};
#define NFIELDS (sizeof FIELDS / sizeof *FIELDS)

#define ROPE_FIELD(name, kind) {#name, kind, offsetof(tlm_rope, name)}
static const field ROPE_FIELDS[] = {
    ROPE_FIELD(type, F_INT), ROPE_FIELD(theta, F_FLOAT), ROPE_FIELD(factor, F_FLOAT),
    ROPE_FIELD(low_freq_factor, F_FLOAT), ROPE_FIELD(high_freq_factor, F_FLOAT),
    ROPE_FIELD(original_max_position, F_I64), ROPE_FIELD(attention_factor, F_FLOAT),
};
#define NROPE (sizeof ROPE_FIELDS / sizeof *ROPE_FIELDS)

static int set_field(void *base, const field *f, PyObject *value, const char *where) {
    char *at = (char *)base + f->offset;
    if (f->kind == F_FLOAT) {
        double v = PyFloat_AsDouble(value);
        if (v == -1.0 && PyErr_Occurred()) goto bad;
        *(float *)at = (float)v;
        return 0;
    }
    long long v = PyLong_AsLongLong(value);
    if (v == -1 && PyErr_Occurred()) goto bad;
    if (f->kind == F_I64) *(int64_t *)at = v;
    else if (v < INT32_MIN || v > INT32_MAX) goto bad;
    else *(int *)at = (int)v;
    return 0;
bad:
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "%s\"%s\" must be %s, got %R", where, f->name,
                 f->kind == F_FLOAT ? "a number" : "an integer", value);
    return -1;
}

/* A float list of at most TLM_MAX_ROPE_PAIRS into dst (zero-filled). */
static int set_factors(float *dst, PyObject *list, const char *name) {
    memset(dst, 0, TLM_MAX_ROPE_PAIRS * sizeof(float));
    if (list == Py_None) return 0;
    PyObject *seq = PySequence_Fast(list, "longrope factors must be a list");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int rc = 0;
    if (n > TLM_MAX_ROPE_PAIRS) {
        PyErr_Format(PyExc_ValueError, "rope \"%s\" has %zd entries, more than the %d tinylm supports", name, n,
                     TLM_MAX_ROPE_PAIRS);
        rc = -1;
    }
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
        double v = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (v == -1.0 && PyErr_Occurred()) rc = -1;
        else dst[i] = (float)v;
    }
    Py_DECREF(seq);
    return rc;
}

static int set_rope(tlm_rope *r, PyObject *d, int kind) {
    if (!PyDict_Check(d)) {
        PyErr_Format(PyExc_TypeError, "rope[%d] must be a dict, got %R", kind, d);
        return -1;
    }
    char where[32];
    snprintf(where, sizeof where, "rope[%d] ", kind);
    for (size_t i = 0; i < NROPE; i++) {
        PyObject *v = PyDict_GetItemString(d, ROPE_FIELDS[i].name);
        if (!v) {
            PyErr_Format(PyExc_TypeError, "rope[%d] misses \"%s\"", kind, ROPE_FIELDS[i].name);
            return -1;
        }
        if (set_field(r, &ROPE_FIELDS[i], v, where) < 0) return -1;
    }
    PyObject *s = PyDict_GetItemString(d, "short_factor"), *l = PyDict_GetItemString(d, "long_factor");
    if (!s || !l) {
        PyErr_Format(PyExc_TypeError, "rope[%d] misses \"short_factor\" or \"long_factor\" (None when unused)", kind);
        return -1;
    }
    return set_factors(r->short_factor, s, "short_factor") < 0 || set_factors(r->long_factor, l, "long_factor") < 0
               ? -1 : 0;
}

static int set_layer_flags(tlm_config *c, PyObject *list) {
    PyObject *seq = PySequence_Fast(list, "layer_flags must be a list of ints");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int rc = 0;
    if (n != c->n_layers) {
        PyErr_Format(PyExc_ValueError, "layer_flags has %zd entries for %lld layers", n, (long long)c->n_layers);
        rc = -1;
    }
    memset(c->layer_flags, 0, sizeof c->layer_flags);
    for (Py_ssize_t i = 0; rc == 0 && i < n && i < TLM_MAX_LAYERS; i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (v == -1 && PyErr_Occurred()) rc = -1;
        else if (v < 0 || v > 255) rc = -1, PyErr_Format(PyExc_ValueError, "layer_flags[%zd] = %ld", i, v);
        else c->layer_flags[i] = (uint8_t)v;
    }
    Py_DECREF(seq);
    return rc;
}

int tlm_py_config_from_dict(PyObject *d, tlm_config *c) {
    memset(c, 0, sizeof *c);
    if (!d || !PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "Model(**descriptor): keyword arguments required");
        return -1;
    }
    Py_ssize_t used = 0;
    for (size_t i = 0; i < NFIELDS; i++, used++) {
        PyObject *v = PyDict_GetItemString(d, FIELDS[i].name);
        if (!v) {
            PyErr_Format(PyExc_TypeError, "the model descriptor misses \"%s\"", FIELDS[i].name);
            return -1;
        }
        if (set_field(c, &FIELDS[i], v, "") < 0) return -1;
    }
    PyObject *rope = PyDict_GetItemString(d, "rope"), *flags = PyDict_GetItemString(d, "layer_flags");
    if (!rope || !flags) {
        PyErr_SetString(PyExc_TypeError, "the model descriptor misses \"rope\" or \"layer_flags\"");
        return -1;
    }
    used += 2;
    if (!PySequence_Check(rope) || PySequence_Size(rope) != 2) {
        PyErr_SetString(PyExc_TypeError, "\"rope\" must be a pair (full-attention layers, sliding-window layers)");
        return -1;
    }
    for (int kind = 0; kind < 2; kind++) {
        PyObject *r = PySequence_GetItem(rope, kind);
        int rc = r ? set_rope(&c->rope[kind], r, kind) : -1;
        Py_XDECREF(r);
        if (rc < 0) return -1;
    }
    if (set_layer_flags(c, flags) < 0) return -1;
    if (PyDict_Size(d) != used) {
        PyObject *key, *value;
        Py_ssize_t pos = 0;
        while (PyDict_Next(d, &pos, &key, &value)) {
            const char *k = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
            int known = k && (!strcmp(k, "rope") || !strcmp(k, "layer_flags"));
            for (size_t i = 0; k && !known && i < NFIELDS; i++) known = !strcmp(k, FIELDS[i].name);
            if (!known) {
                PyErr_Format(PyExc_TypeError, "the model descriptor has an unknown field %R", key);
                return -1;
            }
        }
    }
    return 0;
}
