/* lora.h: the adapters a model holds, for the code that computes with them. */
#ifndef TLM_LORA_H
#define TLM_LORA_H

#include "model/model.h"

/* The adapter compute uses: NULL when none is active or it is merged. */
const tlm_lora *tlm_active_lora(const tlm_model *m);
void tlm_lora_free_all(tlm_model *m);

#endif
