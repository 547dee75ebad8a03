/* gguf_format.h: what the GGUF reader (gguf.c) and writer (gguf_write.c)
 * both need to know about the format. */
#ifndef TLM_GGUF_FORMAT_H
#define TLM_GGUF_FORMAT_H

#include "tlm.h"

#include <stdint.h>

#define TLM_GGUF_KEY_ALIGNMENT "general.alignment"
#define TLM_GGUF_VERSION 3  /* what the writer writes */

/* name_of(base, i) is the i-th of n names. Fills *order (malloc'd [n])
 * with the indices sorted by name and sets *dup to a name that occurs twice
 * (or NULL). */
tlm_status tlm_gguf_sort_names(const void *base, int64_t n, const char *(*name_of)(const void *, int64_t),
                               int64_t **order, const char **dup, const char *path);
/* The index of `name` through a sorted order, or -1. */
int64_t tlm_gguf_lookup(const void *base, const int64_t *order, int64_t n,
                        const char *(*name_of)(const void *, int64_t), const char *name);

#endif
