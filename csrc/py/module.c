/* module.c: tinylm._core, the CPython face of the C core.
 *
 * setup.py compiles the core once per instruction-set level and names each
 * build: TLM_MODULE is its module name (_core_x86_64_v3: PyInit__core_x86_64_v3)
 * and TLM_ISA the level it was compiled for ("x86-64-v3"), exposed as
 * _core.ISA. tinylm/_core.py imports the best one and installs it as
 * tinylm._core. */
#include "py/common.h"

#ifndef TLM_MODULE
#define TLM_MODULE _core
#endif
#ifndef TLM_ISA
#define TLM_ISA "generic"
#endif
#define TLM_STR_(x) #x
#define TLM_STR(x) TLM_STR_(x)
#define TLM_CAT_(a, b) a##b
#define TLM_CAT(a, b) TLM_CAT_(a, b)

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg) {
    (void)self;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 1) return PyErr_Format(PyExc_ValueError, "num_threads must be >= 1, got %ld", n);
    tlm_set_num_threads((int)n);
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    return PyLong_FromLong(tlm_get_num_threads());
}

static PyObject *py_test_point(PyObject *self, PyObject *arg) {
    (void)self;
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name) return NULL;
    tlm_test_point(name);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"set_num_threads", py_set_num_threads, METH_O, "Threads for OpenMP loops and OpenBLAS."},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "Threads in use."},
    {"test_point", py_test_point, METH_O, "test_point(name): the crash tests' stop point (core/testpoint.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "tinylm." TLM_STR(TLM_MODULE), "tinylm's C core, built for " TLM_ISA ".", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC TLM_CAT(PyInit_, TLM_MODULE)(void) {
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    if (PyModule_AddStringConstant(m, "ISA", TLM_ISA) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (tlm_py_init_common(m) < 0 || tlm_py_init_safetensors(m) < 0 || tlm_py_init_gguf(m) < 0 ||
        tlm_py_init_ggml(m) < 0 || tlm_py_init_model(m) < 0 || tlm_py_init_data(m) < 0 || tlm_py_init_topk(m) < 0 ||
        tlm_py_init_quant(m) < 0 || tlm_py_init_tokenizer(m) < 0 || tlm_py_init_generate(m) < 0 ||
        tlm_py_init_ops(m) < 0 || tlm_py_init_distill(m) < 0 || tlm_py_init_fake_quant(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
