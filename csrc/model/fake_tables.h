/* fake_tables.h: fake quantization of the token embedding and the LM head. */
#ifndef TLM_FAKE_TABLES_H
#define TLM_FAKE_TABLES_H

#include "model/model.h"

/* Whether parameter i is the embedding or the head (their fake quantizers live here). */
int tlm_fq_is_table(const tlm_model *m, int64_t i);
/* Sets (fq) or removes (NULL) its fake quantizer; allocates the copy. */
tlm_status tlm_fq_table_set(tlm_model *m, tlm_param_slot *p, const tlm_fake_quant *fq);
/* Rebuilds the copies if the weights may have changed (before any compute). */
void tlm_fq_tables_refresh(tlm_model *m);
/* What compute reads for parameter i (the embedding or the head). */
const float *tlm_fq_table_weight(tlm_model *m, int i);
/* The straight-through mask on their gradients (end of backward). */
void tlm_fq_tables_mask_grads(tlm_model *m);

#endif
