/* decoder.h: pieces of the decoder that generation (generate.c) reuses. */
#ifndef TLM_DECODER_H
#define TLM_DECODER_H

#include "model/model.h"
#include "objectives/head.h"

/* The arena's cos/sin tables for its positions a->pos (N of them), for every
 * rope kind some layer uses. LongRoPE picks its factors from the largest
 * position of the whole input: max_pos, or (when negative) a->pos's. */
void tlm_decoder_rope_tables(tlm_model *m, int64_t N, int32_t max_pos);
/* Embedding of ids [N] into xs[0]. */
void tlm_decoder_embed(tlm_model *m, const int32_t *ids, int64_t N);
/* A layer's two halves around attention (generate.c attends over its KV
 * cache between them), on the arena's current (B, T). */
void tlm_layer_attention_inputs(tlm_model *m, int64_t l);
void tlm_layer_finish(tlm_model *m, int64_t l, float *out);
/* The attention of layer l: scale, soft-cap and window. */
tlm_attn_desc tlm_layer_attn_desc(const tlm_model *m, int64_t l);
/* Final norm of x [N,D] into h_f, then logits [N,V] (bias, soft-cap). */
void tlm_decoder_head(tlm_model *m, const float *x, int64_t N, float *logits);

/* Inference to the final hidden states, left in the arena's h_f [B*T, D]
 * (a teacher's forward). */
tlm_status tlm_decoder_hidden(tlm_model *m, const int32_t *input_ids, const int32_t *attention_mask,
                              const int32_t *position_ids, int64_t B, int64_t T);
/* loss()'s steps, shared with distillation (distill.c): the arena planned
 * for (B, T) in the model's mode, the rows with a target found, the decoder
 * run to its final hidden states and those rows' gathered into a->hv [nv,D]. */
tlm_status tlm_decoder_loss_forward(tlm_model *m, const int32_t *input_ids, const int32_t *labels,
                                    const int32_t *attention_mask, const int32_t *position_ids, int64_t B, int64_t T,
                                    int64_t *nv);
/* The LM head as the objectives take it. */
tlm_head tlm_decoder_lm_head(tlm_model *m);
/* Where the objective adds the LM head's gradient (zeroed; NULL when frozen
 * or in evaluation mode); its bias's into *db. */
float *tlm_decoder_head_grad(tlm_model *m, float **db);
/* Records the loss for backward() (training mode). */
void tlm_decoder_loss_done(tlm_model *m, int64_t nv, float loss);

#endif
