/* qweight.c: a frozen linear weight stored quantized (NF4 with double
 * quantization, int8 per row, or ggml blocks from a GGUF file), dequantized
 * rows at a time right before the GEMM that needs them. */
#include "quant/quant.h"

#include "core/internal.h"

#include <string.h>

int64_t tlm_qweight_blocks(const tlm_qweight *q) {
    return q->kind == TLM_WEIGHTS_NF4 ? (q->rows * q->cols + TLM_NF4_BLOCK - 1) / TLM_NF4_BLOCK : 0;
}

int tlm_qweight_alloc(tlm_qweight *q, tlm_weight_storage kind, int64_t rows, int64_t cols) {
    memset(q, 0, sizeof *q);
    q->kind = kind, q->rows = rows, q->cols = cols;
    q->ggml_type = -1;
    if (kind == TLM_WEIGHTS_GGUF) return 0; /* the blocks' type comes with them */
    int64_t n = rows * cols;
    if (kind == TLM_WEIGHTS_NF4) {
        int64_t blocks = tlm_qweight_blocks(q);
        q->data = tlm_alloc((size_t)(n + 1) / 2);
        q->absmax_q = tlm_alloc((size_t)blocks);
        q->absmax_scale = tlm_alloc((size_t)((blocks + TLM_DQ_BLOCK - 1) / TLM_DQ_BLOCK) * sizeof(float));
        return q->data && q->absmax_q && q->absmax_scale ? 0 : -1;
    }
    q->data = tlm_alloc((size_t)n);
    q->row_absmax = tlm_alloc((size_t)rows * sizeof(float));
    return q->data && q->row_absmax ? 0 : -1;
}

void tlm_qweight_free(tlm_qweight *q) {
    tlm_free(q->data);
    tlm_free(q->absmax_q);
    tlm_free(q->absmax_scale);
    tlm_free(q->row_absmax);
    memset(q, 0, sizeof *q);
}

size_t tlm_qweight_bytes(const tlm_qweight *q) {
    int64_t n = q->rows * q->cols, blocks = tlm_qweight_blocks(q);
    if (q->kind == TLM_WEIGHTS_GGUF) return q->data ? (size_t)(q->rows * q->row_bytes) : 0;
    if (q->kind == TLM_WEIGHTS_NF4)
        return (size_t)((n + 1) / 2 + blocks + 4 * ((blocks + TLM_DQ_BLOCK - 1) / TLM_DQ_BLOCK) + 4);
    return (size_t)(n + 4 * q->rows);
}

/* The correctly rounded mean. (bitsandbytes uses torch's float32 mean, whose
 * summation order depends on the CPU's vector width and thread split, so its
 * last bit is not reproducible across machines anyway.) */
float tlm_nf4_absmax_offset(const float *absmax, int64_t nblocks) {
    double sum = 0.0;
    for (int64_t b = 0; b < nblocks; b++) sum += absmax[b];
    return (float)(sum / (double)nblocks);
}

void tlm_nf4_double_quantize(const float *absmax, int64_t nblocks, float offset, uint8_t *q, float *scales,
                             float *scratch) {
    for (int64_t b = 0; b < nblocks; b++) scratch[b] = absmax[b] - offset;
    tlm_blockwise8_quantize(scratch, nblocks, TLM_DQ_BLOCK, q, scales);
}

tlm_status tlm_qweight_set_blocks(tlm_qweight *q, int type, const void *blocks, uint64_t nbytes) {
    int64_t row_bytes;
    TLM_TRY(tlm_ggml_row_bytes(type, q->cols, &row_bytes));
    if (nbytes != (uint64_t)(q->rows * row_bytes))
        return tlm_fail(TLM_EINVAL, "%lld rows of %lld %s values take %lld bytes, got %llu", (long long)q->rows,
                        (long long)q->cols, tlm_ggml_type_name(type), (long long)(q->rows * row_bytes),
                        (unsigned long long)nbytes);
    if (!q->data || q->row_bytes != row_bytes) {
        uint8_t *data = tlm_alloc((size_t)nbytes);
        if (!data) return tlm_fail(TLM_ENOMEM, "out of memory for %llu bytes of %s blocks", (unsigned long long)nbytes,
                                   tlm_ggml_type_name(type));
        tlm_free(q->data);
        q->data = data;
    }
    memcpy(q->data, blocks, (size_t)nbytes);
    q->ggml_type = type;
    q->row_bytes = row_bytes;
    return TLM_OK;
}

tlm_status tlm_qweight_set(tlm_qweight *q, const float *w, float *scratch) {
    if (q->kind == TLM_WEIGHTS_GGUF) {
        if (!q->data) return tlm_fail(TLM_EINVAL, "a GGUF weight has no ggml type before its blocks are set");
        return tlm_ggml_quantize(q->ggml_type, w, q->rows, q->cols, q->data);
    }
    if (q->kind == TLM_WEIGHTS_INT8) {
        tlm_int8_rows_quantize(w, q->rows, q->cols, (int8_t *)q->data, q->row_absmax);
        return TLM_OK;
    }
    int64_t blocks = tlm_qweight_blocks(q);
    float *absmax = scratch;
    tlm_nf4_quantize(w, q->rows * q->cols, q->data, absmax);
    q->absmax_offset = tlm_nf4_absmax_offset(absmax, blocks);
    /* absmax - offset may overwrite absmax: it is no longer needed after. */
    tlm_nf4_double_quantize(absmax, blocks, q->absmax_offset, q->absmax_q, q->absmax_scale, absmax);
    return TLM_OK;
}

void tlm_qweight_rows(const tlm_qweight *q, int64_t r0, int64_t r1, float *out, float *scratch) {
    if (q->kind == TLM_WEIGHTS_GGUF) { /* a type and row length the blocks were checked against */
        tlm_ggml_dequantize(q->ggml_type, q->data + r0 * q->row_bytes, (r1 - r0) * q->cols, out);
        return;
    }
    if (q->kind == TLM_WEIGHTS_INT8) {
        tlm_int8_rows_dequantize((const int8_t *)q->data, q->row_absmax, r0, r1, q->cols, out);
        return;
    }
    int64_t i0 = r0 * q->cols, i1 = r1 * q->cols;
    int64_t b0 = i0 / TLM_NF4_BLOCK, b1 = (i1 + TLM_NF4_BLOCK - 1) / TLM_NF4_BLOCK;
    const float *code = tlm_dynamic_map();
    for (int64_t b = b0; b < b1; b++)
        scratch[b] = code[q->absmax_q[b]] * q->absmax_scale[b / TLM_DQ_BLOCK] + q->absmax_offset;
    tlm_nf4_dequantize(q->data, scratch, i0, i1, out);
}
