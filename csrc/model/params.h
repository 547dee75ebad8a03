/* params.h: the parameter table (Hugging Face names, one slot per tensor)
 * and the planned blocks for parameters and gradients. */
#ifndef TLM_PARAMS_H
#define TLM_PARAMS_H

#include "model/model.h"

/* Builds the base model's slots from the layout and allocates its block;
 * returns TLM_ENOMEM with a message on failure. */
tlm_status tlm_params_create(tlm_model *m);
void tlm_params_free(tlm_model *m);

/* Appends one parameter slot (data set by the caller); returns its index, or
 * -1 when out of memory. Slots are addressed by index, so growing the table
 * never invalidates anything held outside. */
int tlm_model_add_param(tlm_model *m, const char *name, int64_t rows, int64_t cols, int decay);

/* Lays out the gradient block for the current trainable set. */
tlm_status tlm_model_plan_grads(tlm_model *m);

#endif
