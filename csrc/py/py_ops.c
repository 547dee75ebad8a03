/* py_ops.c: tinylm._core.ops, every kernel of csrc/ops/ops.h callable from
 * Python, so tests/test_ops.py can check each op on its own against PyTorch.
 * A test surface, not an API: nothing in tinylm uses it. Argument checks
 * only; the math is in csrc/ops. */
#include "py/common.h"

#include "ops/ops.h"

#define OPS_DOC                                                                                                    \
    "tinylm's kernels (csrc/ops/ops.h), one function per op, for the per-op tests. Test-only: not a stable API.\n" \
    "\n"                                                                                                           \
    "Each function takes the C function's arguments in its order (tlm_norm_forward -> norm_forward), with\n"      \
    "C-contiguous numpy arrays for pointers (float32, int32 for ids/targets/positions/masks/starts) and None for\n" \
    "NULL. Outputs are arrays the caller allocates and the op writes (or accumulates into, as ops.h says).\n"      \
    "Descriptors are tuples: tlm_norm_desc (kind, eps, w_offset, groups, ld), tlm_attn_desc (scale, softcap,\n"    \
    "window); rope_inv_freq takes the tlm_rope fields as keywords. Scratch is allocated here, per thread as the\n"  \
    "op asks. Each array's size is checked against the dimensions; ids, targets and cache starts against their\n" \
    "ranges."

/* A pointer argument: the Python object, what it must hold, and its view. */
typedef struct {
    PyObject *obj;
    char kind;         /* 'f' float32, 'i' int32 */
    Py_ssize_t numel;  /* elements it must hold */
    int writable;
    int nullable;      /* None passes NULL */
    const char *name;
    Py_buffer view;
} array_arg;

#define ARG(obj, kind, numel, writable, nullable, name) {obj, kind, numel, writable, nullable, name, {0}}
#define IN(obj, kind, numel, name) ARG(obj, kind, numel, 0, 0, name)
#define IN_OR_NONE(obj, kind, numel, name) ARG(obj, kind, numel, 0, 1, name)
/* OUT: written or updated in place (float32) */
#define OUT(obj, numel, name) ARG(obj, 'f', numel, 1, 0, name)
#define OUT_OR_NONE(obj, numel, name) ARG(obj, 'f', numel, 1, 1, name)
#define N_ARGS(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define PTR(arg) ((arg).view.buf)

static void release_arrays(array_arg *a, int n) {
    for (int i = 0; i < n; i++) PyBuffer_Release(&a[i].view);
}

static int take_arrays(array_arg *a, int n) {
    for (int i = 0; i < n; i++) {
        int rc = a[i].nullable ? tlm_py_get_buffer_or_none(a[i].obj, a[i].kind, a[i].numel, a[i].writable, a[i].name,
                                                           &a[i].view)
                               : tlm_py_get_buffer(a[i].obj, a[i].kind, a[i].numel, a[i].writable, a[i].name,
                                                   &a[i].view);
        if (rc < 0) {
            release_arrays(a, i);
            return -1;
        }
    }
    return 0;
}

/* Raises ValueError(msg) unless ok. */
static int require(int ok, const char *msg) {
    if (!ok) PyErr_SetString(PyExc_ValueError, msg);
    return ok ? 0 : -1;
}

/* Every value of an int32 array within [lo, hi). */
static int in_range(const array_arg *a, int64_t lo, int64_t hi, const char *msg) {
    const int32_t *v = PTR(*a);
    for (Py_ssize_t i = 0; i < a->numel; i++)
        if (v[i] < lo || v[i] >= hi) return require(0, msg);
    return 0;
}

/* n floats of scratch, or NULL with MemoryError. */
static float *scratch(int64_t n) {
    float *p = PyMem_Malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) PyErr_NoMemory();
    return p;
}

/* ------------------------------------------------------------- embedding */

/* forward (out, ids, table, ...), backward (dtable, ids, dout, ...); the table is [V, D], any V */
static PyObject *embedding(PyObject *args, int backward) {
    PyObject *first, *ids, *third;
    int64_t N, D;
    float scale;
    if (!PyArg_ParseTuple(args, "OOOLLf", &first, &ids, &third, &N, &D, &scale)) return NULL;
    if (require(N >= 0 && D > 0, "need N >= 0, D > 0") < 0) return NULL;
    array_arg a[] = {OUT(first, backward ? -1 : N * D, backward ? "dtable" : "out"), IN(ids, 'i', N, "ids"),
                     IN(third, 'f', backward ? N * D : -1, backward ? "dout" : "table")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    Py_ssize_t table_len = a[backward ? 0 : 2].view.len / 4;
    if (require(table_len % D == 0, "the table must be [V, D]") < 0 ||
        in_range(&a[1], 0, table_len / D, "ids must be in [0, V)") < 0) {
        release_arrays(a, N_ARGS(a));
        return NULL;
    }
    if (backward)
        tlm_embedding_backward(PTR(a[0]), PTR(a[1]), PTR(a[2]), N, D, scale);
    else
        tlm_embedding_forward(PTR(a[0]), PTR(a[1]), PTR(a[2]), N, D, scale);
    release_arrays(a, N_ARGS(a));
    Py_RETURN_NONE;
}

static PyObject *py_embedding_forward(PyObject *self, PyObject *args) { (void)self; return embedding(args, 0); }
static PyObject *py_embedding_backward(PyObject *self, PyObject *args) { (void)self; return embedding(args, 1); }

/* ------------------------------------------------------------------ norm */

#define NORM_DESC "(iffLL)"

/* Checks a norm descriptor; *wn: floats a weight (or bias) array spans. */
static int norm_desc_ok(const tlm_norm_desc *nd, int kind, int64_t N, int64_t D, Py_ssize_t *wn) {
    if (require(kind == TLM_NORM_RMS || kind == TLM_NORM_LAYER, "kind must be TLM_NORM_RMS (0) or TLM_NORM_LAYER (1)") <
            0 ||
        require(N >= 0 && D > 0 && nd->groups >= 1, "need N >= 0, D > 0, groups >= 1") < 0 ||
        require(nd->groups == 1 || nd->ld >= D, "groups > 1 needs ld >= D") < 0)
        return -1;
    *wn = nd->groups > 1 ? (nd->groups - 1) * nd->ld + D : D;
    return 0;
}

static PyObject *py_norm_forward(PyObject *self, PyObject *args) {
    (void)self;
    tlm_norm_desc nd;
    int kind;
    PyObject *out, *stats, *x, *w, *b;
    int64_t N, D;
    Py_ssize_t wn;
    if (!PyArg_ParseTuple(args, NORM_DESC "OOOOOLL", &kind, &nd.eps, &nd.w_offset, &nd.groups, &nd.ld, &out, &stats,
                          &x, &w, &b, &N, &D))
        return NULL;
    nd.kind = (tlm_norm_kind)kind;
    if (norm_desc_ok(&nd, kind, N, D, &wn) < 0) return NULL;
    array_arg a[] = {OUT(out, N * D, "out"), OUT(stats, 2 * N, "stats"), IN(x, 'f', N * D, "x"), IN(w, 'f', wn, "w"),
                     IN_OR_NONE(b, 'f', wn, "b")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    tlm_norm_forward(&nd, PTR(a[0]), PTR(a[1]), PTR(a[2]), PTR(a[3]), PTR(a[4]), N, D);
    release_arrays(a, N_ARGS(a));
    Py_RETURN_NONE;
}

static PyObject *py_norm_backward(PyObject *self, PyObject *args) {
    (void)self;
    tlm_norm_desc nd;
    int kind;
    PyObject *dx, *dw, *db, *dout, *x, *w, *stats;
    float beta;
    int64_t N, D;
    Py_ssize_t wn;
    if (!PyArg_ParseTuple(args, NORM_DESC "OfOOOOOOLL", &kind, &nd.eps, &nd.w_offset, &nd.groups, &nd.ld, &dx, &beta,
                          &dw, &db, &dout, &x, &w, &stats, &N, &D))
        return NULL;
    nd.kind = (tlm_norm_kind)kind;
    if (norm_desc_ok(&nd, kind, N, D, &wn) < 0) return NULL;
    array_arg a[] = {OUT_OR_NONE(dx, N * D, "dx"), OUT_OR_NONE(dw, wn, "dw"), OUT_OR_NONE(db, wn, "db"),
                     IN(dout, 'f', N * D, "dout"), IN(x, 'f', N * D, "x"), IN(w, 'f', wn, "w"),
                     IN(stats, 'f', 2 * N, "stats")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    float *s = scratch(tlm_get_num_threads() * tlm_norm_scratch_floats(&nd, D));
    if (s)
        tlm_norm_backward(&nd, PTR(a[0]), beta, PTR(a[1]), PTR(a[2]), PTR(a[3]), PTR(a[4]), PTR(a[5]), PTR(a[6]), N,
                          D, s);
    PyMem_Free(s);
    release_arrays(a, N_ARGS(a));
    if (!s) return NULL;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ rope */

/* rope_inv_freq(inv_freq, R, use_long, type, theta, factor=1, low_freq_factor=1, high_freq_factor=1,
 *               original_max_position=0, short_factor=None, long_factor=None) */
static PyObject *py_rope_inv_freq(PyObject *self, PyObject *args, PyObject *kwds) {
    (void)self;
    static char *kwlist[] = {"inv_freq", "R", "use_long", "type", "theta", "factor", "low_freq_factor",
                             "high_freq_factor", "original_max_position", "short_factor", "long_factor", NULL};
    tlm_rope rope = {.factor = 1.0f, .low_freq_factor = 1.0f, .high_freq_factor = 1.0f, .attention_factor = 1.0f};
    PyObject *inv_freq, *short_o = Py_None, *long_o = Py_None;
    int64_t R;
    int use_long, type;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OLpif|fffLOO", kwlist, &inv_freq, &R, &use_long, &type,
                                     &rope.theta, &rope.factor, &rope.low_freq_factor, &rope.high_freq_factor,
                                     &rope.original_max_position, &short_o, &long_o))
        return NULL;
    rope.type = (tlm_rope_type)type;
    if (require(type >= TLM_ROPE_DEFAULT && type <= TLM_ROPE_LONGROPE, "unknown rope type") < 0 ||
        require(R > 0 && R % 2 == 0 && R / 2 <= TLM_MAX_ROPE_PAIRS, "R must be even, in [2, 2*TLM_MAX_ROPE_PAIRS]") < 0)
        return NULL;
    int longrope = type == TLM_ROPE_LONGROPE;
    array_arg a[] = {OUT(inv_freq, R / 2, "inv_freq"), ARG(short_o, 'f', R / 2, 0, !longrope, "short_factor"),
                     ARG(long_o, 'f', R / 2, 0, !longrope, "long_factor")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    if (PTR(a[1])) memcpy(rope.short_factor, PTR(a[1]), (size_t)(R / 2) * sizeof(float));
    if (PTR(a[2])) memcpy(rope.long_factor, PTR(a[2]), (size_t)(R / 2) * sizeof(float));
    tlm_rope_inv_freq(PTR(a[0]), R, &rope, use_long);
    release_arrays(a, N_ARGS(a));
    Py_RETURN_NONE;
}

static PyObject *py_rope_tables(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cos_t, *sin_t, *pos, *inv_freq;
    int64_t N, R;
    float scaling;
    if (!PyArg_ParseTuple(args, "OOOOLLf", &cos_t, &sin_t, &pos, &inv_freq, &N, &R, &scaling)) return NULL;
    if (require(N >= 0 && R > 0 && R % 2 == 0, "need N >= 0 and an even R > 0") < 0) return NULL;
    array_arg a[] = {OUT(cos_t, N * R / 2, "cos_t"), OUT(sin_t, N * R / 2, "sin_t"), IN(pos, 'i', N, "pos"),
                     IN(inv_freq, 'f', R / 2, "inv_freq")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    tlm_rope_tables(PTR(a[0]), PTR(a[1]), PTR(a[2]), PTR(a[3]), N, R, scaling);
    release_arrays(a, N_ARGS(a));
    Py_RETURN_NONE;
}

static PyObject *rope(PyObject *args, int backward) {
    PyObject *x, *cos_t, *sin_t;
    int64_t N, nh, E, R;
    if (!PyArg_ParseTuple(args, "OOOLLLL", &x, &cos_t, &sin_t, &N, &nh, &E, &R)) return NULL;
    if (require(N >= 0 && nh >= 0 && R > 0 && R % 2 == 0 && R <= E, "need N, nh >= 0 and an even R in (0, E]") < 0)
        return NULL;
    array_arg a[] = {OUT(x, N * nh * E, backward ? "dx" : "x"), IN(cos_t, 'f', N * R / 2, "cos_t"),
                     IN(sin_t, 'f', N * R / 2, "sin_t")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    if (backward)
        tlm_rope_backward(PTR(a[0]), PTR(a[1]), PTR(a[2]), N, nh, E, R);
    else
        tlm_rope_forward(PTR(a[0]), PTR(a[1]), PTR(a[2]), N, nh, E, R);
    release_arrays(a, N_ARGS(a));
    Py_RETURN_NONE;
}

static PyObject *py_rope_forward(PyObject *self, PyObject *args) { (void)self; return rope(args, 0); }
static PyObject *py_rope_backward(PyObject *self, PyObject *args) { (void)self; return rope(args, 1); }

/* ---------------------------------------------------------------- linear */

static PyObject *py_linear_forward(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *y, *x, *W, *b;
    int64_t N, In, Out;
    if (!PyArg_ParseTuple(args, "OOOOLLL", &y, &x, &W, &b, &N, &In, &Out)) return NULL;
    if (require(N >= 0 && In > 0 && Out > 0, "need N >= 0, In, Out > 0") < 0) return NULL;
    array_arg a[] = {OUT(y, N * Out, "y"), IN(x, 'f', N * In, "x"), IN(W, 'f', Out * In, "W"),
                     IN_OR_NONE(b, 'f', Out, "b")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    tlm_linear_forward(PTR(a[0]), PTR(a[1]), PTR(a[2]), PTR(a[3]), N, In, Out);
    release_arrays(a, N_ARGS(a));
    Py_RETURN_NONE;
}

static PyObject *py_linear_backward(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *dx, *dW, *db, *dy, *x, *W;
    float beta;
    int64_t N, In, Out;
    if (!PyArg_ParseTuple(args, "OfOOOOOLLL", &dx, &beta, &dW, &db, &dy, &x, &W, &N, &In, &Out)) return NULL;
    if (require(N >= 0 && In > 0 && Out > 0, "need N >= 0, In, Out > 0") < 0) return NULL;
    array_arg a[] = {OUT_OR_NONE(dx, N * In, "dx"), OUT_OR_NONE(dW, Out * In, "dW"), OUT_OR_NONE(db, Out, "db"),
                     IN(dy, 'f', N * Out, "dy"), IN(x, 'f', N * In, "x"), IN(W, 'f', Out * In, "W")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    tlm_linear_backward(PTR(a[0]), beta, PTR(a[1]), PTR(a[2]), PTR(a[3]), PTR(a[4]), PTR(a[5]), N, In, Out);
    release_arrays(a, N_ARGS(a));
    Py_RETURN_NONE;
}

/* gemm_xwt(y, ldy, x, W, N, In, rows) and gemm_dyw(dx, beta, dy, ldy, W, N, In, rows): a tile of W's rows */
static PyObject *py_gemm_xwt(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *y, *x, *W;
    int64_t ldy, N, In, rows;
    if (!PyArg_ParseTuple(args, "OLOOLLL", &y, &ldy, &x, &W, &N, &In, &rows)) return NULL;
    if (require(N >= 0 && In > 0 && rows > 0 && ldy >= rows, "need N >= 0, In > 0, 0 < rows <= ldy") < 0) return NULL;
    array_arg a[] = {OUT(y, N * ldy, "y"), IN(x, 'f', N * In, "x"), IN(W, 'f', rows * In, "W")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    tlm_gemm_xwt(PTR(a[0]), ldy, PTR(a[1]), PTR(a[2]), N, In, rows);
    release_arrays(a, N_ARGS(a));
    Py_RETURN_NONE;
}

static PyObject *py_gemm_dyw(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *dx, *dy, *W;
    float beta;
    int64_t ldy, N, In, rows;
    if (!PyArg_ParseTuple(args, "OfOLOLLL", &dx, &beta, &dy, &ldy, &W, &N, &In, &rows)) return NULL;
    if (require(N >= 0 && In > 0 && rows > 0 && ldy >= rows, "need N >= 0, In > 0, 0 < rows <= ldy") < 0) return NULL;
    array_arg a[] = {OUT(dx, N * In, "dx"), IN(dy, 'f', N * ldy, "dy"), IN(W, 'f', rows * In, "W")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    tlm_gemm_dyw(PTR(a[0]), beta, PTR(a[1]), ldy, PTR(a[2]), N, In, rows);
    release_arrays(a, N_ARGS(a));
    Py_RETURN_NONE;
}

/* ------------------------------------------------- activation, soft-cap */

static int act_ok(int act) {
    return require(act == TLM_ACT_SILU || act == TLM_ACT_GELU_TANH || act == TLM_ACT_GELU, "unknown activation");
}

static PyObject *py_act_forward(PyObject *self, PyObject *args) {
    (void)self;
    int act;
    PyObject *m, *g, *u;
    int64_t n;
    if (!PyArg_ParseTuple(args, "iOOOL", &act, &m, &g, &u, &n)) return NULL;
    if (act_ok(act) < 0 || require(n >= 0, "need n >= 0") < 0) return NULL;
    array_arg a[] = {OUT(m, n, "m"), IN(g, 'f', n, "g"), IN_OR_NONE(u, 'f', n, "u")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    tlm_act_forward((tlm_act)act, PTR(a[0]), PTR(a[1]), PTR(a[2]), n);
    release_arrays(a, N_ARGS(a));
    Py_RETURN_NONE;
}

static PyObject *py_act_backward(PyObject *self, PyObject *args) {
    (void)self;
    int act;
    PyObject *dg, *du, *dm, *g, *u;
    int64_t n;
    if (!PyArg_ParseTuple(args, "iOOOOOL", &act, &dg, &du, &dm, &g, &u, &n)) return NULL;
    if (act_ok(act) < 0 || require(n >= 0, "need n >= 0") < 0) return NULL;
    array_arg a[] = {OUT(dg, n, "dg"), OUT_OR_NONE(du, n, "du"), IN(dm, 'f', n, "dm"), IN(g, 'f', n, "g"),
                     IN_OR_NONE(u, 'f', n, "u")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    if (require(!PTR(a[4]) || PTR(a[1]), "a gated activation needs du") < 0) {
        release_arrays(a, N_ARGS(a));
        return NULL;
    }
    tlm_act_backward((tlm_act)act, PTR(a[0]), PTR(a[1]), PTR(a[2]), PTR(a[3]), PTR(a[4]), n);
    release_arrays(a, N_ARGS(a));
    Py_RETURN_NONE;
}

static PyObject *py_softcap_forward(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *x;
    int64_t n;
    float cap;
    if (!PyArg_ParseTuple(args, "OLf", &x, &n, &cap)) return NULL;
    if (require(n >= 0 && cap > 0.0f, "need n >= 0, cap > 0") < 0) return NULL;
    array_arg a[] = {OUT(x, n, "x")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    tlm_softcap_forward(PTR(a[0]), n, cap);
    release_arrays(a, N_ARGS(a));
    Py_RETURN_NONE;
}

static PyObject *py_softcap_backward(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *dx, *y;
    int64_t n;
    float cap;
    if (!PyArg_ParseTuple(args, "OOLf", &dx, &y, &n, &cap)) return NULL;
    if (require(n >= 0 && cap > 0.0f, "need n >= 0, cap > 0") < 0) return NULL;
    array_arg a[] = {OUT(dx, n, "dx"), IN(y, 'f', n, "y")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    tlm_softcap_backward(PTR(a[0]), PTR(a[1]), n, cap);
    release_arrays(a, N_ARGS(a));
    Py_RETURN_NONE;
}

/* ----------------------------------------------------------- elementwise */

static PyObject *py_add(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *out, *x, *y;
    int64_t n;
    if (!PyArg_ParseTuple(args, "OOOL", &out, &x, &y, &n)) return NULL;
    if (require(n >= 0, "need n >= 0") < 0) return NULL;
    array_arg a[] = {OUT(out, n, "out"), IN(x, 'f', n, "a"), IN(y, 'f', n, "b")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    tlm_add(PTR(a[0]), PTR(a[1]), PTR(a[2]), n);
    release_arrays(a, N_ARGS(a));
    Py_RETURN_NONE;
}

static PyObject *py_axpy(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *y, *x;
    float alpha;
    int64_t n;
    if (!PyArg_ParseTuple(args, "OfOL", &y, &alpha, &x, &n)) return NULL;
    if (require(n >= 0, "need n >= 0") < 0) return NULL;
    array_arg a[] = {OUT(y, n, "y"), IN(x, 'f', n, "x")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    tlm_axpy(PTR(a[0]), alpha, PTR(a[1]), n);
    release_arrays(a, N_ARGS(a));
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------- attention */

#define ATTN_DESC "(ffL)"

static int attn_dims_ok(const tlm_attn_desc *ad, int64_t B, int64_t T, int64_t H, int64_t K, int64_t E) {
    return require(B >= 0 && T >= 0 && H > 0 && K > 0 && E > 0 && H % K == 0 && ad->softcap >= 0.0f &&
                       ad->window >= 0,
                   "need B, T >= 0; H, K, E > 0 with K dividing H; softcap, window >= 0");
}

static PyObject *py_attention_forward(PyObject *self, PyObject *args) {
    (void)self;
    tlm_attn_desc ad;
    PyObject *out, *lse, *q, *k, *v, *mask;
    int64_t B, T, H, K, E;
    if (!PyArg_ParseTuple(args, ATTN_DESC "OOOOOOLLLLL", &ad.scale, &ad.softcap, &ad.window, &out, &lse, &q, &k, &v,
                          &mask, &B, &T, &H, &K, &E))
        return NULL;
    if (attn_dims_ok(&ad, B, T, H, K, E) < 0) return NULL;
    array_arg a[] = {OUT(out, B * T * H * E, "out"), OUT(lse, B * H * T, "lse"), IN(q, 'f', B * T * H * E, "q"),
                     IN(k, 'f', B * T * K * E, "k"), IN(v, 'f', B * T * K * E, "v"),
                     IN_OR_NONE(mask, 'i', B * T, "mask")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    float *s = scratch(tlm_get_num_threads() * tlm_attention_scratch_floats(T));
    if (s)
        tlm_attention_forward(&ad, PTR(a[0]), PTR(a[1]), PTR(a[2]), PTR(a[3]), PTR(a[4]), PTR(a[5]), B, T, H, K, E, s);
    PyMem_Free(s);
    release_arrays(a, N_ARGS(a));
    if (!s) return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_attention_backward(PyObject *self, PyObject *args) {
    (void)self;
    tlm_attn_desc ad;
    PyObject *dq, *dk, *dv, *dout, *q, *k, *v, *out, *lse, *mask;
    int64_t B, T, H, K, E;
    if (!PyArg_ParseTuple(args, ATTN_DESC "OOOOOOOOOOLLLLL", &ad.scale, &ad.softcap, &ad.window, &dq, &dk, &dv, &dout,
                          &q, &k, &v, &out, &lse, &mask, &B, &T, &H, &K, &E))
        return NULL;
    if (attn_dims_ok(&ad, B, T, H, K, E) < 0) return NULL;
    int64_t nq = B * T * H * E, nk = B * T * K * E;
    array_arg a[] = {OUT(dq, nq, "dq"), OUT(dk, nk, "dk"), OUT(dv, nk, "dv"), IN(dout, 'f', nq, "dout"),
                     IN(q, 'f', nq, "q"), IN(k, 'f', nk, "k"), IN(v, 'f', nk, "v"), IN(out, 'f', nq, "out"),
                     IN(lse, 'f', B * H * T, "lse"), IN_OR_NONE(mask, 'i', B * T, "mask")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    float *s = scratch(tlm_get_num_threads() * tlm_attention_scratch_floats(T)), *heads = scratch(2 * nq);
    if (s && heads)
        tlm_attention_backward(&ad, PTR(a[0]), PTR(a[1]), PTR(a[2]), PTR(a[3]), PTR(a[4]), PTR(a[5]), PTR(a[6]),
                               PTR(a[7]), PTR(a[8]), PTR(a[9]), B, T, H, K, E, heads, heads + nq, s);
    int ok = s && heads;
    PyMem_Free(s);
    PyMem_Free(heads);
    release_arrays(a, N_ARGS(a));
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_attention_decode(PyObject *self, PyObject *args) {
    (void)self;
    tlm_attn_desc ad;
    PyObject *out, *q, *kc, *vc, *start;
    int64_t B, S, t0, Tc, H, K, E;
    if (!PyArg_ParseTuple(args, ATTN_DESC "OOOOOLLLLLLL", &ad.scale, &ad.softcap, &ad.window, &out, &q, &kc, &vc,
                          &start, &B, &S, &t0, &Tc, &H, &K, &E))
        return NULL;
    if (attn_dims_ok(&ad, B, S, H, K, E) < 0 ||
        require(S > 0 && t0 >= 0 && t0 + S <= Tc, "need S > 0, t0 >= 0 and t0 + S <= Tc") < 0)
        return NULL;
    array_arg a[] = {OUT(out, B * S * H * E, "out"), IN(q, 'f', B * S * H * E, "q"), IN(kc, 'f', B * K * Tc * E, "kc"),
                     IN(vc, 'f', B * K * Tc * E, "vc"), IN(start, 'i', B, "start")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    float *s = NULL;
    if (in_range(&a[4], 0, Tc + 1, "start must be in [0, Tc]") == 0 &&
        (s = scratch(tlm_get_num_threads() * tlm_attention_decode_scratch_floats(Tc))))
        tlm_attention_decode(&ad, PTR(a[0]), PTR(a[1]), PTR(a[2]), PTR(a[3]), PTR(a[4]), B, S, t0, Tc, H, K, E, s);
    PyMem_Free(s);
    release_arrays(a, N_ARGS(a));
    if (!s) return NULL;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------- LM head, log-probs */

/* lmhead_ce(hv, tv, W, bias, softcap, Nv, D, V, dhv, dW, dbias) -> summed NLL */
static PyObject *py_lmhead_ce(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *hv, *tv, *W, *bias, *dhv, *dW, *dbias;
    float softcap;
    int64_t Nv, D, V;
    if (!PyArg_ParseTuple(args, "OOOOfLLLOOO", &hv, &tv, &W, &bias, &softcap, &Nv, &D, &V, &dhv, &dW, &dbias))
        return NULL;
    if (require(Nv >= 0 && D > 0 && V > 0 && softcap >= 0.0f, "need Nv >= 0, D, V > 0, softcap >= 0") < 0) return NULL;
    array_arg a[] = {IN(hv, 'f', Nv * D, "hv"), IN(tv, 'i', Nv, "tv"), IN(W, 'f', V * D, "W"),
                     IN_OR_NONE(bias, 'f', V, "bias"), OUT_OR_NONE(dhv, Nv * D, "dhv"), OUT_OR_NONE(dW, V * D, "dW"),
                     OUT_OR_NONE(dbias, V, "dbias")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    float *chunk = NULL;
    double nll = 0.0;
    if (in_range(&a[1], 0, V, "targets must be in [0, V)") == 0 && (chunk = scratch(tlm_lmhead_ce_rows(V) * V)))
        nll = tlm_lmhead_ce(PTR(a[0]), PTR(a[1]), PTR(a[2]), PTR(a[3]), softcap, Nv, D, V, chunk, PTR(a[4]),
                            PTR(a[5]), PTR(a[6]));
    PyMem_Free(chunk);
    release_arrays(a, N_ARGS(a));
    if (!chunk) return NULL;
    return PyFloat_FromDouble(nll);
}

static PyObject *py_logprob_gather(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *out, *logits, *targets;
    int64_t N, V;
    if (!PyArg_ParseTuple(args, "OOOLL", &out, &logits, &targets, &N, &V)) return NULL;
    if (require(N >= 0 && V > 0, "need N >= 0, V > 0") < 0) return NULL;
    array_arg a[] = {OUT(out, N, "out"), IN(logits, 'f', N * V, "logits"), IN(targets, 'i', N, "targets")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    int ok = in_range(&a[2], INT32_MIN, V, "targets must be < V") == 0;
    if (ok) tlm_logprob_gather(PTR(a[0]), PTR(a[1]), PTR(a[2]), N, V);
    release_arrays(a, N_ARGS(a));
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ LoRA */

static int lora_dims_ok(int64_t N, int64_t In, int64_t Out, int64_t R) {
    return require(N >= 0 && In > 0 && Out > 0 && R > 0, "need N >= 0, In, Out, R > 0");
}

static PyObject *py_lora_forward(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *y, *xa, *x, *A, *B;
    float scale;
    int64_t N, In, Out, R;
    if (!PyArg_ParseTuple(args, "OOOOOfLLLL", &y, &xa, &x, &A, &B, &scale, &N, &In, &Out, &R)) return NULL;
    if (lora_dims_ok(N, In, Out, R) < 0) return NULL;
    array_arg a[] = {OUT(y, N * Out, "y"), OUT(xa, N * R, "xa"), IN(x, 'f', N * In, "x"), IN(A, 'f', R * In, "A"),
                     IN(B, 'f', Out * R, "B")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    tlm_lora_forward(PTR(a[0]), PTR(a[1]), PTR(a[2]), PTR(a[3]), PTR(a[4]), scale, N, In, Out, R);
    release_arrays(a, N_ARGS(a));
    Py_RETURN_NONE;
}

static PyObject *py_lora_backward(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *dx, *dA, *dB, *dy, *x, *xa, *A, *B;
    float dx_beta, scale;
    int64_t N, In, Out, R;
    if (!PyArg_ParseTuple(args, "OfOOOOOOOfLLLL", &dx, &dx_beta, &dA, &dB, &dy, &x, &xa, &A, &B, &scale, &N, &In, &Out,
                          &R))
        return NULL;
    if (lora_dims_ok(N, In, Out, R) < 0) return NULL;
    array_arg a[] = {OUT_OR_NONE(dx, N * In, "dx"), OUT_OR_NONE(dA, R * In, "dA"), OUT_OR_NONE(dB, Out * R, "dB"),
                     IN(dy, 'f', N * Out, "dy"), IN(x, 'f', N * In, "x"), IN(xa, 'f', N * R, "xa"),
                     IN(A, 'f', R * In, "A"), IN(B, 'f', Out * R, "B")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    float *t = scratch(N * R);
    if (t)
        tlm_lora_backward(PTR(a[0]), dx_beta, PTR(a[1]), PTR(a[2]), PTR(a[3]), PTR(a[4]), PTR(a[5]), PTR(a[6]),
                          PTR(a[7]), scale, N, In, Out, R, t);
    PyMem_Free(t);
    release_arrays(a, N_ARGS(a));
    if (!t) return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_lora_merge_weight(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *W, *A, *B;
    float scale;
    int64_t Out, In, R;
    if (!PyArg_ParseTuple(args, "OOOfLLL", &W, &A, &B, &scale, &Out, &In, &R)) return NULL;
    if (lora_dims_ok(0, In, Out, R) < 0) return NULL;
    array_arg a[] = {OUT(W, Out * In, "W"), IN(A, 'f', R * In, "A"), IN(B, 'f', Out * R, "B")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    tlm_lora_merge_weight(PTR(a[0]), PTR(a[1]), PTR(a[2]), scale, Out, In, R);
    release_arrays(a, N_ARGS(a));
    Py_RETURN_NONE;
}

/* --------------------------------------------------------------- dropout */

static PyObject *dropout(PyObject *args, int backward) {
    PyObject *out, *x;
    int64_t n;
    float p;
    unsigned long long seed, key;
    if (!PyArg_ParseTuple(args, "OOLfKK", &out, &x, &n, &p, &seed, &key)) return NULL;
    if (require(n >= 0 && p >= 0.0f && p < 1.0f, "need n >= 0 and p in [0, 1)") < 0) return NULL;
    array_arg a[] = {OUT(out, n, backward ? "dx" : "out"), IN(x, 'f', n, backward ? "dout" : "x")};
    if (take_arrays(a, N_ARGS(a)) < 0) return NULL;
    if (backward)
        tlm_dropout_backward_add(PTR(a[0]), PTR(a[1]), n, p, seed, key);
    else
        tlm_dropout_forward(PTR(a[0]), PTR(a[1]), n, p, seed, key);
    release_arrays(a, N_ARGS(a));
    Py_RETURN_NONE;
}

static PyObject *py_dropout_forward(PyObject *self, PyObject *args) { (void)self; return dropout(args, 0); }
static PyObject *py_dropout_backward_add(PyObject *self, PyObject *args) { (void)self; return dropout(args, 1); }

/* ---------------------------------------------------------------- module */

#define FN(name, doc) {#name, py_##name, METH_VARARGS, doc}

static PyMethodDef ops_methods[] = {
    FN(embedding_forward, "embedding_forward(out, ids, table, N, D, scale)"),
    FN(embedding_backward, "embedding_backward(dtable, ids, dout, N, D, scale)"),
    FN(norm_forward, "norm_forward((kind, eps, w_offset, groups, ld), out, stats, x, w, b, N, D)"),
    FN(norm_backward, "norm_backward((kind, eps, w_offset, groups, ld), dx, beta, dw, db, dout, x, w, stats, N, D)"),
    {"rope_inv_freq", (PyCFunction)(void (*)(void))py_rope_inv_freq, METH_VARARGS | METH_KEYWORDS,
     "rope_inv_freq(inv_freq, R, use_long, type, theta, factor=1, low_freq_factor=1, high_freq_factor=1, "
     "original_max_position=0, short_factor=None, long_factor=None)"},
    FN(rope_tables, "rope_tables(cos_t, sin_t, pos, inv_freq, N, R, attention_scaling)"),
    FN(rope_forward, "rope_forward(x, cos_t, sin_t, N, nh, E, R): in place"),
    FN(rope_backward, "rope_backward(dx, cos_t, sin_t, N, nh, E, R): in place"),
    FN(linear_forward, "linear_forward(y, x, W, b, N, In, Out)"),
    FN(linear_backward, "linear_backward(dx, beta, dW, db, dy, x, W, N, In, Out)"),
    FN(gemm_xwt, "gemm_xwt(y, ldy, x, W, N, In, rows)"),
    FN(gemm_dyw, "gemm_dyw(dx, beta, dy, ldy, W, N, In, rows)"),
    FN(act_forward, "act_forward(act, m, g, u, n)"),
    FN(act_backward, "act_backward(act, dg, du, dm, g, u, n)"),
    FN(softcap_forward, "softcap_forward(x, n, cap): in place"),
    FN(softcap_backward, "softcap_backward(dx, y, n, cap): in place"),
    FN(add, "add(out, a, b, n)"),
    FN(axpy, "axpy(y, alpha, x, n)"),
    FN(attention_forward, "attention_forward((scale, softcap, window), out, lse, q, k, v, mask, B, T, H, K, E)"),
    FN(attention_backward,
       "attention_backward((scale, softcap, window), dq, dk, dv, dout, q, k, v, out, lse, mask, B, T, H, K, E)"),
    FN(attention_decode, "attention_decode((scale, softcap, window), out, q, kc, vc, start, B, S, t0, Tc, H, K, E)"),
    FN(lmhead_ce, "lmhead_ce(hv, tv, W, bias, softcap, Nv, D, V, dhv, dW, dbias) -> summed NLL"),
    FN(logprob_gather, "logprob_gather(out, logits, targets, N, V)"),
    FN(lora_forward, "lora_forward(y, xa, x, A, B, scale, N, In, Out, R)"),
    FN(lora_backward, "lora_backward(dx, dx_beta, dA, dB, dy, x, xa, A, B, scale, N, In, Out, R)"),
    FN(lora_merge_weight, "lora_merge_weight(W, A, B, scale, Out, In, R)"),
    FN(dropout_forward, "dropout_forward(out, x, n, p, seed, key)"),
    FN(dropout_backward_add, "dropout_backward_add(dx, dout, n, p, seed, key)"),
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef ops_module = {PyModuleDef_HEAD_INIT, "tinylm._core.ops", OPS_DOC, -1, ops_methods,
                                        NULL, NULL, NULL, NULL};

int tlm_py_init_ops(PyObject *module) {
    PyObject *ops = PyModule_Create(&ops_module);
    if (!ops) return -1;
    if (PyModule_AddIntConstant(ops, "NORM_RMS", TLM_NORM_RMS) < 0 ||
        PyModule_AddIntConstant(ops, "NORM_LAYER", TLM_NORM_LAYER) < 0 ||
        PyModule_AddIntConstant(ops, "ACT_SILU", TLM_ACT_SILU) < 0 ||
        PyModule_AddIntConstant(ops, "ACT_GELU_TANH", TLM_ACT_GELU_TANH) < 0 ||
        PyModule_AddIntConstant(ops, "ACT_GELU", TLM_ACT_GELU) < 0 ||
        PyModule_AddIntConstant(ops, "ROPE_DEFAULT", TLM_ROPE_DEFAULT) < 0 ||
        PyModule_AddIntConstant(ops, "ROPE_LINEAR", TLM_ROPE_LINEAR) < 0 ||
        PyModule_AddIntConstant(ops, "ROPE_LLAMA3", TLM_ROPE_LLAMA3) < 0 ||
        PyModule_AddIntConstant(ops, "ROPE_LONGROPE", TLM_ROPE_LONGROPE) < 0) {
        Py_DECREF(ops);
        return -1;
    }
    int rc = PyModule_AddObjectRef(module, "ops", ops);
    Py_DECREF(ops);
    return rc;
}
