/* ops.h: the kernels. Ops are the only code that does arithmetic; model code
 * composes them. Each op's _forward and _backward sit side by side in one
 * file and are tested together against PyTorch autograd.
 *
 * Conventions: row-major f32; N rows (tokens) of width D, etc. Backward
 * functions ACCUMULATE into parameter gradients (dW, db, dw: +=) and, where a
 * `beta` is taken, into the input gradient as dx = beta*dx + ...; a NULL
 * gradient pointer means "not needed" (frozen parameter) and skips that work.
 * Scratch buffers are passed in; no op allocates.
 */
#ifndef TLM_OPS_H
#define TLM_OPS_H

#include <stdint.h>

#include "tlm.h" /* tlm_rope */

/* ---- embedding: out[n] = scale * table[ids[n]] (scale 1, or Gemma's sqrt(D)) */
void tlm_embedding_forward(float *out /*[N,D]*/, const int32_t *ids /*[N]*/, const float *table /*[V,D]*/,
                           int64_t N, int64_t D, float scale);
void tlm_embedding_backward(float *dtable /*[V,D] +=*/, const int32_t *ids, const float *dout /*[N,D]*/,
                            int64_t N, int64_t D, float scale);

/* ---- normalisation over rows of width D, the three kinds models use:
 *   TLM_NORM_RMS    out = (x * rstd) * (w + w_offset)      rstd = 1/sqrt(mean(x^2) + eps)
 *                   w_offset 0 (Llama) or 1 (Gemma's (1 + w), computed in f32)
 *   TLM_NORM_LAYER  out = ((x - mean) * rstd) * w + b      rstd = 1/sqrt(var(x) + eps), biased var; b may be NULL
 * Row n uses weight row (n % groups): groups 1 is one weight [D]; per-head
 * q/k norms over [N*H, E] rows with a weight per head pass groups = H and
 * w, b, dw, db rows ld floats apart. stats [N, 2] keeps (mean, rstd) of each
 * row for backward (mean is 0 for RMS). */
typedef enum { TLM_NORM_RMS = 0, TLM_NORM_LAYER = 1 } tlm_norm_kind;
typedef struct {
    tlm_norm_kind kind;
    float eps;
    float w_offset;    /* RMS only */
    int64_t groups;    /* weight rows; 1 for a shared weight */
    int64_t ld;        /* floats between weight rows (groups > 1) */
} tlm_norm_desc;
void tlm_norm_forward(const tlm_norm_desc *nd, float *out /*[N,D]*/, float *stats /*[N,2]*/, const float *x,
                      const float *w /*[groups,D]*/, const float *b /*[groups,D] or NULL*/, int64_t N, int64_t D);
/* dx = beta*dx + d/dx (dx may be NULL); dw, db += (either may be NULL).
 * scratch: tlm_norm_scratch_floats(nd, D) floats per thread. */
int64_t tlm_norm_scratch_floats(const tlm_norm_desc *nd, int64_t D);
void tlm_norm_backward(const tlm_norm_desc *nd, float *dx, float beta, float *dw, float *db, const float *dout,
                       const float *x, const float *w, const float *stats, int64_t N, int64_t D, float *scratch);

/* ---- rotary embedding, Hugging Face rotate-half layout over the first R
 * (rotary_dim, even, <= E) elements of each head: element i < R/2 pairs with
 * i + R/2; elements R..E-1 pass through (partial rotary, Phi and StableLM). */
/* inv_freq[R/2] as transformers computes it (f32, the rope type's scaling
 * applied; longrope with the long factors when use_long, else the short). */
void tlm_rope_inv_freq(float *inv_freq /*[R/2]*/, int64_t R, const tlm_rope *rope, int use_long);
/* cos/sin tables [N, R/2] for the given positions, both times `attention_scaling`
 * (longrope's attention factor; 1 otherwise). */
void tlm_rope_tables(float *cos_t, float *sin_t, const int32_t *pos /*[N]*/, const float *inv_freq, int64_t N,
                     int64_t R, float attention_scaling);
/* In place on x [N, nh, E]. */
void tlm_rope_forward(float *x, const float *cos_t, const float *sin_t, int64_t N, int64_t nh, int64_t E, int64_t R);
void tlm_rope_backward(float *dx, const float *cos_t, const float *sin_t, int64_t N, int64_t nh, int64_t E,
                       int64_t R);

/* ---- linear: y = x W^T + b, W [Out,In] */
void tlm_linear_forward(float *y /*[N,Out]*/, const float *x /*[N,In]*/, const float *W /*[Out,In]*/,
                        const float *b /*[Out] or NULL*/, int64_t N, int64_t In, int64_t Out);
/* dx = beta*dx + dy W (dx may be NULL); dW += dy^T x; db += sum_n dy */
void tlm_linear_backward(float *dx /*[N,In]*/, float beta, float *dW /*[Out,In]*/, float *db /*[Out]*/,
                         const float *dy /*[N,Out]*/, const float *x /*[N,In]*/, const float *W /*[Out,In]*/,
                         int64_t N, int64_t In, int64_t Out);

/* The GEMMs of a linear layer over `rows` output features of W, for callers
 * that hold W a tile of rows at a time: y[:, :rows] (ld ldy) = x W^T;
 * dx = beta dx + dy[:, :rows] (ld ldy) W. */
void tlm_gemm_xwt(float *y, int64_t ldy, const float *x, const float *W, int64_t N, int64_t In, int64_t rows);
void tlm_gemm_dyw(float *dx, float beta, const float *dy, int64_t ldy, const float *W, int64_t N, int64_t In,
                  int64_t rows);
/* dW [rows,In] = dy[:, :rows]^T (ld ldy) x: a tile's weight gradient. */
void tlm_gemm_dytx(float *dW, const float *dy, int64_t ldy, const float *x, int64_t N, int64_t In, int64_t rows);
void tlm_add_bias(float *y, const float *b, int64_t N, int64_t Out);

/* ---- MLP activation. Gated (u given): m = act(g) * u (SwiGLU with silu,
 * GeGLU with gelu_tanh); plain (u NULL): m = act(g) (Phi's fc1 -> gelu).
 * TLM_ACT_GELU_TANH is gelu_pytorch_tanh / gelu_new, TLM_ACT_GELU the erf form. */
typedef enum { TLM_ACT_SILU = 0, TLM_ACT_GELU_TANH = 1, TLM_ACT_GELU = 2 } tlm_act;
void tlm_act_forward(tlm_act act, float *m, const float *g, const float *u, int64_t n);
/* dg = d/dg, du = d/du (written, not accumulated; du unused when u is NULL) */
void tlm_act_backward(tlm_act act, float *dg, float *du, const float *dm, const float *g, const float *u, int64_t n);

/* ---- soft-capping (Gemma 2): y = cap * tanh(x / cap), in place; backward
 * from the capped values: dx *= 1 - (y / cap)^2. */
void tlm_softcap_forward(float *x, int64_t n, float cap);
void tlm_softcap_backward(float *dx, const float *y, int64_t n, float cap);

/* ---- elementwise */
void tlm_add(float *out, const float *a, const float *b, int64_t n);

/* ---- causal GQA attention with a key padding mask.
 * q [B,T,H,E], k and v [B,T,K,E], out [B,T,H,E]; mask [B,T] (nonzero = real
 * token) or NULL. Scores are scale * q.k, soft-capped when softcap > 0
 * (cap * tanh(s / cap), before the mask, as Gemma 2). Query i attends to keys
 * j <= i with mask[j] != 0, and with a window W > 0 only to i - W < j (the
 * W most recent positions, itself included: transformers' sliding window);
 * a query with no such key outputs zeros. lse [B,H,T] keeps each row's
 * log-sum-exp so backward recomputes the probabilities instead of storing
 * [T,T]. */
typedef struct {
    float scale;      /* 1/sqrt(E), or query_pre_attn_scalar^-0.5 */
    float softcap;    /* 0: none */
    int64_t window;   /* 0: full causal */
} tlm_attn_desc;
int64_t tlm_attention_scratch_floats(int64_t T); /* per thread */
void tlm_attention_forward(const tlm_attn_desc *ad, float *out, float *lse, const float *q, const float *k,
                           const float *v, const int32_t *mask, int64_t B, int64_t T, int64_t H, int64_t K, int64_t E,
                           float *scratch /*[nthreads * tlm_attention_scratch_floats(T)]*/);
/* dq, dk, dv are overwritten. dk_heads, dv_heads: [B,T,H,E] scratch (each
 * query head's share before the GQA reduction, so heads run in parallel). */
void tlm_attention_backward(const tlm_attn_desc *ad, float *dq, float *dk, float *dv, const float *dout,
                            const float *q, const float *k, const float *v, const float *out, const float *lse,
                            const int32_t *mask, int64_t B, int64_t T, int64_t H, int64_t K, int64_t E,
                            float *dk_heads, float *dv_heads,
                            float *scratch /*[nthreads * tlm_attention_scratch_floats(T)]*/);

/* ---- LM head + cross-entropy, a chunk of rows at a time.
 * hv [Nv,D] hidden states of the rows that have a target, tv [Nv] their
 * targets, W [V,D], bias [V] or NULL; logits = hv W^T + bias, soft-capped
 * when softcap > 0 (Gemma 2's final_logit_softcapping). Returns the summed
 * NLL. With dhv, also writes dhv = d(sum NLL)/dhv and adds d(sum NLL)/dW to
 * dW and /dbias to dbias (each when not NULL). chunk: scratch of
 * tlm_lmhead_ce_rows(V) * V floats; the [Nv, V] logits are never held. */
int64_t tlm_lmhead_ce_rows(int64_t V);
/* A chunk's way back through the head: dh [rows,D] = dlogits W (written),
 * dW += dlogits^T h, dbias += column sums (each when not NULL). */
void tlm_lmhead_chunk_backward(const float *dlogits /*[rows,V]*/, const float *h /*[rows,D]*/, const float *W,
                               int64_t rows, int64_t D, int64_t V, float *dh, float *dW, float *dbias);
double tlm_lmhead_ce(const float *hv, const int32_t *tv, const float *W, const float *bias, float softcap,
                     int64_t Nv, int64_t D, int64_t V, float *chunk, float *dhv, float *dW, float *dbias);

/* y += alpha * x over n values */
void tlm_axpy(float *y, float alpha, const float *x, int64_t n);

/* ---- LoRA low-rank path: y += scale * (x A^T) B^T, A [R,In], B [Out,R].
 * xa [N,R] = x A^T is written (kept for backward). */
void tlm_lora_forward(float *y, float *xa, const float *x, const float *A, const float *B, float scale, int64_t N,
                      int64_t In, int64_t Out, int64_t R);
/* dB += scale dy^T xa; dA += scale (dy B)^T x; dx = dx_beta dx + scale (dy B) A.
 * t: [N,R] scratch. dx, dA or dB may be NULL. */
void tlm_lora_backward(float *dx, float dx_beta, float *dA, float *dB, const float *dy, const float *x,
                       const float *xa, const float *A, const float *B, float scale, int64_t N, int64_t In,
                       int64_t Out, int64_t R, float *t);

/* W [Out,In] += scale * B A (merging; a negative scale unmerges) */
void tlm_lora_merge_weight(float *W, const float *A, const float *B, float scale, int64_t Out, int64_t In, int64_t R);
/* out [rows,In] = W [rows,In] + scale * B [rows,R] A (out may be W): the
 * merged weight's rows, the same bits whichever rows are asked for. */
void tlm_lora_merge_rows(float *out, const float *W, const float *A, const float *B, float scale, int64_t rows,
                         int64_t In, int64_t R);
/* Given dM [rows,In], the gradient of those merged rows: dB [rows,R] +=
 * scale dM A^T; dA += scale B^T dM (either may be NULL). */
void tlm_lora_merged_grads(float *dA, float *dB, const float *dM, const float *A, const float *B, float scale,
                           int64_t rows, int64_t In, int64_t R);

/* ---- inverted dropout with a mask derived from (seed, key, index) */
void tlm_dropout_forward(float *out, const float *x, int64_t n, float p, uint64_t seed, uint64_t key);
/* dx += dout * mask / (1 - p), the same mask as tlm_dropout_forward(seed, key) */
void tlm_dropout_backward_add(float *dx, const float *dout, int64_t n, float p, uint64_t seed, uint64_t key);

/* ---- attention of S new query positions against a KV cache (generation).
 * q [B,S,H,E] after RoPE; kc, vc [B,K,Tc,E] hold cache positions 0..t0+S-1,
 * the new ones (t0..t0+S-1) already written. Query s of row b, at cache
 * position i = t0+s, attends keys j with start[b] <= j <= i (start: the row's
 * left padding) and, with a window W > 0, i - W < j; scores as in
 * tlm_attention_forward (scale, softcap). A query with no such key outputs
 * zeros. out [B,S,H,E]. */
int64_t tlm_attention_decode_scratch_floats(int64_t Tc); /* per thread */
void tlm_attention_decode(const tlm_attn_desc *ad, float *out, const float *q, const float *kc, const float *vc,
                          const int32_t *start, int64_t B, int64_t S, int64_t t0, int64_t Tc, int64_t H, int64_t K,
                          int64_t E,
                          float *scratch /*[nthreads * tlm_attention_decode_scratch_floats(Tc)]*/);

/* ---- out[n] = log softmax(logits[n])[targets[n]]; 0 where targets[n] < 0 */
void tlm_logprob_gather(float *out /*[N]*/, const float *logits /*[N,V]*/, const int32_t *targets /*[N]*/, int64_t N,
                        int64_t V);

#endif
