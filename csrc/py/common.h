/* common.h: what every binding file shares. Only csrc/py/ includes Python.h. */
#ifndef TLM_PY_COMMON_H
#define TLM_PY_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "tlm.h"

/* Exception classes created at module init (tinylm.errors re-exports them). */
extern PyObject *TlmFormatError;      /* subclass of ValueError */
extern PyObject *TlmUnsupportedError; /* subclass of ValueError */
extern PyObject *TlmNumericError;     /* subclass of ArithmeticError */

/* Raises the exception for st with tlm_last_error() as message; returns NULL. */
PyObject *tlm_py_raise(tlm_status st);

/* Gets a C-contiguous buffer of `obj` holding `kind` ('f' float32, 'i' int32,
 * 'B' bytes) with `numel` elements (-1: any). `what` names the argument in
 * errors. Returns 0, or -1 with a Python exception set. */
int tlm_py_get_buffer(PyObject *obj, char kind, Py_ssize_t numel, int writable, const char *what, Py_buffer *view);
/* The same for an argument the core takes as "or NULL": None gives a view
 * whose buf and obj are NULL (PyBuffer_Release ignores it). */
int tlm_py_get_buffer_or_none(PyObject *obj, char kind, Py_ssize_t numel, int writable, const char *what,
                              Py_buffer *view);

/* A buffer-protocol object over memory owned by `owner` (kept alive by the
 * view, so numpy arrays made from it stay valid). format is "f", "i", "B"... */
/* An int64 buffer (the kinds above stop at 32 bits: offsets are int64) of
 * numel elements (-1: any). */
int tlm_py_get_i64(PyObject *obj, Py_ssize_t numel, const char *what, Py_buffer *view);
/* A read-only int64 [n] array copied from src: a view into a C object's
 * memory would dangle once the object is closed. */
PyObject *tlm_py_i64_copy(const int64_t *src, int64_t n);
PyObject *tlm_py_view(PyObject *owner, void *ptr, const char *format, Py_ssize_t itemsize,
                      int ndim, const int64_t *shape, int writable);

/* The tlm_model behind a tinylm._core.Model, marked busy until
 * tlm_py_model_release so no other call uses its arena meanwhile (binding
 * files other than py_model.c reach the model only this way). Returns NULL
 * with an exception set when obj is not an initialised, idle Model. */
tlm_model *tlm_py_model_acquire(PyObject *obj);
void tlm_py_model_release(PyObject *obj);

/* Fills c from a block descriptor dict (tlm_config's field names, every one
 * given, plus "rope" and "layer_flags"); -1 with a TypeError or ValueError set. */
int tlm_py_config_from_dict(PyObject *d, tlm_config *c);

/* Fills fq from the tuple (kind, ggml_type, group_size, bits, act_int8)
 * (py_fake_quant.c); -1 with a TypeError set. */
int tlm_py_fake_quant_from_tuple(PyObject *o, tlm_fake_quant *fq);

/* Subsystem registration, one per binding file. */
int tlm_py_init_common(PyObject *module);
int tlm_py_init_safetensors(PyObject *module);
int tlm_py_init_gguf(PyObject *module);
int tlm_py_init_model(PyObject *module);
int tlm_py_init_quant(PyObject *module);
int tlm_py_init_data(PyObject *module);
int tlm_py_init_topk(PyObject *module);
int tlm_py_init_tokenizer(PyObject *module);
int tlm_py_init_generate(PyObject *module);
int tlm_py_init_ops(PyObject *module);
int tlm_py_init_distill(PyObject *module);
int tlm_py_init_ggml(PyObject *module);
int tlm_py_init_fake_quant(PyObject *module);

#endif
