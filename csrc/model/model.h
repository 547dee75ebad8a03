/* model.h: the model object shared by model/, optim/ and (later) adapters/. */
#ifndef TLM_MODEL_H
#define TLM_MODEL_H

#include "tlm.h"
#include "quant/quant.h"

/* Parameters of one decoder layer, by role; -1 where the config has none. */
enum {
    P_IN_NORM, P_WQ, P_BQ, P_WK, P_BK, P_WV, P_BV, P_WO, P_BO,
    P_POST_NORM, P_WG, P_BG, P_WU, P_BU, P_WD, P_BD,
    P_LAYER_ROLES
};

typedef struct {
    char *name;
    int ndim;
    int64_t shape[2];
    int64_t numel;
    float *data;          /* [shape] f32; in param_block for the base, an adapter's block for LoRA */
    tlm_qweight *qw;      /* set instead of data for a quantized projection weight */
    int64_t grad_offset;  /* into grad_block and the AdamW moment blocks; -1 while frozen */
    int trainable, decay;
} tlm_param_slot;

/* Activations for one (B, T): every pointer below is into one arena block.
 * In training mode each layer keeps its own saved tensors; in inference mode
 * all layers share one set and the residual stream ping-pongs. */
typedef struct {
    int64_t B, T;
    int train;
    int checkpointing;                     /* training keeps layer inputs only (one shared slot) */
    int nthreads;
    size_t bytes;
    /* inputs kept for backward */
    int32_t *ids, *mask, *pos, *targets;   /* [N] each */
    int has_mask;
    int lora_active;                       /* adapter id the layout was planned for (-1: none or merged) */
    int dropout;                           /* this loss() applies dropout (training mode) */
    uint64_t dropout_key;                  /* rng counter of this step's loss() */
    float **xa;                            /* [L * TLM_PROJ_COUNT] -> [N, R] x A^T of each adapted projection */
    float *lora_in;                        /* [N, maxIn] dropout(x) of the LoRA path */
    float *lora_t;                         /* [N, maxR] dy B */
    float *lora_dx;                        /* [N, maxIn] the LoRA path's input gradient */
    float *layer_out;                      /* [N,D] a recomputed layer's output (checkpointing) */
    float *qtile;                          /* [qtile_rows, maxIn] dequantized rows of a quantized weight */
    float *qblocks;                        /* [max NF4 blocks of a weight] their absmax, dequantized */
    int64_t qtile_rows;
    float *cos_t, *sin_t;                  /* [N, E/2] */
    /* per layer (arrays of L pointers; L+1 for xs) */
    float **xs;                            /* [N,D] residual stream entering layer l; xs[L] leaves the last */
    float **rstd1, **rstd2;                /* [N] */
    float **q, **k, **v, **o;              /* [N,H*E], [N,K*E], [N,K*E], [N,H*E] (q, k after RoPE) */
    float **lse;                           /* [B,H,T] attention log-sum-exp */
    float **xmid;                          /* [N,D] residual after attention */
    float **g, **u;                        /* [N,F] gate and up projections */
    float *rstd_f, *h_f;                   /* [N], [N,D] final norm */
    /* scratch shared by all layers */
    float *h, *a;                          /* [N,D] norm output, projection output */
    float *m;                              /* [N,F] SwiGLU output */
    float *attn_scratch;                   /* [nthreads * tlm_attention_scratch_floats(T)] */
    float *norm_scratch;                   /* [nthreads * D] */
    /* backward scratch (train only) */
    float *dx, *dh;                        /* [N,D] */
    float *dq, *dk, *dv, *dout_attn;       /* [N,H*E], [N,K*E], [N,K*E], [N,H*E] */
    float *dk_heads, *dv_heads;            /* [N,H*E] */
    float *dg, *du, *dm;                   /* [N,F] */
    /* LM head + cross-entropy */
    int32_t *valid_rows;                   /* [N] rows with a target */
    int32_t *tv;                           /* [N] their targets */
    float *hv;                             /* [N,D] those rows' final hidden states */
    float *dhv;                            /* [N,D] d(sum NLL)/dhv, from loss() (train only) */
    float *ce_chunk;                       /* [tlm_lmhead_ce_rows(V), V] logits of a chunk of rows */
} tlm_arena;

/* A LoRA adapter: per (layer, projection) rank, scale and parameter indices. */
typedef struct {
    char *name;
    float dropout;
    uint64_t seed;
    int64_t *ranks;      /* [L * TLM_PROJ_COUNT]; 0 = not adapted */
    float *scales;       /* [L * TLM_PROJ_COUNT] alpha / r (or alpha / sqrt(r)) */
    int *a_idx, *b_idx;  /* [L * TLM_PROJ_COUNT] param indices, -1 where rank 0 */
    float *block;        /* all A and B of this adapter */
} tlm_lora;

struct tlm_model {
    tlm_config cfg;
    int64_t n_params;
    tlm_param_slot *params;
    int (*layer_params)[P_LAYER_ROLES];    /* [L][role] -> param index or -1 */
    int embed, final_norm, lm_head;        /* param indices; lm_head == embed when tied */
    float *param_block;                    /* all parameters, f32 */
    int64_t param_numel;
    float *grad_block;                     /* trainable parameters' gradients */
    float *adam_m, *adam_v;                /* same layout as grad_block */
    float *head_pending;                   /* [V,D] d(sum NLL)/dW of a trainable LM head, from loss() */
    int64_t grad_numel;
    int grads_planned;                     /* grad_block matches the trainable set */
    float *inv_freq;                       /* [E/2] */
    tlm_arena arena;
    void *arena_block;
    size_t arena_capacity;
    int64_t params_capacity;               /* slots allocated in params */
    tlm_lora *adapters;
    int n_adapters;
    int active;                            /* adapter used by compute; -1 none */
    int merged;                            /* the active adapter is folded into the weights */
    int checkpointing;                     /* gradient checkpointing requested */
    int training;                          /* dropout on in loss() (evaluation mode: off) */
    uint64_t rng_counter;                  /* advanced by each training loss() */
    /* state of the last loss(), for backward() */
    int have_loss;
    int64_t n_valid;
    float last_loss;
};

/* arena.c: plans (and grows if needed) the arena for (B, T, train). */
tlm_status tlm_arena_plan(tlm_model *m, int64_t B, int64_t T, int train);
void tlm_arena_release(tlm_model *m);

/* params.c: lays out the gradient block for the current trainable set;
 * appends a parameter slot (growing the table) with data in a caller block. */
tlm_status tlm_model_plan_grads(tlm_model *m);
int tlm_model_add_param(tlm_model *m, const char *name, int64_t rows, int64_t cols, int decay);

/* adapters/lora.c */
void tlm_lora_free_all(tlm_model *m);

/* decoder.c: a layer's two halves around attention (generate.c attends
 * over its KV cache between them). Both work on the arena's current (B, T). */
void tlm_layer_attention_inputs(tlm_model *m, int64_t l);
void tlm_layer_finish(tlm_model *m, int64_t l, float *out);

/* proj.c: a decoder projection (y = x W^T + b) plus the active LoRA path. */
int tlm_proj_weight_role(int p);
const tlm_lora *tlm_active_lora(const tlm_model *m); /* NULL when none or merged */
void tlm_proj_forward(tlm_model *m, int64_t l, int p, float *y, const float *x, int64_t N);
/* dx = beta*dx + d/dx (dx may be NULL); grads of W, b, A, B accumulate. */
void tlm_proj_backward(tlm_model *m, int64_t l, int p, float *dx, float beta, const float *dy, const float *x,
                       int64_t N);

static inline float *tlm_pdata(tlm_model *m, int idx) { return idx < 0 ? NULL : m->params[idx].data; }
static inline float *tlm_pgrad(tlm_model *m, int idx) {
    if (idx < 0 || !m->grad_block || m->params[idx].grad_offset < 0) return NULL;
    return m->grad_block + m->params[idx].grad_offset;
}

#endif
