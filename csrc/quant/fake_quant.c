/* fake_quant.c: the fake quantization schemes of tlm.h, dispatched to their
 * kernels: the ggml codecs (quantize then dequantize, ggml_blocks.c) and
 * torchao's integer quantizers (intx_fake.c). */
#include "core/internal.h"
#include "quant/quant.h"

static tlm_status check_groups(const tlm_fake_quant *fq, int64_t cols) {
    if (fq->group_size < 2 || cols % fq->group_size)
        return tlm_fail(TLM_EINVAL, "fake quantization groups of %lld values do not divide rows of %lld",
                        (long long)fq->group_size, (long long)cols);
    return TLM_OK;
}

tlm_status tlm_fake_quant_check(const tlm_fake_quant *fq, int64_t cols) {
    switch (fq->kind) {
    case TLM_FQ_GGML: {
        int64_t bytes;
        TLM_TRY(tlm_ggml_row_bytes(fq->ggml_type, cols, &bytes));
        if (!tlm_ggml_can_quantize(fq->ggml_type) || !tlm_ggml_can_dequantize(fq->ggml_type))
            return tlm_fail(TLM_EUNSUPPORTED, "fake quantization to ggml type %s is not implemented",
                            tlm_ggml_type_name(fq->ggml_type));
        return TLM_OK;
    }
    case TLM_FQ_INTX_SYM:
        if (fq->bits < 2 || fq->bits > 8)
            return tlm_fail(TLM_EINVAL, "symmetric intx fake quantization takes 2..8 bits, not %d", fq->bits);
        return check_groups(fq, cols);
    case TLM_FQ_INT4_ASYM:
        return check_groups(fq, cols);
    case TLM_FQ_NONE:
        break;
    }
    return tlm_fail(TLM_EINVAL, "unknown fake quantization scheme %d", (int)fq->kind);
}

tlm_status tlm_fake_quantize(const tlm_fake_quant *fq, const float *w, int64_t rows, int64_t cols, float *w_hat,
                             uint8_t *clip) {
    TLM_TRY(tlm_fake_quant_check(fq, cols));
    if (rows < 0) return tlm_fail(TLM_EINVAL, "fake quantization of %lld rows", (long long)rows);
    if (fq->kind == TLM_FQ_GGML) return tlm_ggml_fake_quantize(fq->ggml_type, w, rows, cols, w_hat, clip);
    if (fq->kind == TLM_FQ_INT4_ASYM)
        tlm_fq_int4_forward(w, rows, cols, fq->group_size, w_hat, clip);
    else
        tlm_fq_intx_forward(w, rows, cols, fq->group_size, fq->bits, w_hat, clip);
    return TLM_OK;
}

tlm_status tlm_fake_quantize_backward(const tlm_fake_quant *fq, const float *w, const uint8_t *clip,
                                      const float *gy, int64_t rows, int64_t cols, float *gw) {
    TLM_TRY(tlm_fake_quant_check(fq, cols));
    if (rows < 0) return tlm_fail(TLM_EINVAL, "fake quantization of %lld rows", (long long)rows);
    int64_t n = rows * cols;
    switch (fq->kind) {
    case TLM_FQ_GGML: /* the scales are the quantizer's choice, held fixed: a plain straight-through pass */
        #pragma omp parallel for schedule(static) if (n > 65536)
        for (int64_t i = 0; i < n; i++) gw[i] = clip[i] ? 0.0f : gy[i];
        break;
    case TLM_FQ_INT4_ASYM:
        tlm_fq_int4_backward(w, clip, gy, rows, cols, fq->group_size, gw);
        break;
    default:
        tlm_fq_intx_backward(w, clip, gy, rows, cols, fq->group_size, fq->bits, gw);
    }
    return TLM_OK;
}
