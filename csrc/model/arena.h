/* arena.h: one block for every activation of a (B, T) step. */
#ifndef TLM_ARENA_H
#define TLM_ARENA_H

#include "model/model.h"

/* Plans (and grows if needed) the arena for (B, T, train). */
tlm_status tlm_arena_plan(tlm_model *m, int64_t B, int64_t T, int train);
void tlm_arena_release(tlm_model *m);

#endif
