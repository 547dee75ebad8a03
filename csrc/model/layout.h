/* layout.h: what a configuration puts in each decoder layer, and what
 * Hugging Face calls it. A leaf: it depends on the config alone, and
 * everything else (parameters, adapters, arena, decoder) asks it.
 *
 * A layer's parameters are addressed by role: a norm role or a projection
 * role, each with a weight and (maybe) a bias. Which roles exist follows
 * from the config (tlm_config's switches); their names come from the
 * config's naming scheme (csrc/model/families/). */
#ifndef TLM_LAYOUT_H
#define TLM_LAYOUT_H

#include "tlm.h"

typedef enum {
    TLM_NORM_ATTN,       /* before attention (every family) */
    TLM_NORM_MLP,        /* before the MLP (absent with a parallel residual) */
    TLM_NORM_ATTN_POST,  /* on the attention output (Gemma 2/3) */
    TLM_NORM_MLP_POST,   /* on the MLP output (Gemma 2/3) */
    TLM_NORM_Q, TLM_NORM_K, /* per-head q/k norms */
    TLM_NORM_ROLES
} tlm_norm_role;

/* Index into a layer's role table: a weight and a bias per norm and projection. */
#define TLM_ROLE_NORM_W(r) (2 * (r))
#define TLM_ROLE_NORM_B(r) (2 * (r) + 1)
#define TLM_ROLE_PROJ_W(p) (2 * TLM_NORM_ROLES + 2 * (p))
#define TLM_ROLE_PROJ_B(p) (2 * TLM_NORM_ROLES + 2 * (p) + 1)
#define TLM_LAYER_ROLES (2 * (TLM_NORM_ROLES + TLM_PROJ_ROLES))

/* One naming scheme: module names ("<module>.weight", "<module>.bias"). A
 * layer's modules are prefixed "model.layers.<l>.". Per-head q/k norms
 * (StableLM) are "<q_norm>.norms.<h>". */
typedef struct {
    const char *embed, *final_norm, *lm_head;
    const char *norm[TLM_NORM_ROLES];
    const char *proj[TLM_PROJ_ROLES];
} tlm_names_table;

extern const tlm_names_table tlm_names_llama, tlm_names_gemma2, tlm_names_phi, tlm_names_phi3, tlm_names_stablelm;
const tlm_names_table *tlm_names_of(tlm_names names);

/* A layer's projections, in the scheme's module order. */
typedef struct {
    int n;                             /* projections per layer */
    tlm_proj_role role[TLM_PROJ_ROLES];
    int64_t in[TLM_PROJ_ROLES], out[TLM_PROJ_ROLES];
    int index[TLM_PROJ_ROLES];         /* role -> position in the list, -1 where absent */
    int64_t max_in, max_elems;         /* over the list: widest input, largest weight */
} tlm_proj_list;

void tlm_layout_projections(const tlm_config *c, tlm_proj_list *out);
/* Whether a projection of this role carries a bias. */
int tlm_layout_proj_bias(const tlm_config *c, tlm_proj_role role);

/* Whether a layer of this config has the norm, and whether it has a bias. */
int tlm_layout_has_norm(const tlm_config *c, tlm_norm_role r);
int tlm_layout_norm_bias(const tlm_config *c, tlm_norm_role r);
/* Weight rows of a norm: 1, or the heads of a per-head q/k norm. */
int64_t tlm_layout_norm_groups(const tlm_config *c, tlm_norm_role r);
/* Width of a norm's weight: D, or E for q/k norms. */
int64_t tlm_layout_norm_width(const tlm_config *c, tlm_norm_role r);

/* Is layer l windowed / rotated? Which rope table it uses (0 full, 1 sliding). */
static inline int tlm_layer_sliding(const tlm_config *c, int64_t l) { return c->layer_flags[l] & TLM_LAYER_SLIDING; }
static inline int tlm_layer_rope(const tlm_config *c, int64_t l) { return !(c->layer_flags[l] & TLM_LAYER_NO_ROPE); }
static inline int tlm_layer_rope_kind(const tlm_config *c, int64_t l) { return tlm_layer_sliding(c, l) ? 1 : 0; }

#endif
