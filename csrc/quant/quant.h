/* quant.h: weight quantization kernels (bitsandbytes-compatible NF4 with
 * double quantization, 8-bit blockwise dynamic, row-wise int8). */
#ifndef TLM_QUANT_H
#define TLM_QUANT_H

#include "tlm.h"

#include <stdint.h>

#define TLM_NF4_BLOCK 64     /* weights per NF4 absmax */
#define TLM_DQ_BLOCK 256     /* absmax values per double-quantization scale */

extern const float TLM_NF4_CODE[16];

/* 8-bit blockwise with the dynamic map, as bitsandbytes' CPU backend:
 * codes [n], scales [ceil(n/blocksize)] (block absmax). */
void tlm_blockwise8_quantize(const float *x, int64_t n, int64_t blocksize, uint8_t *q, float *scales);
void tlm_int8_rows_dequantize(const int8_t *q, const float *absmax, int64_t r0, int64_t r1, int64_t cols,
                              float *out);

/* A frozen weight [rows, cols] held quantized. NF4 keeps its block absmax
 * double-quantized (8-bit codes, a scale per 256 blocks, one offset); GGUF
 * keeps ggml blocks of one type, row by row (csrc/quant/ggml_*.c). */
typedef struct {
    tlm_weight_storage kind; /* TLM_WEIGHTS_NF4, TLM_WEIGHTS_INT8 or TLM_WEIGHTS_GGUF */
    int64_t rows, cols;
    uint8_t *data;          /* NF4: packed [(rows*cols+1)/2]; INT8: int8 [rows*cols];
                               GGUF: [rows, row_bytes] ggml blocks, NULL until set */
    int ggml_type;          /* GGUF: the blocks' type, -1 until set */
    int64_t row_bytes;      /* GGUF */
    uint8_t *absmax_q;      /* NF4 [nblocks] */
    float *absmax_scale;    /* NF4 [ceil(nblocks/256)] */
    float absmax_offset;    /* NF4: mean of the block absmax */
    float *row_absmax;      /* INT8 [rows] */
} tlm_qweight;

int tlm_qweight_alloc(tlm_qweight *q, tlm_weight_storage kind, int64_t rows, int64_t cols);
void tlm_qweight_free(tlm_qweight *q);
size_t tlm_qweight_bytes(const tlm_qweight *q);
int64_t tlm_qweight_blocks(const tlm_qweight *q);
/* Quantizes w [rows, cols]; scratch: [tlm_qweight_blocks] floats. A GGUF
 * weight quantizes to its type, which must be set (and quantizable). */
tlm_status tlm_qweight_set(tlm_qweight *q, const float *w, float *scratch);
/* GGUF: takes a copy of ggml blocks of `type` holding the whole weight. */
tlm_status tlm_qweight_set_blocks(tlm_qweight *q, int type, const void *blocks, uint64_t nbytes);
/* Dequantizes rows [r0, r1) into out [(r1-r0), cols]; scratch: [tlm_qweight_blocks] floats
 * (only the blocks those rows touch are written). */
void tlm_qweight_rows(const tlm_qweight *q, int64_t r0, int64_t r1, float *out, float *scratch);

/* intx_fake.c: torchao's integer fake quantizers over groups of g values
 * (g divides rows * cols and each row), forward and gradient (gw may be gy). */
void tlm_fq_int4_forward(const float *w, int64_t rows, int64_t cols, int64_t g, float *w_hat, uint8_t *clip);
void tlm_fq_int4_backward(const float *w, const uint8_t *clip, const float *gy, int64_t rows, int64_t cols,
                          int64_t g, float *gw);
void tlm_fq_intx_forward(const float *w, int64_t rows, int64_t cols, int64_t g, int bits, float *w_hat,
                         uint8_t *clip);
void tlm_fq_intx_backward(const float *w, const uint8_t *clip, const float *gy, int64_t rows, int64_t cols,
                          int64_t g, int bits, float *gw);

#endif
