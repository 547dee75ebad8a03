/* module.c: tinylm._core, the CPython face of the C core. */
#include "py/common.h"

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
    PyModuleDef_HEAD_INIT, "tinylm._core", "tinylm's C core.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__core(void) {
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    if (tlm_py_init_common(m) < 0 || tlm_py_init_safetensors(m) < 0 || tlm_py_init_model(m) < 0 ||
        tlm_py_init_data(m) < 0 || tlm_py_init_quant(m) < 0 || tlm_py_init_tokenizer(m) < 0 ||
        tlm_py_init_generate(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
