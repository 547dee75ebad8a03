/* model.h: the model object's data, shared by model/, adapters/ and optim/.
 * Functions live in one header per module, each depending only downward:
 *   layout.h (leaf) <- params.h <- adapters/lora.h <- proj.h, arena.h <- decoder.h
 * and model.c, the composition root, creates and frees the whole. */
#ifndef TLM_MODEL_H
#define TLM_MODEL_H

#include "model/layout.h"
#include "ops/ops.h"
#include "quant/quant.h"
#include "tlm.h"

typedef struct {
    char *name;
    int ndim;
    int64_t shape[2];
    int64_t numel;
    float *data;          /* [shape] f32; in param_block for the base, an adapter's block for LoRA */
    tlm_qweight *qw;      /* set instead of data for a quantized projection weight */
    tlm_fake_quant fq;    /* a float projection weight trained through this quantizer (kind NONE: not) */
    float *fq_values;     /* [shape] the embedding's / head's fake-quantized copy (fake_tables.c); else NULL */
    uint8_t *fq_clip;     /* [numel] where its gradient stops */
    int64_t grad_offset;  /* into grad_block and the AdamW moment blocks; -1 while frozen */
    int trainable, decay;
    int group;            /* slots of one per-head norm: consecutive, trained together (count in the first); 1 otherwise */
} tlm_param_slot;

/* Activations for one (B, T): every pointer below is into one arena block.
 * In training mode each layer keeps its own saved tensors (or, with
 * checkpointing, one shared set that backward refills layer by layer); in
 * inference mode all layers share one set and the residual stream
 * ping-pongs. Tensors a config does not use are NULL. */
typedef struct {
    int64_t B, T;
    int train;
    int checkpointing;
    int nthreads;
    size_t bytes;
    /* inputs kept for backward */
    int32_t *ids, *mask, *pos;             /* [N] each; mask all ones when none was given */
    int lora_active;                       /* adapter id the layout was planned for (-1: none or merged) */
    int dropout;                           /* this loss() applies dropout (training mode) */
    uint64_t dropout_key;                  /* rng counter of this step's loss() */
    float **xa;                            /* [L * n_proj] -> [N, R] x A^T of each adapted projection */
    float *lora_in;                        /* [N, maxIn] dropout(x) of the LoRA path */
    float *lora_t;                         /* [N, maxR] dy B */
    float *lora_dx;                        /* [N, maxIn] the LoRA path's input gradient */
    float *layer_out;                      /* [N,D] a recomputed layer's output (checkpointing) */
    float *qtile;                          /* [qtile_rows, maxIn] dequantized rows of a quantized weight */
    float *qblocks;                        /* [max NF4 blocks of a weight] their absmax, dequantized */
    int64_t qtile_rows;
    int fake_quant;                        /* planned for: 0 none, TLM_FQ_WEIGHTS, | TLM_FQ_ACTS */
    float *fq_src;                         /* [qtile_rows, maxIn] merged rows W + s B A before fake quantization */
    uint8_t *fq_clip;                      /* [qtile_rows * maxIn] where the tile's gradient stops */
    float *fq_grad;                        /* [qtile_rows, maxIn] the tile's weight gradient (train only) */
    float *fq_x;                           /* [N, maxIn] a projection's fake-quantized input (TLM_FQ_ACTS) */
    uint8_t *fq_xclip;                     /* [N * maxIn] where its gradient stops */
    float *fq_dx;                          /* [N, maxIn] the gradient wrt that input (train only) */
    float *cos_t[2], *sin_t[2];            /* [N, R/2] per rope kind (full, sliding layers) */
    /* saved per layer (arrays of L pointers; L+1 for xs) */
    float **xs;                            /* [N,D] residual stream entering layer l; xs[L] leaves the last */
    float **st_attn, **st_mlp;             /* [N,2] stats of the attention / MLP input norms */
    float **q_in, **k_in;                  /* [N,H*E], [N,K*E] q and k before their norms (q/k norm) */
    float **st_q, **st_k;                  /* [N*H,2], [N*K,2] q/k norm stats */
    float **q, **k, **v, **o;              /* [N,H*E], [N,K*E], [N,K*E], [N,H*E] (q, k after norm and RoPE) */
    float **lse;                           /* [B,H,T] attention log-sum-exp */
    float **attn_raw, **st_attn_post;      /* [N,D], [N,2] attention output before its post norm (sandwich) */
    float **xmid;                          /* [N,D] residual after attention (sequential residual) */
    float **g, **u;                        /* [N,F] gate (or fc1) and up projections */
    float **mlp_raw, **st_mlp_post;        /* [N,D], [N,2] MLP output before its post norm (sandwich) */
    float *st_f, *h_f;                     /* [N,2], [N,D] final norm */
    /* scratch shared by all layers */
    float *h, *a, *mo;                     /* [N,D] norm output, attention output, MLP output */
    float *m;                              /* [N,F] activation output */
    float *fused;                          /* [N, max(QD+2KD, 2F)] a fused projection's output, before the split */
    float *stats;                          /* [N*H,2] stats of a recomputed norm (discarded) */
    float *attn_scratch;                   /* [nthreads * tlm_attention_scratch_floats(T)] */
    float *norm_scratch;                   /* [nthreads * max norm scratch] */
    /* backward scratch (train only) */
    float *dx, *dh, *dy;                   /* [N,D] */
    float *dq, *dk, *dv, *dout_attn;       /* [N,H*E], [N,K*E], [N,K*E], [N,H*E] */
    float *dq_in, *dk_in;                  /* [N,H*E], [N,K*E] through the q/k norms */
    float *dk_heads, *dv_heads;            /* [N,H*E] */
    float *dg, *du, *dm;                   /* [N,F] */
    float *dfused;                         /* [N, max(QD+2KD, 2F)] */
    float *dresid;                         /* [N,D] a sublayer output's gradient through its dropout */
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
    int64_t *ranks;      /* [L * n_proj]; 0 = not adapted */
    float *scales;       /* [L * n_proj] alpha / r (or alpha / sqrt(r)) */
    int *a_idx, *b_idx;  /* [L * n_proj] param indices, -1 where rank 0 */
    float *block;        /* all A and B of this adapter */
} tlm_lora;

struct tlm_model {
    tlm_config cfg;
    tlm_proj_list projs;                   /* the projections of every layer */
    tlm_norm_desc norm, q_norm, k_norm;    /* the model's norms; the q/k norms over heads */
    int64_t n_params;
    tlm_param_slot *params;
    int (*layer_params)[TLM_LAYER_ROLES];  /* [L][role] -> param index or -1 */
    int embed, final_norm, final_norm_b, lm_head, lm_head_b; /* param indices; lm_head == embed when tied; -1 absent */
    float *param_block;                    /* all parameters, f32 */
    int64_t param_numel;
    float *grad_block;                     /* trainable parameters' gradients */
    float *adam_m, *adam_v;                /* same layout as grad_block */
    float *head_pending, *head_b_pending;  /* [V,D], [V] d(sum NLL)/d(LM head), from loss() */
    int64_t grad_numel;
    int64_t blocks_pending;                /* TLM_WEIGHTS_GGUF projections whose blocks are not set yet */
    int64_t n_fake_quant, n_fake_quant_acts; /* projection weights with a fake quantizer; those with act_int8 */
    int fake_quant_off;                    /* set: the fake quantizers are skipped (QAT warm-up) */
    int fq_tables_stale;                   /* the embedding's / head's fake-quantized copies need rebuilding */
    int grads_planned;                     /* grad_block matches the trainable set */
    float *inv_freq[2][2];                 /* [rope kind][short, long] -> [R/2] */
    tlm_arena arena;
    void *arena_block;
    size_t arena_capacity;
    void *distill_block;                   /* distill.c's buffers (teacher rows, KD chunks) */
    size_t distill_capacity;
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

/* What the arena needs for fake quantization (tlm_arena.fake_quant). */
#define TLM_FQ_WEIGHTS 1
#define TLM_FQ_ACTS 2
static inline int tlm_fake_quant_needs(const struct tlm_model *m) {
    return (m->n_fake_quant ? TLM_FQ_WEIGHTS : 0) | (m->n_fake_quant_acts ? TLM_FQ_ACTS : 0);
}

static inline float *tlm_pdata(tlm_model *m, int idx) { return idx < 0 ? NULL : m->params[idx].data; }
static inline float *tlm_pgrad(tlm_model *m, int idx) {
    if (idx < 0 || !m->grad_block || m->params[idx].grad_offset < 0) return NULL;
    return m->grad_block + m->params[idx].grad_offset;
}
/* A layer's parameter by role (TLM_ROLE_*): its data, its gradient (NULL when frozen or absent). */
#define TLM_LW(m, l, role) tlm_pdata((m), (m)->layer_params[l][role])
#define TLM_LG(m, l, role) tlm_pgrad((m), (m)->layer_params[l][role])

#endif
