/* dtype.c: names, sizes and float conversions of the dtypes files carry. */
#include "core/internal.h"

#include <string.h>

static const struct { const char *name; size_t size; } DTYPES[TLM_DTYPE_COUNT] = {
    [TLM_F32] = {"F32", 4},   [TLM_F16] = {"F16", 2},   [TLM_BF16] = {"BF16", 2},
    [TLM_F64] = {"F64", 8},   [TLM_I64] = {"I64", 8},   [TLM_I32] = {"I32", 4},
    [TLM_I16] = {"I16", 2},   [TLM_I8] = {"I8", 1},     [TLM_U8] = {"U8", 1},
    [TLM_BOOL] = {"BOOL", 1}, [TLM_U16] = {"U16", 2},   [TLM_U32] = {"U32", 4},
    [TLM_U64] = {"U64", 8},   [TLM_F8_E4M3] = {"F8_E4M3", 1}, [TLM_F8_E5M2] = {"F8_E5M2", 1},
};

size_t tlm_dtype_size(tlm_dtype dt) { return (unsigned)dt < TLM_DTYPE_COUNT ? DTYPES[dt].size : 0; }

const char *tlm_dtype_name(tlm_dtype dt) { return (unsigned)dt < TLM_DTYPE_COUNT ? DTYPES[dt].name : "?"; }

tlm_status tlm_dtype_from_name(const char *name, tlm_dtype *out) {
    for (int i = 0; i < TLM_DTYPE_COUNT; i++)
        if (strcmp(name, DTYPES[i].name) == 0) { *out = (tlm_dtype)i; return TLM_OK; }
    return tlm_fail(TLM_EFORMAT, "unknown dtype \"%s\"", name);
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest even, as PyTorch does; NaN stays a quiet NaN. */
static inline uint16_t f32_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

tlm_status tlm_to_f32(const void *src, tlm_dtype dt, int64_t n, float *dst) {
    switch (dt) {
    case TLM_F32: memcpy(dst, src, (size_t)n * 4); return TLM_OK;
    case TLM_BF16: {
        const uint16_t *s = src;
        #pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(s[i]);
        return TLM_OK;
    }
    case TLM_F16: {
        const _Float16 *s = src;
        #pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return TLM_OK;
    }
    case TLM_F64: {
        const double *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return TLM_OK;
    }
    default:
        return tlm_fail(TLM_EUNSUPPORTED, "dtype %s is not a floating type tinylm can load", tlm_dtype_name(dt));
    }
}

tlm_status tlm_from_f32(const float *src, int64_t n, tlm_dtype dt, void *dst) {
    switch (dt) {
    case TLM_F32: memcpy(dst, src, (size_t)n * 4); return TLM_OK;
    case TLM_BF16: {
        uint16_t *d = dst;
        #pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) d[i] = f32_to_bf16(src[i]);
        return TLM_OK;
    }
    case TLM_F16: {
        _Float16 *d = dst;
        #pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) d[i] = (_Float16)src[i];
        return TLM_OK;
    }
    default:
        return tlm_fail(TLM_EUNSUPPORTED, "cannot write dtype %s", tlm_dtype_name(dt));
    }
}
