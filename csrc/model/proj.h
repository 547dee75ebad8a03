/* proj.h: a decoder projection, y = x W^T + b, plus the active LoRA path. */
#ifndef TLM_PROJ_H
#define TLM_PROJ_H

#include "model/model.h"

/* role: a tlm_proj_role the layer has. */
void tlm_proj_forward(tlm_model *m, int64_t l, tlm_proj_role role, float *y, const float *x, int64_t N);
/* dx = beta*dx + d/dx (dx may be NULL); grads of W, b, A, B accumulate. */
void tlm_proj_backward(tlm_model *m, int64_t l, tlm_proj_role role, float *dx, float beta, const float *dy,
                       const float *x, int64_t N);

#endif
