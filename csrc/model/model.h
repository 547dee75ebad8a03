/* model.h: the model object shared by model/, optim/ and (later) adapters/. */
#ifndef TLM_MODEL_H
#define TLM_MODEL_H

#include "tlm.h"

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
    int64_t offset;       /* into param_block */
    int64_t grad_offset;  /* into grad_block and the AdamW moment blocks; -1 while frozen */
    int trainable, decay;
} tlm_param_slot;

/* Activations for one (B, T): every pointer below is into one arena block.
 * In training mode each layer keeps its own saved tensors; in inference mode
 * all layers share one set and the residual stream ping-pongs. */
typedef struct {
    int64_t B, T;
    int train;
    int nthreads;
    size_t bytes;
    /* inputs kept for backward */
    int32_t *ids, *mask, *pos, *targets;   /* [N] each */
    int has_mask;
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
    float *hv, *dhv;                       /* [N,D] gathered rows and their gradient */
    float *ce_lse;                         /* [N] */
    double *ce_acc;                        /* [2N] */
    float *ce_chunk;                       /* [N * Vc] */
    int64_t Vc;
} tlm_arena;

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
    int64_t grad_numel;
    int grads_planned;                     /* grad_block matches the trainable set */
    float *inv_freq;                       /* [E/2] */
    tlm_arena arena;
    void *arena_block;
    size_t arena_capacity;
    /* state of the last loss(), for backward() */
    int have_loss;
    int64_t n_valid;
    float last_loss;
};

/* arena.c: plans (and grows if needed) the arena for (B, T, train). */
tlm_status tlm_arena_plan(tlm_model *m, int64_t B, int64_t T, int train);
void tlm_arena_release(tlm_model *m);

/* params.c: lays out the gradient block for the current trainable set. */
tlm_status tlm_model_plan_grads(tlm_model *m);

static inline float *tlm_pdata(tlm_model *m, int idx) { return idx < 0 ? NULL : m->param_block + m->params[idx].offset; }
static inline float *tlm_pgrad(tlm_model *m, int idx) {
    if (idx < 0 || !m->grad_block || m->params[idx].grad_offset < 0) return NULL;
    return m->grad_block + m->params[idx].grad_offset;
}

#endif
