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

/* ---- embedding: out[n] = table[ids[n]] */
void tlm_embedding_forward(float *out /*[N,D]*/, const int32_t *ids /*[N]*/, const float *table /*[V,D]*/,
                           int64_t N, int64_t D);
void tlm_embedding_backward(float *dtable /*[V,D] +=*/, const int32_t *ids, const float *dout /*[N,D]*/,
                            int64_t N, int64_t D);

/* ---- RMSNorm (Llama): out = w * (x * rstd), rstd = 1/sqrt(mean(x^2) + eps) */
void tlm_rmsnorm_forward(float *out /*[N,D]*/, float *rstd /*[N]*/, const float *x /*[N,D]*/,
                         const float *w /*[D]*/, int64_t N, int64_t D, float eps);
/* dx = beta*dx + d/dx; dw += (may be NULL); scratch: [nthreads*D] when dw */
void tlm_rmsnorm_backward(float *dx /*[N,D]*/, float beta, float *dw /*[D]*/, const float *dout /*[N,D]*/,
                          const float *x, const float *w, const float *rstd, int64_t N, int64_t D,
                          float *scratch);

/* ---- rotary embedding, Hugging Face rotate-half layout (i pairs with i+E/2) */
/* inv_freq[E/2] from the config, as transformers computes it (f32, rope scaling applied). */
void tlm_rope_inv_freq(float *inv_freq /*[E/2]*/, int64_t E, float theta, int rope_type, float factor,
                       float low_freq_factor, float high_freq_factor, int64_t original_max_position);
/* cos/sin tables [N, E/2] for the given positions. */
void tlm_rope_tables(float *cos_t, float *sin_t, const int32_t *pos /*[N]*/, const float *inv_freq,
                     int64_t N, int64_t E);
/* In place on x [N, nh, E] (nh heads of width E per row). */
void tlm_rope_forward(float *x, const float *cos_t, const float *sin_t, int64_t N, int64_t nh, int64_t E);
void tlm_rope_backward(float *dx, const float *cos_t, const float *sin_t, int64_t N, int64_t nh, int64_t E);

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
void tlm_add_bias(float *y, const float *b, int64_t N, int64_t Out);

/* ---- SwiGLU: m = silu(g) * u */
void tlm_swiglu_forward(float *m, const float *g, const float *u, int64_t n);
void tlm_swiglu_backward(float *dg, float *du, const float *dm, const float *g, const float *u, int64_t n);

/* ---- elementwise */
void tlm_add(float *out, const float *a, const float *b, int64_t n);

/* ---- causal GQA attention with a key padding mask.
 * q [B,T,H,E], k and v [B,T,K,E], out [B,T,H,E]; mask [B,T] (nonzero = real
 * token) or NULL. Query i attends to keys j <= i with mask[j] != 0; a query
 * with no such key outputs zeros. lse [B,H,T] keeps each row's log-sum-exp
 * so backward recomputes the probabilities instead of storing [T,T]. */
int64_t tlm_attention_scratch_floats(int64_t T); /* per thread */
void tlm_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                           const int32_t *mask, int64_t B, int64_t T, int64_t H, int64_t K, int64_t E,
                           float *scratch /*[nthreads * tlm_attention_scratch_floats(T)]*/);
/* dq, dk, dv are overwritten. dk_heads, dv_heads: [B,T,H,E] scratch (each
 * query head's share before the GQA reduction, so heads run in parallel). */
void tlm_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                            const float *v, const float *out, const float *lse, const int32_t *mask, int64_t B,
                            int64_t T, int64_t H, int64_t K, int64_t E, float *dk_heads, float *dv_heads,
                            float *scratch /*[nthreads * tlm_attention_scratch_floats(T)]*/);

/* ---- LM head + cross-entropy, a chunk of rows at a time.
 * hv [Nv,D] hidden states of the rows that have a target, tv [Nv] their
 * targets, W [V,D]. Returns the summed NLL. With dhv, also writes
 * dhv = d(sum NLL)/dhv and (if dW) adds d(sum NLL)/dW. chunk: scratch of
 * tlm_lmhead_ce_rows(V) * V floats; the [Nv, V] logits are never held. */
int64_t tlm_lmhead_ce_rows(int64_t V);
double tlm_lmhead_ce(const float *hv, const int32_t *tv, const float *W, int64_t Nv, int64_t D, int64_t V,
                     float *chunk, float *dhv, float *dW);

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

/* ---- inverted dropout with a mask derived from (seed, key, index) */
void tlm_dropout_forward(float *out, const float *x, int64_t n, float p, uint64_t seed, uint64_t key);
/* dx += dout * mask / (1 - p), the same mask as tlm_dropout_forward(seed, key) */
void tlm_dropout_backward_add(float *dx, const float *dout, int64_t n, float p, uint64_t seed, uint64_t key);

/* ---- attention of S new query positions against a KV cache (generation).
 * q [B,S,H,E] after RoPE; kc, vc [B,K,Tc,E] hold cache positions 0..t0+S-1,
 * the new ones (t0..t0+S-1) already written. Query s of row b, at cache
 * position t0+s, attends keys j with start[b] <= j <= t0+s (start: the row's
 * left padding); a query with no such key outputs zeros. out [B,S,H,E]. */
int64_t tlm_attention_decode_scratch_floats(int64_t Tc); /* per thread */
void tlm_attention_decode(float *out, const float *q, const float *kc, const float *vc, const int32_t *start,
                          int64_t B, int64_t S, int64_t t0, int64_t Tc, int64_t H, int64_t K, int64_t E,
                          float *scratch /*[nthreads * tlm_attention_decode_scratch_floats(Tc)]*/);

/* ---- out[n] = log softmax(logits[n])[targets[n]]; 0 where targets[n] < 0 */
void tlm_logprob_gather(float *out /*[N]*/, const float *logits /*[N,V]*/, const int32_t *targets /*[N]*/, int64_t N,
                        int64_t V);

#endif
