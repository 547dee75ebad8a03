/* cpu_probe.c: tinylm._cpu, which x86-64 psABI levels this CPU and OS can run.
 *
 * Built with no -march flag (setup.py), so it runs on any x86-64 CPU and can
 * say "this CPU lacks x86-64-v2" where loading a core variant would die with
 * SIGILL. libgcc's __builtin_cpu_supports checks the CPUID bits of each level
 * and, for AVX and AVX-512, that the OS saves the ymm/zmm state (OSXSAVE and
 * XCR0), the same definition of the levels that -march=x86-64-vN compiles for. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *py_supported(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    __builtin_cpu_init();
    int levels[3] = {
        __builtin_cpu_supports("x86-64-v2") != 0,
        __builtin_cpu_supports("x86-64-v3") != 0,
        __builtin_cpu_supports("x86-64-v4") != 0,
    };
    static const char *names[3] = {"x86-64-v2", "x86-64-v3", "x86-64-v4"};
    PyObject *out = PyList_New(0);
    for (int i = 0; out && i < 3; i++) {
        if (!levels[i]) continue;
        PyObject *name = PyUnicode_FromString(names[i]);
        if (!name || PyList_Append(out, name) < 0) Py_CLEAR(out);
        Py_XDECREF(name);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"supported", py_supported, METH_NOARGS,
     "The x86-64 levels this CPU and OS support, lowest first, e.g. ['x86-64-v2', 'x86-64-v3']."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "tinylm._cpu", "Which builds of tinylm's core this CPU can run.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__cpu(void) { return PyModule_Create(&moduledef); }
